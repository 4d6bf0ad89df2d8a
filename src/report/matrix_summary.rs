//! The end-of-run summary of a board matrix: one row per sketch, one column per
//! board, then each failure with its board, then one line of totals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::summary::{display_path, status_label};
use super::{is_env_label, table, BoardRun, Report, Status};

/// The summary of a matrix: one row per sketch, one column per board (`ok 3%` of
/// flash, `FAILED`, `skipped`), then each failure with its board, then totals.
pub fn summary(report: &Report, cwd: &Path) -> String {
    // Rows in the order sketches were first given; a sketch is its path.
    // One column per FQBN: project envs of a board share the sketches' column.
    let mut columns: Vec<&BoardRun> = Vec::new();
    for b in &report.boards {
        if !columns.iter().any(|c| c.fqbn == b.fqbn) {
            columns.push(b);
        }
    }
    let mut rows: BTreeMap<PathBuf, (usize, Vec<String>)> = BTreeMap::new();
    for s in &report.sketches {
        let col = columns.iter().position(|b| Some(&b.fqbn) == s.fqbn.as_ref()).unwrap_or(0);
        let next = rows.len();
        let row = rows.entry(s.path.clone()).or_insert_with(|| (next, vec!["-".to_string(); columns.len()]));
        row.1[col] = match s.status {
            Status::Ok => match (s.flash_used, s.flash_max.filter(|&m| m > 0)) {
                (Some(u), Some(m)) => format!("ok {}%", u * 100 / m),
                _ => "ok".into(),
            },
            Status::Failed => "FAILED".into(),
            Status::Skipped => status_label(Status::Skipped),
        };
    }
    let mut ordered: Vec<(usize, PathBuf, Vec<String>)> = rows.into_iter().map(|(p, (i, cells))| (i, p, cells)).collect();
    ordered.sort_by_key(|r| r.0);
    let mut header = vec!["sketch"];
    // A column is headed by the board's id, or its FQBN when two columns share an id
    // (nano with two `cpu` options).
    let shared_id = |b: &BoardRun| columns.iter().filter(|o| o.board == b.board).count() > 1;
    header.extend(columns.iter().map(|b| if shared_id(b) { b.fqbn.as_str() } else { b.board.as_str() }));
    let table_rows: Vec<Vec<String>> = ordered
        .into_iter()
        .map(|(_, p, cells)| std::iter::once(row_label(report, &p, cwd)).chain(cells).collect())
        .collect();
    let mut s = table::render(&header, &table_rows, &[]);

    let mut failures = String::new();
    for b in &columns {
        if let Some(core) = b.units.iter().find(|u| u.kind == "core" && u.status == Status::Failed) {
            failures.push_str(&format!(
                "  the core of {} (no sketch could build for it)\n    {}\n    log: {}\n",
                b.board,
                core.first_error.as_deref().unwrap_or("(no error text)"),
                display_path(&core.log, cwd)
            ));
            continue;
        }
        for r in report.sketches.iter().filter(|r| r.status == Status::Failed && r.fqbn.as_ref() == Some(&b.fqbn)) {
            failures.push_str(&format!(
                "  {} for {}\n    {}\n    log: {}\n",
                row_label(report, &r.path, cwd),
                b.board,
                r.first_error.as_deref().unwrap_or("(no error text)"),
                display_path(&r.log, cwd)
            ));
        }
    }
    if !failures.is_empty() {
        s.push_str("\nFailed:\n");
        s.push_str(&failures);
    }
    let t = &report.totals;
    let skipped = if t.skipped > 0 { format!(", {} skipped", t.skipped) } else { String::new() };
    s.push_str(&format!(
        "\n{} boards x {} sketches: {} ok, {} failed{skipped} | total {:.2}s | compiled {}, cached {}, links {}\n",
        columns.len(),
        table_rows.len(),
        t.ok,
        t.failed,
        t.seconds,
        t.objects_compiled,
        t.objects_cached,
        t.links_run
    ));
    s
}

/// A row's first cell: a project env by its `project:env` name, a sketch by its path.
fn row_label(report: &Report, path: &Path, cwd: &Path) -> String {
    match report.sketches.iter().find(|s| s.path == path && is_env_label(&s.name)) {
        Some(s) => s.name.clone(),
        None => display_path(path, cwd),
    }
}
