//! The end-of-run summary of compile-many: a table of every sketch (status, flash
//! used/max and %, RAM %, seconds, and the flash change under `--compare-to`), then
//! each failure with its first error and log, then one line of totals.

use std::path::Path;

use super::size_delta::SizeChange;
use super::{table, Report, SketchResult, Status};

/// `path` relative to `cwd` when that is shorter to read, else as it is.
pub fn display_path(path: &Path, cwd: &Path) -> String {
    let full = path.display().to_string();
    match pathdiff::diff_paths(path, cwd) {
        Some(rel) if !rel.as_os_str().is_empty() && rel.as_os_str().len() < full.len() => rel.display().to_string(),
        _ => full,
    }
}

/// `display_path` against the process's working directory.
pub fn display_path_here(path: &Path) -> String {
    match std::env::current_dir() {
        Ok(cwd) => display_path(path, &cwd),
        Err(_) => path.display().to_string(),
    }
}

/// A GCC message starts with the file it is about: show that path the short way too.
fn shorten_error(line: &str, cwd: &Path) -> String {
    match line.split_once(':') {
        Some((file, rest)) if file.starts_with('/') => format!("{}:{rest}", display_path(Path::new(file), cwd)),
        _ => line.to_string(),
    }
}

/// A status as results.json spells it (`ok`, `failed`, ...).
pub fn status_label(s: Status) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn percent(used: Option<u64>, max: Option<u64>) -> Option<u64> {
    Some(used? * 100 / max.filter(|&m| m > 0)?)
}

fn flash_cell(r: &SketchResult) -> String {
    match (r.flash_used, r.flash_max, percent(r.flash_used, r.flash_max)) {
        (Some(u), Some(m), Some(p)) => format!("{u}/{m} ({p}%)"),
        (Some(u), _, _) => u.to_string(),
        _ => "-".into(),
    }
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

fn flash_change_cell(r: &SketchResult) -> String {
    match &r.size_delta {
        Some(d) if d.change == SizeChange::New => "new".into(),
        Some(d) => d.flash.map(|f| signed(f.bytes)).unwrap_or_else(|| "-".into()),
        None => "-".into(),
    }
}

/// The human summary printed at the end of compile-many.
pub fn summary(report: &Report, cwd: &Path) -> String {
    if !report.boards.is_empty() {
        return super::matrix_summary::summary(report, cwd);
    }
    let compared = report.size_report.is_some();
    let mut header = vec!["sketch", "status", "flash", "ram", "seconds"];
    if compared {
        header.push("flash change");
    }
    let rows: Vec<Vec<String>> = report
        .sketches
        .iter()
        .map(|r| {
            let mut row = vec![
                display_path(&r.path, cwd),
                status_label(r.status),
                flash_cell(r),
                percent(r.ram_used, r.ram_max).map(|p| format!("{p}%")).unwrap_or_else(|| "-".into()),
                format!("{:.2}", r.seconds),
            ];
            if compared {
                row.push(flash_change_cell(r));
            }
            row
        })
        .collect();
    let mut s = table::render(&header, &rows, &[2, 3, 4, 5]);

    let failed: Vec<&SketchResult> = report.sketches.iter().filter(|r| r.status == Status::Failed).collect();
    let core = report.units.iter().find(|u| u.kind == "core");
    if let Some(core) = core.filter(|u| u.status == Status::Failed) {
        // Every sketch failed for this one reason: say it once.
        s.push_str(&format!(
            "\nThe core failed to compile, so no sketch could build:\n  {}\n  log: {}\n",
            shorten_error(core.first_error.as_deref().unwrap_or("(no error text)"), cwd),
            display_path(&core.log, cwd)
        ));
    } else if !failed.is_empty() {
        s.push_str("\nFailed sketches:\n");
        for r in &failed {
            s.push_str(&format!(
                "  {}\n    {}\n    log: {}\n",
                display_path(&r.path, cwd),
                shorten_error(r.first_error.as_deref().unwrap_or("(no error text)"), cwd),
                display_path(&r.log, cwd)
            ));
        }
    }
    if let Some(v) = report.size_report.as_ref().filter(|v| !v.vanished.is_empty()) {
        s.push_str(&format!("\nVanished since {}:\n", display_path(&v.compared_to, cwd)));
        for o in &v.vanished {
            s.push_str(&format!("  {}\n", display_path(&o.path, cwd)));
        }
    }
    let stage = |n: &str| report.phases.iter().find(|p| p.name == n).map(|p| p.seconds).unwrap_or(0.0);
    let skipped = if report.totals.skipped > 0 { format!(", {} skipped", report.totals.skipped) } else { String::new() };
    s.push_str(&format!(
        "\n{} sketches: {} ok, {} failed{skipped} | stage 1 {:.2}s, stage 2 {:.2}s, total {:.2}s | compiled {}, cached {}, links {}\n",
        report.totals.sketches,
        report.totals.ok,
        report.totals.failed,
        stage("stage1_archives"),
        stage("stage2_sketches"),
        report.totals.seconds,
        report.totals.objects_compiled,
        report.totals.objects_cached,
        report.totals.links_run,
    ));
    if let Some(r) = &report.cache.remote {
        s.push_str(&format!(
            "remote cache {}: {} hits, {} misses, {} stored, {:.1} MB read, {:.1} MB written, {:.2}s\n",
            r.url,
            r.hits,
            r.misses,
            r.stores,
            r.bytes_read as f64 / 1e6,
            r.bytes_written as f64 / 1e6,
            r.seconds
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_only_when_shorter() {
        let cwd = Path::new("/work/project");
        assert_eq!(display_path(Path::new("/work/project/sketches/Blink"), cwd), "sketches/Blink");
        assert_eq!(display_path(Path::new("/work/other/Blink"), cwd), "../other/Blink");
        assert_eq!(display_path(Path::new("/usr/share/x"), cwd), "/usr/share/x");
        assert_eq!(display_path(Path::new("/work/project"), cwd), "/work/project");
        assert_eq!(shorten_error("/work/project/A/A.ino:3:1: error: x", cwd), "A/A.ino:3:1: error: x");
        assert_eq!(shorten_error("sketch too big: it uses", cwd), "sketch too big: it uses");
    }

    #[test]
    fn cells() {
        assert_eq!(percent(Some(924), Some(32256)), Some(2));
        assert_eq!(percent(Some(1), None), None);
        assert_eq!(signed(24), "+24");
        assert_eq!(signed(-3), "-3");
        assert_eq!(signed(0), "0");
        assert_eq!(status_label(Status::Failed), "failed");
    }
}
