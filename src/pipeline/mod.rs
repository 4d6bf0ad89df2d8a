//! The two-stage build in one process. `build` is `compile-many` of one sketch.
//!
//! load -> one build graph (`plan::graph`) run by one scheduler (`exec::scheduler`):
//! discovery steps, then the core and libraries (stage-1 pool, `framework_jobs`
//! wide) beside each sketch's compiles, links and sizes (stage-2 pool, `sketch_jobs`
//! wide) -> report.

mod hooks;
mod session;
mod sketch;
mod target;
#[cfg(test)]
mod tests;
mod units;

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
use crate::hash::hex;
use crate::launcher::LocalSlots;
use crate::library::{IncludeCache, LibraryIndex, LibrarySources};
use crate::objcache::ObjectCache;
use crate::plan::graph::{Step, UnitId};
use crate::plan::{self, Context};
use crate::platform::{self, Board};
use crate::report::{self, LibraryUse, Phase, Progress, Report, SketchResult, UnitResult};
use crate::sketch::Sketch;
use crate::cache::store::Store;
use crate::toolchain::{Compiler, Toolchain};
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
    pub props: crate::properties::Properties,
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
    fn merged_cpp(&self, sketch: &Sketch, board: &Path, macros: Option<&crate::macros::Macros>) -> Result<std::sync::Arc<Vec<u8>>> {
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

/// Resolve the target's board, apply `--build-property`, check the toolchain (see
/// `Session::load`, which remembers the answer).
fn load_board(req: &Target, platforms: &[platform::Platform], toolchain: &Toolchain, store: Option<&Store>) -> Result<Loaded> {
    let board = platform::resolve_board(platforms, &req.board)?;
    let mut notes = Vec::new();
    for (menu, option) in &board.defaulted_menus {
        notes.push(format!("board {}: menu '{menu}' not given, using its first option '{option}'", board.id));
    }
    let mut props = board.properties.clone();
    platform::apply_build_profile(&mut props, req.optimize_for_debug);
    for (k, v) in &req.build_properties {
        props.set(k.clone(), v.clone());
    }
    plan::check_recipes(&props, &board.platform.path.join("platform.txt"))?;
    let platform_id = format!("{}:{}", board.platform.vendor, board.platform.arch);
    crate::runtime_tools::check_referenced(&props, &platform_id, crate::runtime_tools::packages_dir().as_deref())?;

    let probe_ctx = Context::new(&props, Path::new("/"), "probe", Path::new("/"));
    // The compiler first (naming the tool property that should hold it), then every
    // tool the recipes name must exist: say so now, not per sketch, naming the
    // runtime.tools property that placed it when one did.
    if let Some(cc) = probe_ctx.command("recipe.cpp.o.pattern", &[])?.first().filter(|c| !toolchain.runner().tool_exists(c)) {
        return Err(crate::runtime_tools::missing_compiler(&props, "recipe.cpp.o.pattern", Path::new(cc)));
    }
    let mut recipes: Vec<String> = ["recipe.cpp.o.pattern", "recipe.c.o.pattern", "recipe.S.o.pattern", "recipe.ar.pattern", "recipe.c.combine.pattern", "recipe.size.pattern"]
        .iter()
        .filter(|r| !props.get_or_empty(r).is_empty())
        .map(|r| r.to_string())
        .collect();
    recipes.extend(plan::recipe_keys(&props, "recipe.objcopy.", ".pattern"));
    for recipe in recipes {
        let Some(t) = probe_ctx.command(&recipe, &[])?.into_iter().next() else { continue };
        if !toolchain.runner().tool_exists(&t) {
            let packages = crate::runtime_tools::packages_dir();
            return Err(crate::runtime_tools::missing_tool(&props, &platform_id, &recipe, Path::new(&t), packages.as_deref())
                .unwrap_or_else(|| crate::toolchain::not_installed(Path::new(&t))));
        }
    }
    let cpp = probe_ctx.command("recipe.cpp.o.pattern", &[])?;
    let cpp_compiler = toolchain.probe(Path::new(&cpp[0]), store)?;
    let user_set_cpp_flags = req.build_properties.iter().any(|(k, _)| k == "compiler.cpp.extra_flags");
    if cpp_compiler.gcc_major().is_some_and(|m| m < 6) && !user_set_cpp_flags && !props.get_or_empty("compiler.cpp.extra_flags").contains("DECIMAL_DIG") {
        let flags = format!("{} {DECIMAL_DIG_FIX}", props.get_or_empty("compiler.cpp.extra_flags")).trim().to_string();
        props.set("compiler.cpp.extra_flags", flags);
        notes.push(format!(
            "{} is GCC {} (< 6): adding compiler.cpp.extra_flags={DECIMAL_DIG_FIX} so the core's WString.cpp compiles",
            cpp_compiler.path.display(),
            cpp_compiler.gcc_major().unwrap_or(0)
        ));
    }
    if std::env::var_os("SOURCE_DATE_EPOCH").is_some() && !cpp_compiler.honours_source_date_epoch() {
        notes.push(format!(
            "SOURCE_DATE_EPOCH is set, but {} expands __DATE__ and __TIME__ from the clock (GCC 7 and later read the variable): objects that use them are keyed by the clock",
            cpp_compiler.path.display()
        ));
    }
    Ok(Loaded { board, props, cpp_compiler, notes })
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
    req: &'r Target,
    t_start: Instant,
    phases: Vec<Phase>,
    board: Board,
    props: crate::properties::Properties,
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

impl<'r> Setup<'r> {
    fn new(session: &'r Session, req: &'r Target, shared: &Shared, progress: &Progress) -> Result<Setup<'r>> {
        let t_start = Instant::now();
        let runner = Arc::new(session.runner.scope());
        let (toolchain, store) = (session.toolchain.scope(runner.clone()), session.store.as_ref());
        let loaded = session.load(req, &toolchain)?;
        let Loaded { board, props, cpp_compiler, notes } = &*loaded;
        let (board, props, cpp_compiler) = (board.clone(), props.clone(), cpp_compiler.clone());
        if session.opts.verbose {
            for n in notes {
                crate::errln!("note: {n}");
            }
        }
        let sketches = req.sketches.iter().map(|p| shared.sketch(p)).collect::<Result<Vec<Sketch>>>()?;
        if sketches.is_empty() {
            return Err(Error::usage("no sketches given; pass sketch folders, .ino files or folders that hold sketches"));
        }
        ensure_dir(&req.out)?;
        let phases = vec![Phase { name: "load", seconds: t_start.elapsed().as_secs_f64(), count: sketches.len() }];

        let props_hash = crate::cache::keys::framework_folder(props.iter());
        let fw_dir = req.out.join("framework").join(format!("{}-{}", slug(&board.fqbn), &hex(&props_hash)[..10]));
        ensure_dir(&fw_dir)?;
        let core_path = PathBuf::from(props.get_or_empty("build.core.path"));
        let variant_path = props.get("build.variant.path").map(PathBuf::from);
        let framework_dirs: Vec<PathBuf> = std::iter::once(core_path.clone()).chain(variant_path.clone()).collect();
        let system_dirs = cpp_compiler.system_dirs.clone();
        let index = LibraryIndex::build(&LibrarySources {
            explicit: &req.library,
            folders: &req.libraries,
            platform_dir: &board.platform.path,
        })?;
        // What the preprocessor knows up front: the recipe's -D flags and the compiler's
        // predefined macros for its machine flags, so scanning skips other platforms' branches.
        let includes = {
            let sample = Context::new(&props, &fw_dir, "probe", &fw_dir).command("recipe.cpp.o.pattern", &[])?;
            let mut macros = crate::macros::Macros::from_args(&sample);
            let machine: Vec<String> = sample.iter().filter(|a| a.starts_with("-m") || a.starts_with("-std=")).cloned().collect();
            macros.add_definitions(&toolchain.predefined_macros(&cpp_compiler, &machine, store));
            IncludeCache::with_macros(macros)
        };

        // Sketches whose @filter leaves this board out are skipped before discovery,
        // so their libraries are never built.
        let selection = if req.filter {
            let facts = crate::filter::BoardFacts::of_build(&board, &props, includes.macros(), req.memory_class);
            crate::filter::select(sketches, &facts)
        } else {
            crate::filter::Selection { kept_at: (0..sketches.len()).collect(), kept: sketches, ..Default::default() }
        };
        for w in &selection.warnings {
            eprintln!("{w}");
        }
        let skipped: Vec<(usize, SketchResult)> = selection
            .skipped
            .iter()
            .map(|(i, s, reason)| {
                let r = SketchResult::skipped(&s.name, &s.dir, &req.sketch_dir(s), reason.clone());
                progress.started();
                progress.finished(&r);
                (*i, r)
            })
            .collect();
        let chip = match &session.opts.smoke_run {
            Some(_) => Some(crate::emulator::Target::from_properties(&props, &board.id)?),
            None => None,
        };
        let overlays = selection.kept.iter().map(|sk| Overlay::for_sketch(req, sk, &props, &fw_dir)).collect();
        let fw_ctx = Context::new(&props, &fw_dir, "core", &fw_dir);
        // The framework folder is the build folder of the core and the libraries: what
        // the platform's hooks prepare in a build folder before compiling (STM32duino's
        // sketch/build.opt, read by every compile; arduino-pico's core/Updater_Signing.h,
        // included by a library) is prepared here too, as for a sketch without the
        // files those hooks look for.
        if !selection.kept.is_empty() {
            hooks::prepare(&runner, &fw_ctx, FRAMEWORK_HOOKS, None, &[])
                .map_err(|e| Error::usage(format!("board {}: a platform hook failed in {}: {e}", board.fqbn, fw_dir.display())))?;
        }
        Ok(Setup {
            session,
            req,
            overlays,
            t_start,
            chip,
            phases,
            preprocess_ctx: Context::new(&props, &fw_dir, "discover", &fw_dir),
            fw_ctx,
            board,
            props,
            store,
            toolchain,
            cpp_compiler,
            runner,
            fw_dir,
            framework_dirs,
            core_path,
            variant_path,
            system_dirs,
            index,
            includes,
            sketches: selection.kept,
            kept_at: selection.kept_at,
            skipped,
        })
    }
}

impl<'a> Build<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(board: usize, setup: &'a Setup<'a>, shared: &'a Shared, cache: &'a ObjectCache<'a>, discoverer: &'a Discoverer<'a>, progress: &'a Progress, local: &'a LocalSlots, matrix: bool) -> Result<Build<'a>> {
        let core = plan_core(setup, &setup.framework_dirs)?;
        // Held for the whole run, not only stage 1: links read the framework's archives.
        let fw_lock = if setup.sketches.is_empty() { None } else { Some(FolderLock::acquire(&setup.fw_dir)?) };
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
        })
    }

    /// The steps known before discovery: the core's (unless it is up to date), one
    /// discovery per sketch, and the `Plan` step after them.
    fn seed(&self, s: &Scheduler<Node>) -> Result<()> {
        if self.setup.sketches.is_empty() {
            return Ok(()); // every sketch filtered itself out
        }
        if !self.setup.req.only_compiledb && !self.core.check(&self.setup.fw_ctx, &self.setup.toolchain, self.cache, self.setup.store)? {
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
        let compiles: Vec<NodeId> = (0..unit.jobs.len()).map(|j| self.add(s, Step::Compile(id, j), &[])).collect();
        self.add(s, Step::Finish(id), &compiles)
    }

    /// This board's report, after the graph ran.
    fn report(&self) -> Report {
        let setup = self.setup;
        let mut phases = setup.phases.clone();
        let board = &setup.board;
        let skipped = setup.skipped.clone();
        if self.setup.sketches.is_empty() {
            let results = report::in_argument_order(Vec::new(), &setup.kept_at, skipped);
            let seconds = setup.t_start.elapsed().as_secs_f64();
            phases.push(Phase { name: "total", seconds, count: results.len() });
            let totals = report::Totals { sketches: results.len(), skipped: results.len(), seconds, tool_processes: self.setup.runner.spawned(), ..Default::default() };
            let cache = report::CacheSummary { enabled: self.setup.store.is_some(), dir: self.setup.store.map(|s| s.root().to_path_buf()), hits: 0, misses: 0, remote: None };
            return Report {
                board: board.id.clone(),
                fqbn: board.fqbn.clone(),
                stage1_key: None,
                framework_dir: setup.fw_dir.clone(),
                archives: Vec::new(),
                units: Vec::new(),
                sketches: results,
                totals,
                cache,
                size_report: None,
                boards: Vec::new(),
                phases,
            };
        }
        phases.push(self.clocks.phase("discover", self.discoverer.preprocessor.runs.load(Ordering::Relaxed)));
        if self.planned_only.load(Ordering::SeqCst) {
            return Report::planned_only(&board.id, &board.fqbn, &setup.fw_dir, phases);
        }
        let libs = self.libs.get().map(Vec::as_slice).unwrap_or_default();
        let units: Vec<&Unit> = std::iter::once(&self.core).chain(libs.iter()).collect();
        let stage1_key = hex(&crate::cache::keys::stage1(units.iter().map(|u| u.state.lock().unwrap().key)));
        let results: Vec<SketchResult> = std::mem::take(&mut *self.results.lock().unwrap()).into_values().collect();
        phases.push(self.clocks.phase("stage1_archives", units.len()));
        phases.push(self.clocks.phase("stage2_sketches", results.len()));
        if self.setup.chip.is_some() {
            phases.push(self.clocks.phase("smoke_run", results.iter().filter(|r| r.run.is_some()).count()));
        }
        let results = report::in_argument_order(results, &setup.kept_at, skipped);

        let unit_results: Vec<UnitResult> = units.iter().map(|u| u.result()).collect();
        let mut totals = report::Totals::count(&results, &unit_results);
        totals.tool_processes = self.setup.runner.spawned() + self.setup.toolchain.processes_started();
        // The session's one store: every target's report gives its counts so far
        // (flushed and evicted once, when the session closes).
        let cache_summary = self.setup.session.cache_summary();
        if let Some(r) = &cache_summary.remote {
            phases.push(Phase { name: "remote_cache", seconds: r.seconds, count: r.requests() as usize });
        }
        totals.seconds = setup.t_start.elapsed().as_secs_f64();
        phases.push(Phase { name: "total", seconds: totals.seconds, count: results.len() });
        Report {
            board: board.id.clone(),
            fqbn: board.fqbn.clone(),
            stage1_key: Some(stage1_key),
            framework_dir: setup.fw_dir.clone(),
            archives: units.iter().filter_map(|u| u.archive.clone()).collect(),
            units: unit_results,
            sketches: results,
            totals,
            cache: cache_summary,
            size_report: None,
            boards: Vec::new(),
            phases,
        }
    }
}

/// Where the core compiles of `req`'s board find headers: the core, the variant and the
/// compiler's own folders (see `flags_the_core_ignores`).
pub fn core_header_folders(session: &Session, target: &Target) -> Result<Vec<PathBuf>> {
    let loaded = session.load(target, &session.toolchain)?;
    let Loaded { props, cpp_compiler, .. } = &*loaded;
    let mut dirs = vec![PathBuf::from(props.get_or_empty("build.core.path"))];
    dirs.extend(props.get("build.variant.path").map(PathBuf::from));
    dirs.extend(cpp_compiler.system_dirs.iter().cloned());
    Ok(dirs)
}

/// A sketch's own build properties over its target's (`Target::sketch_properties`),
/// with the contexts its discovery and its library units use.
struct Overlay {
    /// For the sketch's own compiles and link.
    props: std::sync::Arc<crate::properties::Properties>,
    preprocess_ctx: Context,
    /// For its library units: the target's properties and `SketchProperties::all`, made
    /// when a unit first needs them (most sketches of a big run use no library).
    unit_ctx: std::sync::OnceLock<Context>,
    all: Vec<(String, String)>,
    /// Names the settings: library units compiled with them are their own units.
    id: String,
}

impl Overlay {
    fn for_sketch(req: &Target, sketch: &Sketch, base: &crate::properties::Properties, fw_dir: &Path) -> Option<Overlay> {
        let set = req.own(sketch)?;
        let mut props = base.clone();
        let mut h = crate::hash::Hasher::new(crate::cache::keys::domain::SKETCH_PROPERTIES);
        for (k, v) in set.all.iter().chain(&set.sources) {
            props.set(k, v.clone());
        }
        for (k, v) in &set.all {
            h.str(k).str(v);
        }
        Some(Overlay {
            preprocess_ctx: Context::new(&props, fw_dir, "discover", fw_dir),
            unit_ctx: std::sync::OnceLock::new(),
            all: set.all.clone(),
            props: std::sync::Arc::new(props),
            id: if set.all.is_empty() { String::new() } else { hex(&h.finish())[..8].to_string() },
        })
    }
}

impl Setup<'_> {
    fn preprocess_ctx(&self, sketch: usize) -> &Context {
        self.overlays[sketch].as_ref().map_or(&self.preprocess_ctx, |o| &o.preprocess_ctx)
    }

    fn unit_ctx(&self, sketch: usize) -> &Context {
        match &self.overlays[sketch] {
            None => &self.fw_ctx,
            Some(o) if o.all.is_empty() => &self.fw_ctx,
            Some(o) => o.unit_ctx.get_or_init(|| {
                let mut props = self.props.clone();
                for (k, v) in &o.all {
                    props.set(k, v.clone());
                }
                Context::new(&props, &self.fw_dir, "core", &self.fw_dir)
            }),
        }
    }

    fn sketch_props(&self, sketch: usize) -> &crate::properties::Properties {
        self.overlays[sketch].as_ref().map_or(&self.props, |o| &o.props)
    }

    fn overlay_id(&self, sketch: usize) -> &str {
        self.overlays[sketch].as_ref().map_or("", |o| o.id.as_str())
    }
}

/// The core unit: the core's sources archived into core.a, the variant's linked as
/// objects. PlatformIO projects archive the core by file name (member order decides
/// where LTO places functions).
fn plan_core(setup: &Setup, includes: &[PathBuf]) -> Result<Unit> {
    let (props, core_path, variant_path) = (&setup.props, setup.core_path.as_path(), setup.variant_path.as_deref());
    let core_dir = setup.fw_dir.join("core");
    let mut core_sources = plan::core_sources(core_path);
    if props.get_or_empty(CORE_ORDER_PROPERTY) == CORE_ORDER_BY_NAME {
        core_sources.sort();
    }
    // A project's own `-I` folders can change a core object only through a header they
    // shadow; when they shadow none, the core is compiled without them, so every project
    // on the board shares one set of core objects (and cache entries).
    let mut search: Vec<&Path> = vec![core_path];
    search.extend(variant_path);
    search.extend(setup.cpp_compiler.system_dirs.iter().map(PathBuf::as_path));
    let omit = flags_the_core_ignores(props.get_or_empty(PROJECT_INCLUDE_FLAGS_PROPERTY), &search);
    let compile = |s: &Path, obj: &Path| -> Result<plan::CompileJob> {
        let mut job = setup.fw_ctx.compile(s, obj, includes)?;
        job.args.retain(|a| !omit.contains(a));
        Ok(job)
    };
    let mut jobs = Vec::new();
    for s in &core_sources {
        let rel = s.strip_prefix(core_path).unwrap_or(s);
        jobs.push(compile(s, &object_path(&core_dir, rel))?);
    }
    let mut link_objects = Vec::new();
    if let Some(vp) = variant_path {
        for s in &plan::core_sources(vp) {
            let rel = s.strip_prefix(vp).unwrap_or(s);
            let obj = object_path(&core_dir.join("variant"), rel);
            link_objects.push(obj.clone());
            jobs.push(compile(s, &obj)?);
        }
    }
    Ok(Unit { name: "core".into(), kind: "core", archive: Some(core_dir.join("core.a")), dir: core_dir, jobs, link_objects, precompiled: None, state: Mutex::default() })
}

/// The `-IDIR` words of `flags` whose folders hold no file at a path (relative to the
/// folder) that also exists under one of `search`: a header found there instead of the
/// core's, the variant's or the compiler's own is the only way such a folder reaches a
/// core object. Folders that do shadow one are kept, so the build stays exact.
pub fn flags_the_core_ignores(flags: &str, search: &[&Path]) -> Vec<String> {
    fn shadows(root: &Path, dir: &Path, search: &[&Path]) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else { return false };
        rd.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                return shadows(root, &p, search);
            }
            let rel = p.strip_prefix(root).unwrap_or(&p);
            search.iter().any(|s| s.join(rel).exists())
        })
    }
    flags
        .split_whitespace()
        .filter(|f| f.strip_prefix("-I").is_some_and(|d| !shadows(Path::new(d), Path::new(d), search)))
        .map(String::from)
        .collect()
}

/// When each kind of step first started and last ended: the phases overlap, so each
/// phase's time is its own span, and the spans need not add up to the total.
#[derive(Default)]
struct Clocks {
    spans: Mutex<BTreeMap<&'static str, (Instant, Instant)>>,
}

impl Clocks {
    fn record(&self, phase: &'static str, start: Instant) {
        let end = Instant::now();
        let mut spans = self.spans.lock().unwrap();
        let span = spans.entry(phase).or_insert((start, end));
        span.0 = span.0.min(start);
        span.1 = span.1.max(end);
    }

    fn phase(&self, name: &'static str, count: usize) -> Phase {
        let seconds = self.spans.lock().unwrap().get(name).map(|(a, b)| (*b - *a).as_secs_f64()).unwrap_or(0.0);
        Phase { name, seconds, count }
    }
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
                self.unit(u).compile(j, &self.compile_env());
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

    /// Write the sketch's build folder (merged `.ino.cpp`, its other files) and find
    /// its libraries as the reference does.
    fn discover(&self, i: usize) -> Result<(PathBuf, PathBuf, Vec<PathBuf>, SketchDiscovery)> {
        let sketch = &self.setup.sketches[i];
        let dir = self.setup.req.sketch_dir(sketch);
        let sketch_build = dir.join("sketch");
        ensure_dir(&sketch_build)?;
        // The platform's pre-build hooks first, as in the reference: what they write in
        // sketch/ is compiled with the sketch and searched for its libraries.
        let own: Vec<PathBuf> = sketch.sources().cloned().chain(std::iter::once(PathBuf::from(format!("{}.ino.cpp", sketch.name)))).collect();
        let hook_ctx = Context::new(self.setup.sketch_props(i), &dir, &format!("{}.ino", sketch.name), &sketch.dir);
        let generated = match hooks::prepare(&self.setup.runner, &hook_ctx, SKETCH_HOOKS, Some(&sketch.dir), &own) {
            Ok(p) => {
                if p.ran {
                    for s in &p.sources {
                        self.cache.invalidate(&sketch_build.join(s));
                    }
                }
                p.sources
            }
            Err(message) => {
                let error = crate::discover::DiscoveryError { missing: String::new(), command: Vec::new(), message };
                return Ok((dir, sketch_build, Vec::new(), SketchDiscovery { error: Some(error), ..Default::default() }));
            }
        };
        let merged_path = sketch_build.join(format!("{}.ino.cpp", sketch.name));
        let merged = self.shared.merged_cpp(sketch, &self.setup.fw_dir, self.setup.includes.macros())?;
        if write_if_changed(&merged_path, &merged)? {
            self.cache.invalidate(&merged_path);
        }
        for rel in &sketch.extra_files {
            let src = sketch.dir.join(rel);
            let dst = sketch_build.join(rel);
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            if let Some(parent) = dst.parent() {
                ensure_dir(parent)?;
            }
            if write_if_changed(&dst, &bytes)? {
                self.cache.invalidate(&dst);
            }
        }
        // The reference's queue: the merged sketch, then its other sources. The
        // sketch is preprocessed through its stand-in when it has one (examples of
        // one library share it, and so one run); a stop the stand-in cannot explain
        // is told in the sketch's own words, from a run of the sketch itself.
        let others = sketch_sources(sketch, &sketch_build, &generated);
        let ctx = self.setup.preprocess_ctx(i);
        let queue = |first: &Path| std::iter::once(first.to_path_buf()).chain(others.iter().cloned()).collect::<Vec<_>>();
        let stand_in = self.stand_in(&merged, &sketch_build)?;
        let mut d = self.discoverer.sketch(&self.setup.runner, &queue(stand_in.as_deref().unwrap_or(&merged_path)), ctx)?;
        if stand_in.is_some() && d.error.is_some() {
            let (seconds, runs) = (d.seconds, d.runs);
            d = self.discoverer.sketch(&self.setup.runner, &queue(&merged_path), ctx)?;
            d.seconds += seconds;
            d.runs += runs;
        }
        if self.setup.session.opts.verbose {
            for &l in &d.libraries {
                let lib = &&self.setup.index.libraries[l];
                // Worded as the reference builder words it (it names a library by its folder).
                eprintln!("{}: Using library {} at version {} in folder: {}", sketch.name, lib.dir_name, lib.version, lib.path.display());
            }
        }
        Ok((dir, merged_path, generated, d))
    }

    /// The stand-in source for a merged sketch's discovery (`discover::stand_in`),
    /// written once per content in the framework folder.
    fn stand_in(&self, merged: &[u8], sketch_build: &Path) -> Result<Option<PathBuf>> {
        let Some(text) = std::str::from_utf8(merged).ok().and_then(|t| crate::discover::stand_in(t, sketch_build)) else {
            return Ok(None);
        };
        let dir = self.setup.fw_dir.join("discover");
        ensure_dir(&dir)?;
        let path = dir.join(format!("{}.cpp", &hex(&crate::hash::Hasher::new(crate::cache::keys::domain::STAND_IN).str(&text).finish())[..16]));
        if write_if_changed(&path, text.as_bytes())? {
            self.cache.invalidate(&path);
        }
        Ok(Some(path))
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
        crate::compiledb::CompileDb::write_plan(&self.setup.req.out, units.flat_map(|u| &u.jobs), works.iter().map(|w| (&w.sketch, w.dir.join("sketch"), &w.jobs[..])))?;
        if self.setup.req.only_compiledb {
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
        // A unit per library, include path and sketch settings (the first sketch using
        // it stands for the settings).
        let mut lib_units: Vec<((usize, Vec<PathBuf>, String), usize)> = Vec::new();
        for (i, (_, _, _, d)) in discovered.iter().enumerate() {
            for &l in &d.libraries {
                let unit = (l, d.library_includes[&l].clone(), self.setup.overlay_id(i).to_string());
                if !lib_units.iter().any(|(u, _)| *u == unit) {
                    lib_units.push((unit, i));
                }
            }
        }
        let mut libs: Vec<Unit> = Vec::new();
        let mut lib_unit_index: BTreeMap<(usize, Vec<PathBuf>, String), usize> = BTreeMap::new();
        for ((l, inc, overlay), first) in &lib_units {
            let lib = &&self.setup.index.libraries[*l];
            let mut name = format!("{}-{}", slug(&lib.dir_name), &hex(&crate::cache::keys::library_unit_folder(inc))[..8]);
            if !overlay.is_empty() {
                name = format!("{name}-{overlay}");
            }
            let dir = self.setup.fw_dir.join("libraries").join(name);
            let unit_ctx = self.setup.unit_ctx(*first);
            // A precompiled library, on a platform that links them (it has
            // compiler.libraries.ldflags), as arduino-cli: its archives for this MCU go on
            // the link, and with `precompiled=full` its sources are then not compiled.
            let precompiled = match self.setup.props.contains("compiler.libraries.ldflags") {
                true => lib.precompiled_folder(unit_ctx.props.get_or_empty("build.mcu"), &unit_ctx.command("recipe.cpp.o.pattern", &[])?),
                false => None,
            };
            let (precompiled, precompiled_objects) = match &precompiled {
                Some(folder) => {
                    let (flags, objects) = lib.precompiled_link(folder);
                    let mut h = crate::hash::Hasher::new(crate::cache::keys::domain::PRECOMPILED);
                    for f in crate::library::files_in(folder) {
                        h.str(&f.display().to_string()).bytes(&std::fs::read(&f).map_err(|e| Error::io(&f, e))?);
                    }
                    (Some((flags, h.finish())), objects)
                }
                None => (None, Vec::new()),
            };
            let mut sources = if precompiled.is_some() && lib.precompiled_with_sources { Vec::new() } else { lib.sources() };
            plan::reference_order(&mut sources);
            let mut jobs = Vec::new();
            for src in &sources {
                let rel = src.strip_prefix(&lib.src_dir).unwrap_or(src);
                jobs.push(unit_ctx.compile(src, &object_path(&dir, rel), inc)?);
            }
            let objects: Vec<PathBuf> = jobs.iter().map(|j| j.object.clone()).collect();
            let (archive, mut link_objects) = if lib.dot_a_linkage && !jobs.is_empty() {
                (Some(dir.join(format!("{}.a", slug(&lib.dir_name)))), Vec::new())
            } else {
                (None, objects)
            };
            link_objects.extend(precompiled_objects);
            lib_unit_index.insert((*l, inc.clone(), overlay.clone()), libs.len());
            libs.push(Unit { name: lib.name.clone(), kind: "library", dir, jobs, archive, link_objects, precompiled, state: Mutex::default() });
        }

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
        for (i, w) in self.works().iter().enumerate() {
            self.progress.started();
            let link = match env.prepare(w) {
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


/// A sketch's translation units besides the merged `.ino.cpp`, in the build folder, in
/// the order the reference queues them for discovery: the sketch folder's own, then
/// `src/`, each by name.
fn sketch_sources(sketch: &Sketch, build: &Path, generated: &[PathBuf]) -> Vec<PathBuf> {
    let mut rel: Vec<&PathBuf> = sketch.sources().chain(generated).collect();
    rel.sort_by_key(|p| (p.components().count() > 1, (*p).clone()));
    rel.into_iter().map(|p| build.join(p)).collect()
}

fn object_path(dir: &Path, rel: &Path) -> PathBuf {
    let mut name = rel.as_os_str().to_owned();
    name.push(".o");
    dir.join(name)
}
