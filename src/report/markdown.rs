//! `--report-md FILE`: the size changes of a `--compare-to` run as a Markdown table
//! for a pull-request comment (sketch by board, flash and RAM), largest changes
//! first, then new, sizeless and vanished sketches.

use std::path::Path;

use super::size_delta::{MemoryDelta, SizeChange};
use super::summary::display_path;
use super::Report;

fn cell(d: Option<MemoryDelta>) -> String {
    match d {
        Some(d) if d.bytes > 0 => format!("+{} (+{:.2}%)", d.bytes, d.percent),
        Some(d) => format!("{} ({:.2}%)", d.bytes, d.percent),
        None => "N/A".into(),
    }
}

fn used(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Pipes would end a cell early.
fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The Markdown report; `None` when the run compared nothing (`--compare-to` absent).
pub fn render(report: &Report, cwd: &Path) -> Option<String> {
    let size_report = report.size_report.as_ref()?;
    // (order, size of change, row): compared first, biggest change first.
    let mut rows: Vec<(u8, u64, String, String)> = Vec::new();
    let (mut changed, mut unchanged, mut new) = (0, 0, 0);
    for s in &report.sketches {
        let Some(d) = &s.size_delta else { continue };
        let name = escape(&display_path(&s.path, cwd));
        let (order, magnitude, flash_change, ram_change) = match d.change {
            SizeChange::Compared => {
                let mag = |m: Option<MemoryDelta>| m.map(|m| m.bytes.unsigned_abs()).unwrap_or(0);
                let (f, r) = (mag(d.flash), mag(d.ram));
                if f + r == 0 {
                    unchanged += 1;
                } else {
                    changed += 1;
                }
                (0, f.max(r) * 2 + u64::from(f >= r), cell(d.flash), cell(d.ram))
            }
            SizeChange::New => {
                new += 1;
                (1, 0, "new".into(), "new".into())
            }
            SizeChange::NoSize => (2, 0, "N/A".into(), "N/A".into()),
        };
        let row = format!("| {name} | {} | {} | {flash_change} | {} | {ram_change} |", escape(s.board.as_deref().unwrap_or(&report.board)), used(s.flash_used), used(s.ram_used));
        rows.push((order, magnitude, name, row));
    }
    for v in &size_report.vanished {
        let name = escape(&display_path(&v.path, cwd));
        // Only sketches of this run's boards can vanish from it.
        let board = report.boards.iter().find(|b| b.fqbn == v.fqbn).map_or(report.board.as_str(), |b| b.board.as_str());
        let row = format!("| {name} | {} | - | vanished | - | vanished |", escape(board));
        rows.push((3, 0, name, row));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then_with(|| a.2.cmp(&b.2)));

    let mut s = format!(
        "### Memory usage change\n\nAgainst `{}`: {changed} changed, {unchanged} unchanged, {new} new, {} vanished. \
         Changes in bytes, and in % of the board's maximum.\n\n",
        escape(&display_path(&size_report.compared_to, cwd)),
        size_report.vanished.len()
    );
    s.push_str("| Sketch | Board | Flash | Flash change | RAM | RAM change |\n|---|---|--:|--:|--:|--:|\n");
    for (_, _, _, row) in rows {
        s.push_str(&row);
        s.push('\n');
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_carry_sign_bytes_and_percent() {
        let d = |bytes, percent| Some(MemoryDelta { old: 0, new: 0, bytes, percent });
        assert_eq!(cell(d(24, 0.07)), "+24 (+0.07%)");
        assert_eq!(cell(d(-8, -0.39)), "-8 (-0.39%)");
        assert_eq!(cell(d(0, 0.0)), "0 (0.00%)");
        assert_eq!(cell(None), "N/A");
        assert_eq!(escape("a|b"), "a\\|b");
    }
}
