//! The two-stage build in one process. `build` is `compile-many` of one sketch, and
//! `build(&Session, &[Target])` is the one door every command goes through.
//!
//! load -> one build graph (`plan::graph`) run by one scheduler (`exec::scheduler`):
//! discovery steps, then the core and libraries (stage-1 pool, `framework_jobs`
//! wide) beside each sketch's compiles, links and sizes (stage-2 pool, `sketch_jobs`
//! wide) -> report.
//!
//! A file per phase, as arduino-cli's builder is cut: `load.rs` (board, sketches,
//! filters, framework folder), `core.rs`, `libraries.rs`, `discover.rs`, `units.rs`
//! (stage-1 compiles and archives), `sketch.rs` (sketch compiles, link, size),
//! `results.rs` (the report). This file holds the door and the graph's small loop:
//! `seed` (discovery and the core), `plan` (a `Plan` value, then compile_commands.json),
//! `scan` (the up-to-date check that adds only the steps that must run) and `exec`.

mod core;
mod discover;
mod hooks;
mod libraries;
mod load;
mod pch;
mod results;
mod session;
mod sketch;
mod target;
#[cfg(test)]
mod tests;
mod units;

pub use self::core::{core_header_folders, flags_the_core_ignores};
pub use session::{Session, SessionOptions};
pub use target::{SketchProperties, Target};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::discover::preprocess::Preprocessor;
use crate::discover::{Discoverer, SketchDiscovery};
use crate::error::{Error, Result};
use crate::exec::scheduler::{Limits, NodeId, Scheduler};
use crate::exec::Runner;
use crate::cache::hash::hex;
use crate::exec::launcher::LocalSlots;
use crate::arduino::library::{IncludeCache, LibraryIndex, LibrarySources};
use crate::cache::objects::ObjectCache;
use crate::plan::graph::{Step, UnitId};
use crate::plan::{self, Context};
use crate::arduino::platform::{self, Board};
use crate::report::{self, LibraryUse, Phase, Progress, Report, SketchResult, UnitResult};
use crate::arduino::sketch::Sketch;
use crate::cache::store::Store;
use crate::arduino::toolchain::{Compiler, Toolchain};
use self::core::plan_core;
use results::Clocks;
use sketch::{Prepared, SketchEnv, SketchWork};
use units::{CompileEnv, Unit};

/// The hook stages that prepare a build folder before its first compile, in the
/// reference's order; a sketch's folder gets the first two (see `Build::discover`).
const FRAMEWORK_HOOKS: &[&str] = &["prebuild", "sketch.prebuild", "libraries.prebuild", "core.prebuild"];
const SKETCH_HOOKS: &[&str] = &["prebuild", "sketch.prebuild"];

/// The define avr-gcc < 6 needs in C++ for the core's WString.cpp (see docs/design.md).
pub const DECIMAL_DIG_FIX: &str = "-DDECIMAL_DIG=__DECIMAL_DIG__";

// The properties a PlatformIO project (`project/`) sets for the pipeline to read: here,
// with their reader, so the pipeline needs nothing from `project`.
/// A build property telling the pipeline to archive the core in PlatformIO's order (by
/// file name) rather than arduino-builder's (one language at a time); it is part of the
/// properties, so it also keys the framework build.
pub const CORE_ORDER_PROPERTY: &str = "fbuild.core_archive_order";
pub const CORE_ORDER_BY_NAME: &str = "name";
/// The project's own `-I` words (src/, include/, relative `-I` of build_flags), which
/// the pipeline leaves out of core compiles when they shadow none of the core's headers.
pub const PROJECT_INCLUDE_FLAGS_PROPERTY: &str = "fbuild.project_include_flags";

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Each sketch's output folder: readable name plus a hash of its absolute path, so
/// two sketches with the same name in different places never collide.
pub fn sketch_out_dir(out: &Path, sketch: &Sketch) -> PathBuf {
    let h = crate::cache::keys::sketch_folder(&sketch.dir);
    out.join(format!("{}-{}", slug(&sketch.name), &hex(&h)[..10]))
}

/// An exclusive advisory lock on an output folder, held while this process writes
/// there: two processes building into the same `--out` take turns per folder instead
/// of interleaving writes to the same object files. (The cache itself never locks.)
pub struct FolderLock {
    _file: std::fs::File,
}

impl FolderLock {
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        ensure_dir(dir)?;
        let path = dir.join(".fbuild-lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Environment(format!("cannot write {}: {e}; choose a writable --out", path.display())))?;
        use std::os::unix::io::AsRawFd;
        // Blocking is fine: the holder is another fbuild making progress on the same outputs.
        loop {
            // SAFETY: the descriptor is valid while `f` lives.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FolderLock { _file: f });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Environment(format!("cannot lock {}: {e}; is --out on a file system without locks?", path.display())));
            }
        }
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::read(path).map(|old| old == bytes).unwrap_or(false) {
        return Ok(false);
    }
    report::write_atomic(path, bytes)?;
    Ok(true)
}

fn ensure_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| {
        Error::Environment(format!("cannot create output folder {}: {e}; choose a writable --out", path.display()))
    })
}

/// A target's board, loaded (`Session::load`).
pub struct Loaded {
    pub board: Board,
    pub props: crate::arduino::properties::Properties,
    /// The platform's C++ compiler (it decides quirks, include folders, macros).
    pub cpp_compiler: Compiler,
    pub notes: Vec<String>,
}

/// What the targets of one `build` share once loaded: each sketch, and each sketch's
/// merged `.ino` (per sketch and board framework folder: the board's macros decide
/// where prototypes go).
#[derive(Default)]
struct Shared {
    sketches: Mutex<std::collections::HashMap<PathBuf, Sketch>>,
    /// Keep merged `.ino`s for the next target (a single target never needs them again).
    remember_merged: bool,
    merged: Mutex<std::collections::HashMap<(PathBuf, PathBuf), std::sync::Arc<Vec<u8>>>>,
}

impl Shared {
    /// The sketch at `path`, loaded once for every target that builds it.
    fn sketch(&self, path: &Path) -> Result<Sketch> {
        if let Some(s) = self.sketches.lock().unwrap().get(path) {
            return Ok(s.clone());
        }
        let s = Sketch::load(path)?;
        self.sketches.lock().unwrap().insert(path.to_path_buf(), s.clone());
        Ok(s)
    }

    /// `board` names the board's framework folder, whose `macros` they are.
    fn merged_cpp(&self, sketch: &Sketch, board: &Path, macros: Option<&crate::cpp::macros::Macros>) -> Result<std::sync::Arc<Vec<u8>>> {
        let key = (sketch.dir.clone(), board.to_path_buf());
        if let Some(m) = self.merged.lock().unwrap().get(&key) {
            return Ok(m.clone());
        }
        let m = std::sync::Arc::new(sketch.merged_cpp_for(macros)?);
        if self.remember_merged {
            self.merged.lock().unwrap().insert(key, m.clone());
        }
        Ok(m)
    }
}

/// Build `targets` with `session`: the one door. Every target's steps go into one
/// build graph run by one scheduler, so one board's links run while another's core
/// compiles; one report per target, in order. `Err` only for unusable input,
/// environment failures and interruption; sketch failures are in the reports.
///
/// Each target's graph: discovery steps first, then its `Plan` step adds the library
/// units and every sketch's compile and link steps while the core compiles.
pub fn build(session: &Session, targets: &[Target]) -> Result<Vec<Report>> {
    if targets.is_empty() {
        return Err(Error::usage("no board given"));
    }
    let opts = &session.opts;
    let shared = &Shared { remember_merged: targets.len() > 1, ..Default::default() };
    let progress = Progress::new(targets.iter().map(|t| t.sketches.len()).sum(), opts.quiet);
    let setups = targets.iter().map(|t| Setup::new(session, t, shared, &progress)).collect::<Result<Vec<_>>>()?;
    // One object cache (its memo of file hashes) for every target.
    let cache = ObjectCache::new(session.store.as_ref());
    let discoverers: Vec<Discoverer> = setups
        .iter()
        .map(|s| Discoverer {
            index: &s.index,
            arch: s.board.platform.arch.clone(),
            framework_dirs: s.framework_dirs.clone(),
            preprocessor: Preprocessor::new(session.store.as_ref(), &cache, s.cpp_compiler.clone()),
        })
        .collect();
    // With a launcher, more sketches may be in flight than there are cores; their
    // discovery and links still run here, so they take turns for the cores.
    let local = LocalSlots::new(if opts.compiler_launcher.is_empty() { opts.sketch_jobs } else { opts.local_jobs });
    let mut builds = Vec::with_capacity(setups.len());
    for (i, (setup, discoverer)) in setups.iter().zip(&discoverers).enumerate() {
        builds.push(Build::new(i, setup, shared, &cache, discoverer, &progress, &local, targets.len() > 1)?);
    }
    let scheduler: Scheduler<Node> = Scheduler::new(Limits { stage1: opts.framework_jobs, stage2: opts.sketch_jobs });
    progress.stage("discovering libraries");
    for b in &builds {
        b.seed(&scheduler)?;
    }
    scheduler.run(|s, _, node| builds[node.board].exec(s, node.step));
    progress.finish();
    if builds.iter().any(|b| b.setup.runner.interrupted()) {
        return Err(Error::Interrupted);
    }
    for b in &builds {
        if let Some(e) = b.error.lock().unwrap().take() {
            return Err(e);
        }
    }
    let mut reports: Vec<Report> = builds.iter().map(Build::report).collect();
    // Probes run outside any target (a command that loaded a board first) count too.
    if let Some(first) = reports.first_mut() {
        first.totals.tool_processes += session.toolchain.take_started();
    }
    Ok(reports)
}

/// A step of one board's graph.
#[derive(Debug, Clone, Copy)]
struct Node {
    board: usize,
    step: Step,
}

/// One board's build, loaded: everything its steps read that it owns.
struct Setup<'r> {
    session: &'r Session,
    target: &'r Target,
    t_start: Instant,
    phases: Vec<Phase>,
    board: Board,
    props: crate::arduino::properties::Properties,
    store: Option<&'r Store>,
    /// The session's probe memo and runner, counting this target's processes.
    toolchain: Toolchain,
    cpp_compiler: Compiler,
    /// The toolchain's runner: probes and steps are counted and stopped alike.
    runner: Arc<Runner>,
    fw_dir: PathBuf,
    framework_dirs: Vec<PathBuf>,
    core_path: PathBuf,
    variant_path: Option<PathBuf>,
    system_dirs: Vec<PathBuf>,
    index: LibraryIndex,
    includes: IncludeCache,
    preprocess_ctx: Context,
    fw_ctx: Context,
    /// The sketches to build (filters applied), and where each goes among all given.
    sketches: Vec<Sketch>,
    /// Per sketch: its own settings, when `Target::sketch_properties` gives it any.
    overlays: Vec<Option<Overlay>>,
    kept_at: Vec<usize>,
    skipped: Vec<(usize, SketchResult)>,
    /// The simulated chip, with `--smoke-run`.
    chip: Option<crate::emulator::Target>,
}

impl<'a> Build<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(board: usize, setup: &'a Setup<'a>, shared: &'a Shared, cache: &'a ObjectCache<'a>, discoverer: &'a Discoverer<'a>, progress: &'a Progress, local: &'a LocalSlots, matrix: bool) -> Result<Build<'a>> {
        let core = plan_core(setup, &setup.framework_dirs)?;
        // Held for the whole run, not only stage 1: links read the framework's archives.
        let fw_lock = if setup.sketches.is_empty() { None } else { Some(FolderLock::acquire(&setup.fw_dir)?) };
        // A launcher (distcc) may compile elsewhere, where the `.gch` is not.
        let pch_on = !setup.session.opts.no_pch && setup.session.opts.compiler_launcher.is_empty();
        let pch = pch_on.then(|| pch::BoardPch::new(&setup.fw_dir, core.jobs.iter().flat_map(|j| pch::include_folders(&j.args))));
        Ok(Build {
            board,
            matrix,
            setup,
            shared,
            core,
            libs: OnceLock::new(),
            works: OnceLock::new(),
            discovered: Mutex::new(BTreeMap::new()),
            results: Mutex::new(BTreeMap::new()),
            core_done: OnceLock::new(),
            planned_only: AtomicBool::new(false),
            error: Mutex::new(None),
            clocks: Default::default(),
            runs: AtomicUsize::new(0),
            cache,
            discoverer,
            progress,
            local,
            _fw_lock: fw_lock,
            pch,
        })
    }

    /// The steps known before discovery: the core's (unless it is up to date), one
    /// discovery per sketch, and the `Plan` step after them.
    fn seed(&self, s: &Scheduler<Node>) -> Result<()> {
        if self.setup.sketches.is_empty() {
            return Ok(()); // every sketch filtered itself out
        }
        if !self.setup.target.only_compiledb && !self.core.check(&self.setup.fw_ctx, &self.setup.toolchain, self.cache, self.setup.store)? {
            let _ = self.core_done.set(self.add_unit(s, &self.core, UnitId::Core));
        }
        let discovers: Vec<NodeId> = (0..self.setup.sketches.len()).map(|i| self.add(s, Step::Discover(i), &[])).collect();
        self.add(s, Step::Plan, &discovers);
        Ok(())
    }

    fn add(&self, s: &Scheduler<Node>, step: Step, deps: &[NodeId]) -> NodeId {
        s.add(Node { board: self.board, step }, step.pool(), step.priority(), deps)
    }

    /// A unit's steps: its compiles, then its finishing step, which is returned.
    fn add_unit(&self, s: &Scheduler<Node>, unit: &Unit, id: UnitId) -> NodeId {
        if let Some(p) = &self.pch {
            p.expect_unit(&unit.jobs);
        }
        let compiles: Vec<NodeId> = (0..unit.jobs.len()).map(|j| self.add(s, Step::Compile(id, j), &[])).collect();
        self.add(s, Step::Finish(id), &compiles)
    }

}

/// A sketch's own build properties over its target's (`Target::sketch_properties`),
/// with the contexts its discovery and its library units use.
struct Overlay {
    /// For the sketch's own compiles and link.
    props: std::sync::Arc<crate::arduino::properties::Properties>,
    preprocess_ctx: Context,
    /// For its library units: the target's properties and `SketchProperties::all`, made
    /// when a unit first needs them (most sketches of a big run use no library).
    unit_ctx: std::sync::OnceLock<Context>,
    all: Vec<(String, String)>,
    /// Names the settings: library units compiled with them are their own units.
    id: String,
}

/// What the `Plan` step decides for one target: its library units and each sketch's work.
struct Plan {
    libs: Vec<Unit>,
    works: Vec<SketchWork>,
}

/// Everything the steps of one build read, and the tables the `Plan` step fills.
struct Build<'a> {
    /// This board's index among the boards being built.
    board: usize,
    /// Several boards: each result names its board as it finishes.
    matrix: bool,
    setup: &'a Setup<'a>,
    shared: &'a Shared,
    core: Unit,
    libs: OnceLock<Vec<Unit>>,
    works: OnceLock<Vec<SketchWork>>,
    discovered: Mutex<BTreeMap<usize, (PathBuf, PathBuf, Vec<PathBuf>, SketchDiscovery)>>,
    results: Mutex<BTreeMap<usize, SketchResult>>,
    core_done: OnceLock<NodeId>,
    planned_only: AtomicBool,
    /// The first environment error a step met (an unwritable folder...): the run fails with it.
    error: Mutex<Option<Error>>,
    clocks: Clocks,
    /// Smoke runs done so far.
    runs: AtomicUsize,
    cache: &'a ObjectCache<'a>,
    discoverer: &'a Discoverer<'a>,
    progress: &'a Progress,
    local: &'a LocalSlots,
    _fw_lock: Option<FolderLock>,
    /// Sketch compiles' precompiled `Arduino.h` (see `pch.rs`).
    pch: Option<pch::BoardPch>,
}

impl Build<'_> {
    fn fail(&self, e: Error) {
        let mut slot = self.error.lock().unwrap();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn failed(&self) -> bool {
        self.error.lock().unwrap().is_some()
    }

    fn unit(&self, id: UnitId) -> &Unit {
        match id {
            UnitId::Core => &self.core,
            UnitId::Library(i) => &self.libs.get().expect("library units are planned before their steps")[i],
        }
    }

    fn sketch_env(&self) -> SketchEnv<'_> {
        SketchEnv {
            props: &self.setup.props,
            core: &self.core,
            libs: self.libs.get().map(Vec::as_slice).unwrap_or_default(),
            cache: self.cache,
            toolchain: &self.setup.toolchain,
            store: self.setup.store,
            runner: &self.setup.runner,
            index: &self.setup.index,
            includes: &self.setup.includes,
            system_dirs: &self.setup.system_dirs,
            fw_dir: &self.setup.fw_dir,
            launcher: &self.setup.session.opts.compiler_launcher,
            local: self.local,
            pch: self.pch.as_ref(),
        }
    }

    fn compile_env(&self) -> CompileEnv<'_> {
        CompileEnv { cache: self.cache, runner: &self.setup.runner, includes: &self.setup.includes, system_dirs: &self.setup.system_dirs, launcher: &self.setup.session.opts.compiler_launcher }
    }

    /// Run one step of the graph.
    fn exec(&self, s: &Scheduler<Node>, step: Step) {
        // After Ctrl-C or an environment error the remaining steps are dropped.
        if self.setup.runner.interrupted() || self.failed() {
            return;
        }
        let t = Instant::now();
        match step {
            Step::Discover(i) => {
                let _slot = self.local.acquire();
                match self.discover(i) {
                    Ok(d) => {
                        self.discovered.lock().unwrap().insert(i, d);
                    }
                    Err(e) => self.fail(e),
                }
                self.clocks.record("discover", t);
            }
            Step::Plan => {
                if let Err(e) = self.plan(s) {
                    self.fail(e);
                }
            }
            Step::Compile(u, j) => {
                self.progress.stage_once("stage 1: core and libraries");
                let penv = pch::PchEnv { toolchain: &self.setup.toolchain, store: self.setup.store, cache: self.cache, runner: &self.setup.runner };
                self.unit(u).compile(j, &self.compile_env(), self.pch.as_ref().map(|p| (p, &penv)));
                self.clocks.record("stage1_archives", t);
            }
            Step::Finish(u) => {
                self.progress.stage_once("stage 1: core and libraries");
                if let Err(e) = self.unit(u).finish(&self.setup.fw_ctx, &self.setup.runner, self.setup.store) {
                    self.fail(e);
                }
                self.clocks.record("stage1_archives", t);
            }
            Step::CompileSketch(i, j) => {
                self.progress.stage_once("stage 2: sketches");
                self.sketch_env().compile(&self.works()[i], j);
                self.clocks.record("stage2_sketches", t);
            }
            Step::Link(i) => {
                self.progress.stage_once("stage 2: sketches");
                let r = self.sketch_env().link(&self.works()[i]);
                self.settle(i, r);
                self.clocks.record("stage2_sketches", t);
            }
            Step::Run(i) => {
                self.smoke_run(i);
                self.clocks.record("smoke_run", t);
            }
        }
    }

    /// `--smoke-run`: boot sketch `i`'s firmware, if it built, and keep the outcome.
    fn smoke_run(&self, i: usize) {
        let (Some(chip), Some(spec)) = (&self.setup.chip, &self.setup.session.opts.smoke_run) else { return };
        let Some(firmware) = self.results.lock().unwrap().get(&i).and_then(SketchResult::built_firmware).and_then(crate::emulator::Firmware::from_files) else { return };
        let run = crate::emulator::run(&self.setup.runner, chip, &firmware, spec, crate::emulator::Output::Capture);
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let mut results = self.results.lock().unwrap();
        let Some(r) = results.get_mut(&i) else { return };
        if !self.setup.session.opts.quiet && !self.setup.runner.interrupted() {
            let board = r.board.as_deref().map(|b| format!("{b} ")).unwrap_or_default();
            let why = run.reason.as_deref().map(|x| format!(": {x}")).unwrap_or_default();
            crate::errln!("[run {n}] {:<8} {board}{} ({:.3} s simulated, {:.2} s wall){why}", crate::emulator::status_name(run.status), r.path.display(), run.simulated_seconds, run.wall_seconds);
        }
        r.run = Some(run);
    }

    fn works(&self) -> &[SketchWork] {
        self.works.get().expect("sketches are planned before their steps")
    }

    fn settle(&self, i: usize, mut r: SketchResult) {
        if self.matrix {
            r.board = Some(self.setup.board.id.clone());
            r.fqbn = Some(self.setup.board.fqbn.clone());
        }
        // After Ctrl-C the remaining sketches are cancelled, not failed: no line each.
        if !self.setup.runner.interrupted() {
            self.progress.finished(&r);
        }
        self.results.lock().unwrap().insert(i, r);
    }

    /// The `Plan` step, after discovery: the plan (`make_plan`), compile_commands.json,
    /// then the up-to-date scan (`scan`), which adds the steps that must run.
    fn plan(&self, s: &Scheduler<Node>) -> Result<()> {
        let discovered = std::mem::take(&mut *self.discovered.lock().unwrap());
        if discovered.len() != self.setup.sketches.len() {
            return Ok(()); // a discovery failed; its error ends the run
        }
        let Plan { libs, works } = self.make_plan(discovered.into_values().collect())?;
        // Editors' view of the plan (compile_commands.json), written before anything compiles.
        let units = std::iter::once(&self.core).chain(libs.iter());
        crate::plan::compiledb::CompileDb::write_plan(&self.setup.target.out, units.flat_map(|u| &u.jobs), works.iter().map(|w| (&w.sketch, w.dir.join("sketch"), &w.jobs[..])))?;
        if self.setup.target.only_compiledb {
            self.planned_only.store(true, Ordering::SeqCst);
            return Ok(());
        }
        let _ = self.libs.set(libs);
        let _ = self.works.set(works);
        self.scan(s)
    }

    /// One stage-1 unit per library and include path (see `Discoverer::unit_include_dirs`)
    /// in first-use order, and each sketch's compile and link work: every command, nothing
    /// checked or run yet.
    fn make_plan(&self, discovered: Vec<(PathBuf, PathBuf, Vec<PathBuf>, SketchDiscovery)>) -> Result<Plan> {
        let (libs, lib_unit_index) = self.plan_libraries(&discovered)?;

        let mut works: Vec<SketchWork> = Vec::new();
        for (i, (sketch, (dir, merged, generated, disc))) in self.setup.sketches.iter().zip(discovered).enumerate() {
            let ctx = Context::new(self.setup.sketch_props(i), &dir, &format!("{}.ino", sketch.name), &sketch.dir);
            let build = dir.join("sketch");
            let mut sources: Vec<PathBuf> = vec![merged.clone()];
            sources.extend(sketch.sources().chain(&generated).map(|rel| build.join(rel)));
            plan::sketch_order(&mut sources, &build);
            let mut jobs = Vec::new();
            if disc.error.is_none() {
                for src in &sources {
                    let rel = src.strip_prefix(&build).unwrap_or(src);
                    jobs.push(ctx.compile(src, &object_path(&build, rel), &disc.include_dirs)?);
                }
            }
            works.push(SketchWork {
                libraries: disc
                    .libraries
                    .iter()
                    .map(|&l| {
                        let lib = &&self.setup.index.libraries[l];
                        LibraryUse { name: lib.name.clone(), version: lib.version.clone(), folder: lib.path.clone() }
                    })
                    .collect(),
                units: disc.libraries.iter().map(|&l| lib_unit_index[&(l, disc.library_includes[&l].clone(), self.setup.overlay_id(i).to_string())]).collect(),
                props: self.setup.overlays[i].as_ref().map(|o| std::sync::Arc::clone(&o.props)),
                discovery_error: disc.error,
                sketch: sketch.clone(),
                dir,
                jobs,
                discover_seconds: disc.seconds,
                discover_runs: disc.runs,
                state: Mutex::default(),
            });
        }

        Ok(Plan { libs, works })
    }

    /// The up-to-date scan (ninja's dependency scan), apart from planning: keys first
    /// (hashing only), so up-to-date units and settled sketches get no steps; every
    /// other sketch gets its compile and link steps (and its smoke run).
    fn scan(&self, s: &Scheduler<Node>) -> Result<()> {
        let libs = self.libs.get().map(Vec::as_slice).unwrap_or_default();
        // Keys first (hashing only): up-to-date units get no steps.
        let mut lib_done: Vec<Option<NodeId>> = Vec::new();
        for (i, u) in libs.iter().enumerate() {
            let up_to_date = u.check(&self.setup.fw_ctx, &self.setup.toolchain, self.cache, self.setup.store)?;
            lib_done.push((!up_to_date).then(|| self.add_unit(s, u, UnitId::Library(i))));
        }
        // Settle what needs no tool; give every other sketch its compile and link steps.
        let env = self.sketch_env();
        // Every sketch is prepared before any sketch step is added: the first compile
        // must know how many will follow (a precompiled header is built only for enough).
        let prepared: Vec<Prepared> = self.works().iter().map(|w| env.prepare(w)).collect();
        for (i, (w, p)) in self.works().iter().zip(prepared).enumerate() {
            self.progress.started();
            let link = match p {
                Prepared::Done(r) => {
                    self.settle(i, r);
                    None
                }
                Prepared::Build => {
                    let mut deps: Vec<NodeId> = (0..w.jobs.len()).map(|j| self.add(s, Step::CompileSketch(i, j), &[])).collect();
                    deps.extend(self.core_done.get().copied());
                    deps.extend(w.units.iter().filter_map(|&u| lib_done[u]));
                    Some(self.add(s, Step::Link(i), &deps))
                }
            };
            if self.setup.chip.is_some() {
                self.add(s, Step::Run(i), link.as_slice());
            }
        }
        Ok(())
    }
}


fn object_path(dir: &Path, rel: &Path) -> PathBuf {
    let mut name = rel.as_os_str().to_owned();
    name.push(".o");
    dir.join(name)
}
