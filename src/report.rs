//! What a run reports: the per-sketch result map (results.json), the per-phase TSV,
//! a live progress line on terminals, and plain lines in CI.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::diagnostics::Diagnostic;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
}

/// How a sketch's firmware came to be.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LinkSource {
    /// Outputs already in the output folder matched: nothing ran.
    UpToDate,
    /// Fetched from the cache: no linker ran.
    Cached,
    /// The linker ran.
    Linked,
    /// No link happened (the sketch failed earlier).
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct SketchResult {
    pub name: String,
    pub path: PathBuf,
    pub status: Status,
    pub output_dir: PathBuf,
    /// Firmware files by kind (`hex`, `eep`, `elf`, `bin`).
    pub firmware: std::collections::BTreeMap<String, PathBuf>,
    pub flash_used: Option<u64>,
    pub flash_max: Option<u64>,
    pub ram_used: Option<u64>,
    pub ram_max: Option<u64>,
    /// Wall seconds this sketch's own work took (its share of stage 2 plus discovery).
    pub seconds: f64,
    pub stage2_seconds: f64,
    pub log: PathBuf,
    pub first_error: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    pub libraries: Vec<String>,
    pub objects_compiled: usize,
    pub objects_cached: usize,
    pub link: LinkSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitResult {
    pub name: String,
    pub kind: String,
    pub status: Status,
    pub key: Option<String>,
    pub archive: Option<PathBuf>,
    pub objects: Vec<PathBuf>,
    pub log: PathBuf,
    pub first_error: Option<String>,
    pub objects_compiled: usize,
    pub objects_cached: usize,
    pub up_to_date: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheSummary {
    pub enabled: bool,
    pub dir: Option<PathBuf>,
    pub hits: u64,
    pub misses: u64,
    /// The shared tier (`--remote-cache`): hits, misses, bytes, time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<crate::cache::remote::RemoteStats>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub sketches: usize,
    pub ok: usize,
    pub failed: usize,
    pub seconds: f64,
    pub objects_compiled: usize,
    pub objects_cached: usize,
    pub links_run: usize,
    /// Every tool process fbuild started (compilers, ar, linker, objcopy, size, hooks).
    pub tool_processes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub board: String,
    pub fqbn: String,
    pub stage1_key: Option<String>,
    pub framework_dir: PathBuf,
    pub archives: Vec<PathBuf>,
    pub units: Vec<UnitResult>,
    pub sketches: Vec<SketchResult>,
    pub totals: Totals,
    pub cache: CacheSummary,
    #[serde(skip)]
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub seconds: f64,
    pub count: usize,
}

impl Report {
    pub fn all_ok(&self) -> bool {
        self.sketches.iter().all(|s| s.status == Status::Ok)
    }

    pub fn phases_tsv(&self) -> String {
        let mut s = String::from("phase\tseconds\tcount\n");
        for p in &self.phases {
            s.push_str(&format!("{}\t{:.3}\t{}\n", p.name, p.seconds, p.count));
        }
        s
    }
}

/// Write a file atomically (temp + rename) so readers never see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let unwritable = |e: std::io::Error| {
        Error::Environment(format!("cannot write {}: {e}; choose a writable location", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(unwritable)?;
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
        Progress { bar, total, done: AtomicUsize::new(0), failed: AtomicUsize::new(0), running: AtomicUsize::new(0), quiet, lock: Mutex::new(()) }
    }

    pub fn stage(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None if !self.quiet => {
                let _g = self.lock.lock().unwrap();
                eprintln!("{msg}");
            }
            None => {}
        }
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
                let status = if r.status == Status::Ok { "ok    " } else { "FAILED" };
                let detail = match (&r.first_error, r.flash_used) {
                    (Some(e), _) => format!(": {e}"),
                    (None, Some(f)) => format!(" flash {f} ram {}", r.ram_used.unwrap_or(0)),
                    _ => String::new(),
                };
                eprintln!("[{done}/{}] {status} {} ({:.2}s){detail}", self.total, r.path.display(), r.seconds);
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

/// The human summary printed at the end of compile-many.
pub fn summary(report: &Report) -> String {
    let mut s = String::new();
    let failed: Vec<&SketchResult> = report.sketches.iter().filter(|r| r.status == Status::Failed).collect();
    let core = report.units.iter().find(|u| u.kind == "core");
    if let Some(core) = core.filter(|u| u.status == Status::Failed) {
        // Every sketch failed for this one reason: say it once.
        s.push_str(&format!(
            "The core failed to compile, so no sketch could build:\n  {}\n  log: {}\n",
            core.first_error.as_deref().unwrap_or("(no error text)"),
            core.log.display()
        ));
    } else if !failed.is_empty() {
        s.push_str("Failed sketches:\n");
        for r in &failed {
            s.push_str(&format!(
                "  {}\n    {}\n    log: {}\n",
                r.path.display(),
                r.first_error.as_deref().unwrap_or("(no error text)"),
                r.log.display()
            ));
        }
    }
    let stage = |n: &str| report.phases.iter().find(|p| p.name == n).map(|p| p.seconds).unwrap_or(0.0);
    s.push_str(&format!(
        "{} sketches: {} ok, {} failed | stage 1 {:.2}s, stage 2 {:.2}s, total {:.2}s | compiled {}, cached {}, links {}\n",
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
