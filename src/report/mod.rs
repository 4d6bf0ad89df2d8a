//! What a run reports: the per-sketch result map (results.json), the per-phase TSV,
//! a live progress line on terminals, and plain lines in CI.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

pub mod listings;
pub mod markdown;
pub mod size_delta;
pub mod summary;
pub mod table;

pub use summary::summary;

use crate::diagnostics::Diagnostic;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    /// The sketch's `@filter` leaves this board out: not built (see `skip_reason`).
    Skipped,
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
    /// The board this result is for: only in a board matrix (several `--board`); a
    /// one-board run names its board once, at the top of results.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqbn: Option<String>,
    pub path: PathBuf,
    pub status: Status,
    /// Why a `skipped` sketch was not built for this board.
    pub skip_reason: Option<String>,
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
    /// The libraries the sketch uses, in the reference's `Using library` order.
    pub libraries: Vec<LibraryUse>,
    /// Wall seconds library discovery took for this sketch.
    pub discover_seconds: f64,
    /// Preprocessor runs discovery started for this sketch (0 when remembered).
    pub discover_runs: usize,
    pub objects_compiled: usize,
    pub objects_cached: usize,
    pub link: LinkSource,
    /// What of the firmware embeds the build's time (`__DATE__`, `__TIME__`,
    /// `__TIMESTAMP__`), so its cache keys follow the clock: `sketch`, `core`,
    /// `lib:NAME`. Absent when nothing does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub time_dependent: Vec<String>,
    /// Flash and RAM change against `--compare-to`'s file (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_delta: Option<size_delta::SizeDelta>,
    /// The emulator run of `--smoke-run`, when one was asked for and the sketch built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::emulator::RunResult>,
}

/// One library a sketch uses: what `-v` prints as the reference does,
/// `Using library NAME at version V in folder: DIR`.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryUse {
    pub name: String,
    pub version: String,
    pub folder: PathBuf,
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
    /// Sketches whose `@filter` left this board out.
    pub skipped: usize,
    pub seconds: f64,
    pub objects_compiled: usize,
    pub objects_cached: usize,
    pub links_run: usize,
    /// Every process fbuild started (compilers, ar, linker, objcopy, size, hooks, and
    /// the toolchain probes).
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
    /// What `--compare-to` compared against, and the sketches only it had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_report: Option<size_delta::SizeReport>,
    /// A board matrix (several `--board`): each board's stage 1 and totals, in
    /// argument order. Empty for one board.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub boards: Vec<crate::matrix::BoardRun>,
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
    /// The report of a run that planned and stopped (`--only-compiledb`): nothing built.
    pub fn planned_only(board: &str, fqbn: &str, framework_dir: &Path, phases: Vec<Phase>) -> Report {
        Report {
            board: board.to_string(),
            fqbn: fqbn.to_string(),
            stage1_key: None,
            framework_dir: framework_dir.to_path_buf(),
            archives: Vec::new(),
            units: Vec::new(),
            sketches: Vec::new(),
            totals: Totals::default(),
            cache: CacheSummary::default(),
            size_report: None,
            boards: Vec::new(),
            phases,
        }
    }

    /// Every sketch that was not skipped built.
    pub fn all_ok(&self) -> bool {
        self.sketches.iter().all(|s| s.status != Status::Failed)
    }

    pub fn phases_tsv(&self) -> String {
        let mut s = String::from("phase\tseconds\tcount\n");
        for p in &self.phases {
            s.push_str(&format!("{}\t{:.3}\t{}\n", p.name, p.seconds, p.count));
        }
        // A board matrix adds one row per board: its whole build, its sketches.
        for b in &self.boards {
            s.push_str(&format!("board:{}\t{:.3}\t{}\n", b.board, b.totals.seconds, b.totals.sketches));
        }
        s
    }
}

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
