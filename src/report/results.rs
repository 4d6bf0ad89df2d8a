//! Every result type of a run, as results.json spells it: per sketch, per unit
//! (core, library), per board of a matrix, the totals and cache counts, and the
//! report that holds them. Deserializable too, so `merge-results` reads results.json
//! back into these types instead of walking untyped JSON.

use std::collections::BTreeMap;
use std::ops::AddAssign;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::size_delta;
use crate::cache::remote::RemoteStats;
use crate::report::diagnostics::Diagnostic;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    /// The sketch's `@filter` leaves this board out: not built (see `skip_reason`).
    Skipped,
}

/// How a sketch's firmware came to be.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub firmware: BTreeMap<String, PathBuf>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LibraryUse {
    pub name: String,
    pub version: String,
    pub folder: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSummary {
    pub enabled: bool,
    pub dir: Option<PathBuf>,
    pub hits: u64,
    pub misses: u64,
    /// The shared tier (`--remote-cache`): hits, misses, bytes, time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
    pub boards: Vec<BoardRun>,
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

/// One board of a matrix, in results.json's `boards`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoardRun {
    pub board: String,
    pub fqbn: String,
    /// This board's output folder (its sketches' folders are below it).
    pub out_dir: PathBuf,
    pub stage1_key: Option<String>,
    pub framework_dir: PathBuf,
    pub archives: Vec<PathBuf>,
    pub units: Vec<UnitResult>,
    pub totals: Totals,
}

/// results.json as written: the report, and the shard it is of (`--shard`), or the
/// files `merge-results` joined into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultsFile {
    #[serde(flatten)]
    pub report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<Vec<String>>,
}

impl ResultsFile {
    /// The file's text: pretty JSON with keys sorted (through a JSON value, whose map
    /// is ordered by key), as results.json has always been written.
    pub fn to_json(&self) -> String {
        serde_json::to_value(self).and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or_default()
    }
}

/// The one way totals add: a board's from its sketches and units, a matrix's from its
/// boards, a merge's from its shards. `seconds` adds too; a caller whose parts ran at
/// once (matrix, shards) sets it to the wall time afterwards.
impl AddAssign<&Totals> for Totals {
    fn add_assign(&mut self, t: &Totals) {
        self.sketches += t.sketches;
        self.ok += t.ok;
        self.failed += t.failed;
        self.skipped += t.skipped;
        self.seconds += t.seconds;
        self.objects_compiled += t.objects_compiled;
        self.objects_cached += t.objects_cached;
        self.links_run += t.links_run;
        self.tool_processes += t.tool_processes;
    }
}

impl Totals {
    /// What one sketch result adds: a sketch of its status, its objects, its link.
    pub fn of_sketch(r: &SketchResult) -> Totals {
        Totals {
            sketches: 1,
            ok: usize::from(r.status == Status::Ok),
            failed: usize::from(r.status == Status::Failed),
            skipped: usize::from(r.status == Status::Skipped),
            objects_compiled: r.objects_compiled,
            objects_cached: r.objects_cached,
            links_run: usize::from(r.link == LinkSource::Linked),
            ..Default::default()
        }
    }

    /// What one unit (core, library) adds: its objects.
    pub fn of_unit(u: &UnitResult) -> Totals {
        Totals { objects_compiled: u.objects_compiled, objects_cached: u.objects_cached, ..Default::default() }
    }

    /// A board's totals from its sketch and unit results (seconds and processes are
    /// the caller's to set: they are measured, not counted).
    pub fn count(sketches: &[SketchResult], units: &[UnitResult]) -> Totals {
        let mut t = Totals::default();
        for s in sketches {
            t += &Totals::of_sketch(s);
        }
        for u in units {
            t += &Totals::of_unit(u);
        }
        t
    }
}

/// Cache counts of several builds: counts add; the first folder and remote server named
/// stay (every part of one run uses the same).
impl AddAssign<CacheSummary> for CacheSummary {
    fn add_assign(&mut self, c: CacheSummary) {
        self.enabled |= c.enabled;
        self.dir = self.dir.take().or(c.dir);
        self.hits += c.hits;
        self.misses += c.misses;
        self.remote = match (self.remote.take(), c.remote) {
            (Some(mut a), Some(b)) => {
                a += &b;
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }
}

impl AddAssign<&RemoteStats> for RemoteStats {
    fn add_assign(&mut self, b: &RemoteStats) {
        self.hits += b.hits;
        self.misses += b.misses;
        self.rejected += b.rejected;
        self.stores += b.stores;
        self.errors += b.errors;
        self.bytes_read += b.bytes_read;
        self.bytes_written += b.bytes_written;
        self.seconds += b.seconds;
    }
}

impl SketchResult {
    /// The result of a sketch that was not built for this board (its `@filter`).
    pub fn skipped(name: &str, path: &Path, output_dir: &Path, reason: String) -> SketchResult {
        SketchResult { skip_reason: Some(reason), ..SketchResult::unbuilt(name, path, output_dir, Status::Skipped) }
    }

    /// A result with nothing built yet: no firmware, sizes, objects or link. The build
    /// fills it in as it goes.
    pub fn unbuilt(name: &str, path: &Path, output_dir: &Path, status: Status) -> SketchResult {
        SketchResult {
            name: name.to_string(),
            board: None,
            fqbn: None,
            path: path.to_path_buf(),
            status,
            skip_reason: None,
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

    /// The firmware files of a sketch that built, by kind; none for one that did not.
    pub fn built_firmware(&self) -> Option<&BTreeMap<String, PathBuf>> {
        (self.status == Status::Ok).then_some(&self.firmware)
    }
}

/// Built and skipped results merged back into argument order (`kept_at[i]` is the
/// position of `built[i]`).
pub fn in_argument_order(built: Vec<SketchResult>, kept_at: &[usize], skipped: Vec<(usize, SketchResult)>) -> Vec<SketchResult> {
    let mut all: Vec<(usize, SketchResult)> = kept_at.iter().copied().zip(built).chain(skipped).collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// The name of a project's result: `project:env`. Arduino sketch names cannot hold a
/// `:`, so a result named so is a project's env.
pub fn is_env_label(name: &str) -> bool {
    name.contains(':')
}
