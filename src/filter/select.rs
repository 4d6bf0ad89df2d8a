//! Applying the filters of a batch: which sketches are for this board. Runs before
//! library discovery, so a skipped sketch's libraries are never built. The answer is a
//! selection; the report layer turns its skips into results.

use super::{parse_sketch, BoardFacts};
use crate::arduino::sketch::Sketch;

#[derive(Default)]
pub struct Selection {
    /// Sketches to build, in argument order.
    pub kept: Vec<Sketch>,
    /// Each kept sketch's position in the argument list.
    pub kept_at: Vec<usize>,
    /// Sketches whose filter leaves this board out: position, sketch, reason.
    pub skipped: Vec<(usize, Sketch, String)>,
    /// One line per malformed filter, naming its file and line; those sketches are built.
    pub warnings: Vec<String>,
}

/// Split `sketches` by their main file's `@filter` against `facts`.
pub fn select(sketches: Vec<Sketch>, facts: &BoardFacts) -> Selection {
    let mut s = Selection::default();
    for (i, sketch) in sketches.into_iter().enumerate() {
        // An unreadable file is reported by the build itself, which reads it next.
        let text = std::fs::read(&sketch.main_ino).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        match parse_sketch(&text) {
            Ok(Some(f)) if !f.admits(facts) => {
                let reason = format!("its @filter `{}` (line {}) excludes {}", f.text, f.line, facts.describe());
                s.skipped.push((i, sketch, reason));
                continue;
            }
            Ok(_) => {}
            Err(m) => s.warnings.push(format!(
                "warning: {}:{}: malformed @filter ({}); building the sketch for every board",
                sketch.main_ino.display(),
                m.line,
                m.message
            )),
        }
        s.kept.push(sketch);
        s.kept_at.push(i);
    }
    s
}
