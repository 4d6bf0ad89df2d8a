//! What a run reports: the per-sketch result map (results.json), the per-phase TSV,
//! a live progress line on terminals, and plain lines in CI.
//!
//! The one results layer: every result type (`results.rs`), every join of reports
//! (`join.rs`: board matrix, merge-results), totals and summaries live here. It imports
//! nothing from the pipeline, matrix, project or filter; they hand it plain values.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub mod join;
pub mod listings;
pub mod markdown;
pub mod matrix_summary;
pub mod results;
pub mod run_summary;
pub mod size_delta;
pub mod summary;
pub mod table;
pub mod diagnostics;
pub mod link_failure;
pub mod console;

pub use results::*;
pub use summary::summary;

use crate::error::{Error, Result};


/// A temporary file in `dir` to become an output by `persist`, created as any
/// other tool creates a file: 0666 less the umask, not tempfile's private 0600, so
/// artifact uploaders and web servers running as another user can read it.
pub fn output_tempfile(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new().permissions(std::fs::Permissions::from_mode(0o666)).tempfile_in(dir)
}

/// Write a file atomically (temp + rename) so readers never see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let unwritable = |e: std::io::Error| {
        Error::Environment(format!("cannot write {}: {e}; choose a writable location", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let mut tmp = output_tempfile(dir).map_err(unwritable)?;
    tmp.write_all(bytes).map_err(unwritable)?;
    tmp.persist(path).map_err(|e| unwritable(e.error))?;
    Ok(())
}

/// Check up front that an output file's folder can be written, so a bad
/// `--results`/`--phases` path fails before any build work.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| {
        Error::usage(format!("cannot write {} ({e}); pass a path in a writable folder", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    Ok(())
}

/// Progress: a live bar on a terminal, one plain line per sketch otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    running: AtomicUsize,
    quiet: bool,
    lock: Mutex<()>,
    /// Stages already announced: steps of both stages interleave, and each stage
    /// is named once, when its first step starts.
    announced: Mutex<Vec<&'static str>>,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Progress {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = (tty && !quiet).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Progress { bar, total, done: AtomicUsize::new(0), failed: AtomicUsize::new(0), running: AtomicUsize::new(0), quiet, lock: Mutex::new(()), announced: Mutex::new(Vec::new()) }
    }

    pub fn stage(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None if !self.quiet => {
                let _g = self.lock.lock().unwrap();
                crate::errln!("{msg}");
            }
            None => {}
        }
    }

    /// `stage`, the first time only.
    pub fn stage_once(&self, msg: &'static str) {
        {
            let mut seen = self.announced.lock().unwrap();
            if seen.contains(&msg) {
                return;
            }
            seen.push(msg);
        }
        self.stage(msg);
    }

    pub fn started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub fn finished(&self, r: &SketchResult) {
        let running = self.running.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if r.status == Status::Failed {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        let failed = self.failed.load(Ordering::SeqCst);
        match &self.bar {
            Some(b) => {
                b.set_position(done as u64);
                b.set_message(format!("done {done}, failed {failed}, running {running}, last {}", r.name));
            }
            None if !self.quiet => {
                let _g = self.lock.lock().unwrap();
                let status = match r.status {
                    Status::Ok => "ok    ",
                    Status::Failed => "FAILED",
                    Status::Skipped => "skipped",
                };
                let detail = match (r.first_error.as_ref().or(r.skip_reason.as_ref()), r.flash_used) {
                    (Some(e), _) => format!(": {e}"),
                    (None, Some(f)) => format!(" flash {f} ram {}", r.ram_used.unwrap_or(0)),
                    _ => String::new(),
                };
                // A board matrix interleaves its boards' sketches: say which board.
                let board = r.board.as_deref().map(|b| format!("{b} ")).unwrap_or_default();
                crate::errln!("[{done}/{}] {status} {board}{} ({:.2}s){detail}", self.total, summary::display_path_here(&r.path), r.seconds);
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
