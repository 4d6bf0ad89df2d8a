//! Applying the filters of a batch: which sketches are for this board. Runs before
//! library discovery, so a skipped sketch's libraries are never built.

use std::path::Path;

use super::{parse_sketch, BoardFacts};
use crate::report::{LinkSource, SketchResult, Status};
use crate::sketch::Sketch;

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

/// The result of a sketch that was not built for this board.
pub fn skipped_result(sketch: &Sketch, output_dir: &Path, reason: String) -> SketchResult {
    SketchResult {
        name: sketch.name.clone(),
        board: None,
        fqbn: None,
        path: sketch.dir.clone(),
        status: Status::Skipped,
        skip_reason: Some(reason),
        output_dir: output_dir.to_path_buf(),
        firmware: Default::default(),
        flash_used: None,
        flash_max: None,
        ram_used: None,
        ram_max: None,
        seconds: 0.0,
        stage2_seconds: 0.0,
        log: output_dir.join("build.log"),
        first_error: None,
        diagnostics: Vec::new(),
        libraries: Vec::new(),
        discover_seconds: 0.0,
        discover_runs: 0,
        objects_compiled: 0,
        objects_cached: 0,
        link: LinkSource::None,
        size_delta: None,
        run: None,
        time_dependent: Vec::new(),
    }
}

/// Built and skipped results merged back into argument order (`kept_at[i]` is the
/// position of `built[i]`).
pub fn in_argument_order(built: Vec<SketchResult>, kept_at: &[usize], skipped: Vec<(usize, SketchResult)>) -> Vec<SketchResult> {
    let mut all: Vec<(usize, SketchResult)> = kept_at.iter().copied().zip(built).chain(skipped).collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}
