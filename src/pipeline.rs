//! The two-stage build in one process. `build` is `compile-many` of one sketch.
//!
//! load -> discover -> stage 1 (core + libraries, `framework_jobs` wide)
//!      -> stage 2 (each sketch: compile, link, objcopy, size; `sketch_jobs` wide)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::diagnostics;
use crate::error::{Error, Result};
use crate::exec::{display_command, Runner};
use crate::hash::{hex, Hash, Hasher};
use crate::discover::preprocess::Preprocessor;
use crate::discover::{DiscoveryError, Discoverer, SketchDiscovery};
use crate::library::{IncludeCache, LibraryIndex, LibrarySources};
use crate::link_failure::{self, LinkFailure};
use crate::launcher::{self, LocalSlots};
use crate::objcache::{combine_key, normalize_args, ObjectCache};
use crate::plan::{self, CompileJob, Context, Sizes};
use crate::platform::{self, Board};
use crate::report::{self, LibraryUse, LinkSource, Phase, Progress, Report, SketchResult, Status, UnitResult};
use crate::sketch::Sketch;
use crate::store::Store;
use crate::toolchain::{self, Compiler, Toolchain};

/// The define avr-gcc < 6 needs in C++ for the core's WString.cpp (see docs/design.md).
pub const DECIMAL_DIG_FIX: &str = "-DDECIMAL_DIG=__DECIMAL_DIG__";

#[derive(Debug, Clone)]
pub struct Request {
    pub board: String,
    pub sketches: Vec<PathBuf>,
    pub hardware: Vec<PathBuf>,
    pub library: Vec<PathBuf>,
    pub libraries: Vec<PathBuf>,
    pub build_properties: Vec<(String, String)>,
    pub out: PathBuf,
    pub framework_jobs: usize,
    pub sketch_jobs: usize,
    pub verbose: bool,
    pub quiet: bool,
    /// `None`: build without a cache (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
    /// Honour `// @filter` comments: skip sketches that are not for this board.
    pub filter: bool,
    /// `--memory-class`: the board's memory class for filters, instead of the one
    /// derived from its RAM.
    pub memory_class: Option<crate::filter::MemoryClass>,
    /// Write compile_commands.json and stop before compiling anything.
    pub only_compiledb: bool,
    /// `--remote-cache`: the shared tier behind the local cache.
    pub remote_cache: Option<String>,
    pub remote_cache_readonly: bool,
    /// `--compiler-launcher`, split into words; empty for none.
    pub compiler_launcher: Vec<String>,
    /// How much work may run on this machine at once (discovery, links): the cores.
    pub local_jobs: usize,
}

/// A stage-1 unit: the core (archived) or one library (objects, or an archive
/// when its library.properties asks for `dot_a_linkage`).
struct Unit {
    name: String,
    kind: &'static str,
    dir: PathBuf,
    jobs: Vec<CompileJob>,
    archive: Option<PathBuf>,
    /// Objects that go on the link line one by one (library objects, variant objects).
    link_objects: Vec<PathBuf>,
    state: Mutex<UnitState>,
}

#[derive(Default)]
struct UnitState {
    keys: Vec<Option<Hash>>,
    bases: Vec<Option<Hash>>,
    key: Option<Hash>,
    failed: bool,
    log: String,
    compiled: usize,
    cached: usize,
    up_to_date: bool,
}

struct SketchWork {
    sketch: Sketch,
    dir: PathBuf,
    jobs: Vec<CompileJob>,
    /// Unit indexes (libraries, in discovery order).
    units: Vec<usize>,
    libraries: Vec<LibraryUse>,
    /// Discovery stopped on a header no library provides.
    discovery_error: Option<DiscoveryError>,
    discover_seconds: f64,
    discover_runs: usize,
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Each sketch's output folder: readable name plus a hash of its absolute path, so
/// two sketches with the same name in different places never collide.
pub fn sketch_out_dir(out: &Path, sketch: &Sketch) -> PathBuf {
    let h = Hasher::new("sketch-dir-v1").path(&sketch.dir).finish();
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
        unsafe {
            libc::flock(f.as_raw_fd(), libc::LOCK_EX);
        }
        Ok(FolderLock { _file: f })
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

fn tool_exists(program: &str) -> bool {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file();
    }
    std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file())).unwrap_or(false)
}

pub struct Loaded {
    pub board: Board,
    pub props: crate::properties::Properties,
    pub store: Option<Store>,
    pub toolchain: Toolchain,
    /// The platform's C++ compiler (it decides quirks, include folders, macros).
    pub cpp_compiler: Compiler,
    pub notes: Vec<String>,
}

/// What a board matrix (matrix.rs) loads once for all its boards: the installed
/// platforms, the sketches, and each sketch's merged `.ino` (the same for every board).
#[derive(Default)]
pub struct Shared {
    pub platforms: Option<Vec<platform::Platform>>,
    pub sketches: Option<Vec<Sketch>>,
    /// Keep merged `.ino`s for the next board (a single board never needs them again).
    pub remember_merged: bool,
    merged: Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<Vec<u8>>>>,
}

impl Shared {
    /// For several boards: these platforms and sketches, merged `.ino`s kept.
    pub fn for_boards(platforms: Vec<platform::Platform>, sketches: Vec<Sketch>) -> Shared {
        Shared { platforms: Some(platforms), sketches: Some(sketches), remember_merged: true, ..Default::default() }
    }

    fn merged_cpp(&self, sketch: &Sketch) -> Result<std::sync::Arc<Vec<u8>>> {
        if let Some(m) = self.merged.lock().unwrap().get(&sketch.dir) {
            return Ok(m.clone());
        }
        let m = std::sync::Arc::new(sketch.merged_cpp()?);
        if self.remember_merged {
            self.merged.lock().unwrap().insert(sketch.dir.clone(), m.clone());
        }
        Ok(m)
    }
}

/// Resolve the board, apply `--build-property`, check the toolchain, open the cache.
pub fn load(req: &Request) -> Result<Loaded> {
    load_with(req, None)
}

/// `load`, with the platforms already discovered when given.
pub fn load_with(req: &Request, platforms: Option<&[platform::Platform]>) -> Result<Loaded> {
    let discovered;
    let platforms = match platforms {
        Some(p) => p,
        None => {
            discovered = platform::discover(&req.hardware)?;
            &discovered[..]
        }
    };
    let board = platform::resolve_board(platforms, &req.board)?;
    let mut notes = Vec::new();
    for (menu, option) in &board.defaulted_menus {
        notes.push(format!("board {}: menu '{menu}' not given, using its first option '{option}'", board.id));
    }
    let mut props = board.properties.clone();
    for (k, v) in &req.build_properties {
        props.set(k.clone(), v.clone());
    }
    plan::check_recipes(&props, &board.platform.path.join("platform.txt"))?;
    let platform_id = format!("{}:{}", board.platform.vendor, board.platform.arch);
    crate::runtime_tools::check_referenced(&props, &platform_id, crate::runtime_tools::packages_dir().as_deref())?;

    let remote = req.remote_cache.as_deref().map(|url| crate::cache::remote::open(url, req.remote_cache_readonly)).transpose().map_err(Error::Usage)?;
    let store = match &req.cache_dir {
        None => None,
        Some(dir) => match Store::open(dir, req.cache_max_bytes) {
            Ok(mut s) => {
                if let Some(r) = remote {
                    s.set_remote(r);
                }
                Some(s)
            }
            Err(e) => {
                crate::errln!("warning: cache folder {} is not usable ({e}); building without the cache", dir.display());
                None
            }
        },
    };
    let toolchain = Toolchain::new();
    let probe_ctx = Context::new(&props, Path::new("/"), "probe", Path::new("/"));
    let cpp = probe_ctx.command("recipe.cpp.o.pattern", &[])?;
    let cpp_compiler = toolchain.probe(Path::new(&cpp[0]), store.as_ref())?;
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
    // Every other tool the recipes name must exist too: say so now, not per sketch.
    let mut tools = Vec::new();
    for recipe in ["recipe.c.o.pattern", "recipe.S.o.pattern", "recipe.ar.pattern", "recipe.c.combine.pattern", "recipe.size.pattern"] {
        if props.contains(recipe) {
            if let Some(t) = probe_ctx.command(recipe, &[])?.into_iter().next() {
                tools.push(t);
            }
        }
    }
    for t in probe_ctx.objcopies()?.into_iter().filter_map(|c| c.into_iter().next()) {
        tools.push(t);
    }
    for t in tools {
        if !tool_exists(&t) {
            return Err(toolchain::not_installed(Path::new(&t)));
        }
    }
    Ok(Loaded { board, props, store, toolchain, cpp_compiler, notes })
}

/// Run the whole pipeline. `Err` only for unusable input, environment failures and
/// interruption; sketch failures are in the report.
pub fn run(req: &Request) -> Result<Report> {
    run_shared(req, &Shared::default())
}

/// `run`, reusing what `shared` already holds instead of loading it again.
pub fn run_shared(req: &Request, shared: &Shared) -> Result<Report> {
    let t_start = Instant::now();
    let mut phases: Vec<Phase> = Vec::new();
    let loaded = load_with(req, shared.platforms.as_deref())?;
    let Loaded { board, props, store, toolchain, cpp_compiler, notes } = loaded;
    if req.verbose {
        for n in &notes {
            crate::errln!("note: {n}");
        }
    }
    let sketches = match &shared.sketches {
        Some(s) => s.clone(),
        None => req.sketches.iter().map(|p| Sketch::load(p)).collect::<Result<Vec<Sketch>>>()?,
    };
    if sketches.is_empty() {
        return Err(Error::usage("no sketches given; pass sketch folders, .ino files or folders that hold sketches"));
    }
    ensure_dir(&req.out)?;
    phases.push(Phase { name: "load", seconds: t_start.elapsed().as_secs_f64(), count: sketches.len() });

    let runner = Runner::new(req.verbose);
    let cache = ObjectCache::new(store.as_ref());
    let progress = Progress::new(sketches.len(), req.quiet);

    // ---- discover ----
    let t_discover = Instant::now();
    progress.stage("discovering libraries");
    let props_hash = {
        let mut h = Hasher::new("framework-props-v1");
        for (k, v) in props.iter() {
            h.str(k).str(v);
        }
        h.finish()
    };
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
        macros.add_definitions(&toolchain.predefined_macros(&cpp_compiler, &machine, store.as_ref()));
        IncludeCache::with_macros(macros)
    };
    let preprocess_ctx = Context::new(&props, &fw_dir, "discover", &fw_dir);
    let discoverer = Discoverer {
        index: &index,
        arch: board.platform.arch.clone(),
        ctx: &preprocess_ctx,
        framework_dirs: framework_dirs.clone(),
        preprocessor: Preprocessor::new(store.as_ref(), &cache, cpp_compiler.clone()),
    };

    // ---- skip ---- sketches whose @filter leaves this board out, before discovery
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
            let r = crate::filter::skipped_result(s, &sketch_out_dir(&req.out, s), reason.clone());
            progress.started();
            progress.finished(&r);
            (*i, r)
        })
        .collect();
    let (sketches, kept_at) = (selection.kept, selection.kept_at);
    if sketches.is_empty() {
        // Every sketch filtered itself out: nothing to discover, compile or link.
        progress.finish();
        let results = crate::filter::in_argument_order(Vec::new(), &kept_at, skipped);
        let seconds = t_start.elapsed().as_secs_f64();
        phases.push(Phase { name: "total", seconds, count: results.len() });
        let totals = report::Totals { sketches: results.len(), skipped: results.len(), seconds, tool_processes: runner.spawned(), ..Default::default() };
        let cache = report::CacheSummary { enabled: store.is_some(), dir: store.as_ref().map(|s| s.root().to_path_buf()), hits: 0, misses: 0, remote: None };
        return Ok(Report {
            board: board.id.clone(),
            fqbn: board.fqbn.clone(),
            stage1_key: None,
            framework_dir: fw_dir,
            archives: Vec::new(),
            units: Vec::new(),
            sketches: results,
            totals,
            cache,
            size_report: None,
            boards: Vec::new(),
            phases,
        });
    }

    let discovered: Vec<Result<(PathBuf, PathBuf, SketchDiscovery)>> = parallel_map(&sketches, req.sketch_jobs.min(req.local_jobs), |sketch| {
        let dir = sketch_out_dir(&req.out, sketch);
        let sketch_build = dir.join("sketch");
        ensure_dir(&sketch_build)?;
        let merged_path = sketch_build.join(format!("{}.ino.cpp", sketch.name));
        if write_if_changed(&merged_path, &shared.merged_cpp(sketch)?)? {
            cache.invalidate(&merged_path);
        }
        for rel in &sketch.extra_files {
            let src = sketch.dir.join(rel);
            let dst = sketch_build.join(rel);
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            if let Some(parent) = dst.parent() {
                ensure_dir(parent)?;
            }
            if write_if_changed(&dst, &bytes)? {
                cache.invalidate(&dst);
            }
        }
        // The reference's queue: the merged sketch, then its other sources.
        let mut sources = vec![merged_path.clone()];
        sources.extend(sketch_sources(sketch, &sketch_build));
        let d = discoverer.sketch(&runner, &sources)?;
        if req.verbose {
            for &l in &d.libraries {
                let lib = &index.libraries[l];
                // Worded as the reference builder words it (it names a library by its folder).
                eprintln!("{}: Using library {} at version {} in folder: {}", sketch.name, lib.dir_name, lib.version, lib.path.display());
            }
        }
        Ok((dir, merged_path, d))
    });
    if runner.interrupted() {
        return Err(Error::Interrupted);
    }
    let mut works: Vec<(PathBuf, PathBuf, SketchDiscovery)> = Vec::new();
    for d in discovered {
        works.push(d?);
    }
    // One stage-1 unit per library and include path (see `Discoverer::unit_include_dirs`),
    // in first-use order.
    let mut lib_units: Vec<(usize, Vec<PathBuf>)> = Vec::new();
    for (_, _, d) in &works {
        for &l in &d.libraries {
            let unit = (l, d.library_includes[&l].clone());
            if !lib_units.contains(&unit) {
                lib_units.push(unit);
            }
        }
    }
    phases.push(Phase { name: "discover", seconds: t_discover.elapsed().as_secs_f64(), count: discoverer.preprocessor.runs.load(std::sync::atomic::Ordering::Relaxed) });

    // ---- plan ----
    let fw_ctx = Context::new(&props, &fw_dir, "core", &fw_dir);
    let mut units: Vec<Unit> = Vec::new();
    {
        let core_dir = fw_dir.join("core");
        let mut core_sources = plan::core_sources(&core_path);
        if props.get_or_empty(crate::project::CORE_ORDER_PROPERTY) == crate::project::CORE_ORDER_BY_NAME {
            // PlatformIO archives the core by file name, and member order decides function placement.
            core_sources.sort();
        }
        let core_includes = framework_dirs.clone();
        let mut jobs = Vec::new();
        for s in &core_sources {
            let rel = s.strip_prefix(&core_path).unwrap_or(s);
            jobs.push(fw_ctx.compile(s, &object_path(&core_dir, rel), &core_includes)?);
        }
        let mut link_objects = Vec::new();
        if let Some(vp) = &variant_path {
            let vs = plan::core_sources(vp);
            for s in &vs {
                let rel = s.strip_prefix(vp).unwrap_or(s);
                let obj = object_path(&core_dir.join("variant"), rel);
                link_objects.push(obj.clone());
                jobs.push(fw_ctx.compile(s, &obj, &core_includes)?);
            }
        }
        units.push(Unit {
            name: "core".into(),
            kind: "core",
            archive: Some(core_dir.join("core.a")),
            dir: core_dir,
            jobs,
            link_objects,
            state: Mutex::default(),
        });
    }
    let mut lib_unit_index: BTreeMap<(usize, Vec<PathBuf>), usize> = BTreeMap::new();
    for (l, inc) in &lib_units {
        let lib = &index.libraries[*l];
        let mut h = Hasher::new("library-unit-dir-v1");
        for d in inc {
            h.path(d);
        }
        let dir = fw_dir.join("libraries").join(format!("{}-{}", slug(&lib.dir_name), &hex(&h.finish())[..8]));
        let mut sources = lib.sources();
        plan::reference_order(&mut sources);
        let mut jobs = Vec::new();
        for s in &sources {
            let rel = s.strip_prefix(&lib.src_dir).unwrap_or(s);
            jobs.push(fw_ctx.compile(s, &object_path(&dir, rel), inc)?);
        }
        let objects: Vec<PathBuf> = jobs.iter().map(|j| j.object.clone()).collect();
        let (archive, link_objects) = if lib.dot_a_linkage {
            (Some(dir.join(format!("{}.a", slug(&lib.dir_name)))), Vec::new())
        } else {
            (None, objects)
        };
        lib_unit_index.insert((*l, inc.clone()), units.len());
        units.push(Unit { name: lib.name.clone(), kind: "library", dir, jobs, archive, link_objects, state: Mutex::default() });
    }

    let mut work: Vec<SketchWork> = Vec::new();
    for (sketch, (dir, merged, disc)) in sketches.into_iter().zip(works) {
        let ctx = Context::new(&props, &dir, &format!("{}.ino", sketch.name), &sketch.dir);
        let build = dir.join("sketch");
        let mut sources: Vec<PathBuf> = vec![merged.clone()];
        sources.extend(sketch.sources().map(|rel| build.join(rel)));
        plan::sketch_order(&mut sources, &build);
        let mut jobs = Vec::new();
        if disc.error.is_none() {
            for s in &sources {
                let rel = s.strip_prefix(&build).unwrap_or(s);
                jobs.push(ctx.compile(s, &object_path(&build, rel), &disc.include_dirs)?);
            }
        }
        work.push(SketchWork {
            libraries: disc
                .libraries
                .iter()
                .map(|&l| {
                    let lib = &index.libraries[l];
                    LibraryUse { name: lib.name.clone(), version: lib.version.clone(), folder: lib.path.clone() }
                })
                .collect(),
            units: disc.libraries.iter().map(|&l| lib_unit_index[&(l, disc.library_includes[&l].clone())]).collect(),
            discovery_error: disc.error,
            sketch,
            dir,
            jobs,
            discover_seconds: disc.seconds,
            discover_runs: disc.runs,
        });
    }

    // Editors' view of the plan (compile_commands.json), written before anything compiles.
    crate::compiledb::CompileDb::write_plan(&req.out, units.iter().flat_map(|u| &u.jobs), work.iter().map(|w| (&w.sketch, w.dir.join("sketch"), &w.jobs[..])))?;
    if req.only_compiledb {
        progress.finish();
        return Ok(Report::planned_only(&board.id, &board.fqbn, &fw_dir, phases));
    }

    // ---- stage 1 ----
    let t1 = Instant::now();
    progress.stage("stage 1: core and libraries");
    {
        let _lock = FolderLock::acquire(&fw_dir)?;
        let cenv = CompileEnv { cache: &cache, runner: &runner, includes: &includes, system_dirs: &system_dirs, launcher: &req.compiler_launcher };
        run_stage1(&units, &fw_ctx, &cenv, &toolchain, store.as_ref(), req.framework_jobs)?;
    }
    let stage1_key = {
        let mut h = Hasher::new("stage1-v1");
        for u in &units {
            match u.state.lock().unwrap().key {
                Some(k) => h.bytes(&k),
                None => h.str("failed"),
            };
        }
        hex(&h.finish())
    };
    phases.push(Phase { name: "stage1_archives", seconds: t1.elapsed().as_secs_f64(), count: units.len() });
    if runner.interrupted() {
        return Err(Error::Interrupted);
    }

    // ---- stage 2 ----
    let t2 = Instant::now();
    progress.stage("stage 2: sketches");
    // With a launcher, more sketches may be in flight than there are cores; their
    // links still run here, so they take turns for the cores.
    let local_slots = LocalSlots::new(if req.compiler_launcher.is_empty() { req.sketch_jobs } else { req.local_jobs });
    let env = SketchEnv {
        props: &props,
        units: &units,
        cache: &cache,
        toolchain: &toolchain,
        store: store.as_ref(),
        runner: &runner,
        index: &index,
        includes: &includes,
        system_dirs: &system_dirs,
        core_unit: 0,
        fw_dir: &fw_dir,
        launcher: &req.compiler_launcher,
        local: &local_slots,
    };
    let results: Vec<SketchResult> = parallel_map(&work, req.sketch_jobs, |w| {
        progress.started();
        let r = build_sketch(&env, w);
        // After Ctrl-C the remaining sketches are cancelled, not failed: no line each.
        if !runner.interrupted() {
            progress.finished(&r);
        }
        r
    });
    progress.finish();
    let stage2_secs = t2.elapsed().as_secs_f64();
    phases.push(Phase { name: "stage2_sketches", seconds: stage2_secs, count: results.len() });
    if runner.interrupted() {
        return Err(Error::Interrupted);
    }
    let results = crate::filter::in_argument_order(results, &kept_at, skipped);

    let unit_results: Vec<UnitResult> = units
        .iter()
        .map(|u| {
            let st = u.state.lock().unwrap();
            UnitResult {
                name: u.name.clone(),
                kind: u.kind.to_string(),
                status: if st.failed { Status::Failed } else { Status::Ok },
                key: st.key.map(|k| hex(&k)),
                archive: u.archive.clone(),
                objects: u.link_objects.clone(),
                log: u.dir.join("build.log"),
                first_error: if st.failed { diagnostics::first_error_line(&st.log) } else { None },
                objects_compiled: st.compiled,
                objects_cached: st.cached,
                up_to_date: st.up_to_date,
            }
        })
        .collect();
    let mut totals = report::Totals {
        sketches: results.len(),
        ok: results.iter().filter(|r| r.status == Status::Ok).count(),
        failed: results.iter().filter(|r| r.status == Status::Failed).count(),
        skipped: results.iter().filter(|r| r.status == Status::Skipped).count(),
        seconds: 0.0,
        objects_compiled: results.iter().map(|r| r.objects_compiled).sum::<usize>()
            + unit_results.iter().map(|u| u.objects_compiled).sum::<usize>(),
        objects_cached: results.iter().map(|r| r.objects_cached).sum::<usize>()
            + unit_results.iter().map(|u| u.objects_cached).sum::<usize>(),
        links_run: results.iter().filter(|r| r.link == LinkSource::Linked).count(),
        tool_processes: runner.spawned() + toolchain.processes_started(),
    };
    let remote_stats = store.as_ref().and_then(Store::remote_stats);
    if let Some(r) = &remote_stats {
        phases.push(Phase { name: "remote_cache", seconds: r.seconds, count: r.requests() as usize });
    }
    let cache_summary = match &store {
        Some(s) => {
            let st = s.run_stats();
            let _ = s.flush_stats();
            // Eviction scans the whole store: only worth it when this run added to it.
            if st.stores() > 0 {
                let _ = s.evict();
            }
            report::CacheSummary { enabled: true, dir: Some(s.root().to_path_buf()), hits: st.hits(), misses: st.misses(), remote: remote_stats }
        }
        None => report::CacheSummary::default(),
    };
    totals.seconds = t_start.elapsed().as_secs_f64();
    phases.push(Phase { name: "total", seconds: totals.seconds, count: results.len() });
    Ok(Report {
        board: board.id.clone(),
        fqbn: board.fqbn.clone(),
        stage1_key: Some(stage1_key),
        framework_dir: fw_dir.clone(),
        archives: units.iter().filter_map(|u| u.archive.clone()).collect(),
        units: unit_results,
        sketches: results,
        totals,
        cache: cache_summary,
        size_report: None,
        boards: Vec::new(),
        phases,
    })
}

/// A sketch's translation units besides the merged `.ino.cpp`, in the build folder, in
/// the order the reference queues them for discovery: the sketch folder's own, then
/// `src/`, each by name.
fn sketch_sources(sketch: &Sketch, build: &Path) -> Vec<PathBuf> {
    let mut rel: Vec<&PathBuf> = sketch.sources().collect();
    rel.sort_by_key(|p| (p.components().count() > 1, (*p).clone()));
    rel.into_iter().map(|p| build.join(p)).collect()
}

fn object_path(dir: &Path, rel: &Path) -> PathBuf {
    let mut name = rel.as_os_str().to_owned();
    name.push(".o");
    dir.join(name)
}

/// Run `f` over `items` with `jobs` threads; results keep the input order.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                *slots[i].lock().unwrap() = Some(r);
            });
        }
    });
    slots.into_iter().map(|m| m.into_inner().unwrap().expect("every item is processed")).collect()
}

fn compiler_for(toolchain: &Toolchain, store: Option<&Store>, job: &CompileJob) -> Result<Compiler> {
    let program = job.args.first().ok_or_else(|| Error::usage("empty compile recipe"))?;
    toolchain.probe(Path::new(program), store)
}

/// What happened to one compile job.
enum Compiled {
    Hit(Option<Hash>),
    Built(Option<Hash>),
    Failed(String),
}

/// What a compile needs besides the job: the cache, the tool runner, and what the
/// failure key scans (includes, the compiler's own folders).
struct CompileEnv<'a> {
    cache: &'a ObjectCache<'a>,
    runner: &'a Runner,
    includes: &'a IncludeCache,
    system_dirs: &'a [PathBuf],
    /// `--compiler-launcher` words, put before the compile command when it runs.
    launcher: &'a [String],
}

/// Get-or-compile one object: "compute the key, look up, else run and store".
/// A compile that failed before with the same inputs fails again without running.
fn compile_one(env: &CompileEnv, job: &CompileJob, full: Option<Hash>, base: Option<Hash>, log: &mut String) -> Compiled {
    if let Some(k) = full {
        if env.cache.fetch(&k, &job.object) {
            return Compiled::Hit(Some(k));
        }
    }
    let failure_key = base.filter(|_| env.cache.store.is_some()).map(|b| env.cache.failure_key(&b, job, env.includes, env.system_dirs));
    if let Some(text) = failure_key.and_then(|k| env.cache.cached_failure(&k)) {
        log.push_str(&display_command(&job.args));
        log.push_str("\n(same inputs failed before; output from the cache)\n");
        log.push_str(&text);
        let _ = std::fs::remove_file(&job.object);
        return Compiled::Failed(text);
    }
    // Keys so far came from the local store; only now, with no failure remembered,
    // is the remote tier worth a round trip for the manifest.
    if full.is_none() {
        if let Some(k) = base.and_then(|b| env.cache.full_key(&b)) {
            if env.cache.fetch(&k, &job.object) {
                return Compiled::Hit(Some(k));
            }
        }
    }
    if let Some(parent) = job.object.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let out = run_into_log(env.runner, &launcher::wrap(env.launcher, &job.args, &crate::objcache::depfile_of(&job.object)), log);
    if !out.success {
        // Never leave a half-written or stale object behind a failed compile.
        let _ = std::fs::remove_file(&job.object);
        // Only an ordinary compile error (a diagnostic at a file and line) is worth
        // remembering: not a crash, an unwritable output or an interruption, which
        // may not happen again. An output folder that vanished mid-compile makes GCC
        // report "opening dependency file ...: No such file or directory" at a file
        // and line, so the source and the object's folder must still be there.
        let ordinary = out.signal.is_none()
            && !env.runner.interrupted()
            && job.source.is_file()
            && job.object.parent().is_some_and(Path::is_dir)
            && diagnostics::parse(&out.text).iter().any(|d| d.severity == "error");
        if let (true, Some(k)) = (ordinary, failure_key) {
            env.cache.record_failure(&k, &out.text);
        }
        return Compiled::Failed(out.text);
    }
    Compiled::Built(base.and_then(|b| env.cache.record(&b, job)))
}

fn stamp_matches(stamp: &Path, key: &Hash, outputs: &[&Path]) -> bool {
    std::fs::read_to_string(stamp).map(|s| s.lines().next() == Some(hex(key).as_str())).unwrap_or(false)
        && outputs.iter().all(|p| p.is_file())
}

fn run_stage1(units: &[Unit], fw_ctx: &Context, cenv: &CompileEnv, toolchain: &Toolchain, store: Option<&Store>, jobs: usize) -> Result<()> {
    let (cache, runner) = (cenv.cache, cenv.runner);
    // Keys first (hashing only): a unit whose key matches its stamp needs nothing.
    let mut pending: Vec<(usize, usize)> = Vec::new();
    for (ui, u) in units.iter().enumerate() {
        let mut st = u.state.lock().unwrap();
        for j in &u.jobs {
            let compiler = compiler_for(toolchain, store, j)?;
            let base = cache.base_key(&compiler, j);
            st.bases.push(base);
            st.keys.push(base.and_then(|b| cache.local_full_key(&b)));
        }
        if let Some(k) = unit_key(fw_ctx, u, &st.keys)? {
            let mut outputs: Vec<&Path> = u.link_objects.iter().map(PathBuf::as_path).collect();
            if let Some(a) = &u.archive {
                outputs.push(a);
            }
            if stamp_matches(&u.dir.join(".fbuild-unit"), &k, &outputs) {
                st.key = Some(k);
                st.up_to_date = true;
                continue;
            }
        }
        let _ = std::fs::remove_file(u.dir.join(".fbuild-unit"));
        pending.extend((0..u.jobs.len()).map(|ji| (ui, ji)));
    }
    let results = parallel_map(&pending, jobs, |&(ui, ji)| {
        let u = &units[ui];
        let job = &u.jobs[ji];
        let (full, base) = {
            let st = u.state.lock().unwrap();
            (st.keys[ji], st.bases[ji])
        };
        let mut log = String::new();
        let r = compile_one(cenv, job, full, base, &mut log);
        (ui, ji, r, log)
    });
    for (ui, ji, r, log) in results {
        let mut st = units[ui].state.lock().unwrap();
        st.log.push_str(&log);
        match r {
            Compiled::Hit(k) => {
                st.cached += 1;
                st.keys[ji] = k;
            }
            Compiled::Built(k) => {
                st.compiled += 1;
                st.keys[ji] = k;
            }
            Compiled::Failed(_) => st.failed = true,
        }
    }
    if runner.interrupted() {
        return Ok(());
    }
    // Archive (core.a, dot_a_linkage libraries) and stamp each rebuilt unit.
    for u in units {
        let mut st = u.state.lock().unwrap();
        if st.up_to_date || st.failed {
            write_log(&u.dir, &st.log);
            continue;
        }
        let key = unit_key(fw_ctx, u, &st.keys)?;
        if let Some(archive) = &u.archive {
            let fetched = key.is_some_and(|k| store.is_some_and(|s| s.get_files("archive", &k, &[("a", archive)])));
            if !fetched {
                // `ar rcs` appends: start from nothing so no stale member survives.
                let _ = std::fs::remove_file(archive);
                for j in &u.jobs {
                    if u.link_objects.contains(&j.object) {
                        continue; // variant objects are linked, not archived
                    }
                    let cmd = fw_ctx.archive(archive, &j.object)?;
                    if !run_into_log(runner, &cmd, &mut st.log).success {
                        st.failed = true;
                        let _ = std::fs::remove_file(archive);
                        break;
                    }
                }
                if let (false, Some(k), Some(s)) = (st.failed, key, store) {
                    let _ = s.put_files("archive", &k, &[("a", archive)]);
                }
            }
        }
        if !st.failed {
            st.key = key;
            if let Some(k) = key {
                let _ = report::write_atomic(&u.dir.join(".fbuild-unit"), format!("{}\n", hex(&k)).as_bytes());
            }
        }
        write_log(&u.dir, &st.log);
    }
    Ok(())
}

fn write_log(dir: &Path, log: &str) {
    if !log.is_empty() {
        let _ = report::write_atomic(&dir.join("build.log"), log.as_bytes());
    }
}

/// A unit's key: its objects' keys plus its archive commands (paths relative).
fn unit_key(fw_ctx: &Context, u: &Unit, keys: &[Option<Hash>]) -> Result<Option<Hash>> {
    let Some(keys) = keys.iter().copied().collect::<Option<Vec<Hash>>>() else { return Ok(None) };
    let mut commands = Vec::new();
    if let Some(archive) = &u.archive {
        for j in &u.jobs {
            let cmd = fw_ctx.archive(archive, &j.object)?;
            commands.push(normalize_args(&cmd, &[(&u.dir, "\u{0}UNIT")]));
        }
    }
    Ok(Some(combine_key("unit-v1", &keys, &commands)))
}

struct SketchEnv<'a> {
    props: &'a crate::properties::Properties,
    units: &'a [Unit],
    cache: &'a ObjectCache<'a>,
    toolchain: &'a Toolchain,
    store: Option<&'a Store>,
    runner: &'a Runner,
    index: &'a LibraryIndex,
    includes: &'a IncludeCache,
    system_dirs: &'a [PathBuf],
    core_unit: usize,
    fw_dir: &'a Path,
    launcher: &'a [String],
    /// Links, objcopy and size run on this machine: at most this many at once.
    local: &'a LocalSlots,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LinkRecord {
    files: Vec<String>,
    sizes: Sizes,
}

fn build_sketch(env: &SketchEnv, w: &SketchWork) -> SketchResult {
    let t = Instant::now();
    let project = format!("{}.ino", w.sketch.name);
    let mut r = SketchResult {
        name: w.sketch.name.clone(),
        board: None,
        fqbn: None,
        path: w.sketch.dir.clone(),
        status: Status::Failed,
        skip_reason: None,
        output_dir: w.dir.clone(),
        firmware: BTreeMap::new(),
        flash_used: None,
        flash_max: env.props.get("upload.maximum_size").and_then(|v| v.parse().ok()),
        ram_used: None,
        ram_max: env.props.get("upload.maximum_data_size").and_then(|v| v.parse().ok()),
        seconds: 0.0,
        stage2_seconds: 0.0,
        log: w.dir.join("build.log"),
        first_error: None,
        diagnostics: Vec::new(),
        libraries: w.libraries.clone(),
        discover_seconds: w.discover_seconds,
        discover_runs: w.discover_runs,
        objects_compiled: 0,
        objects_cached: 0,
        link: LinkSource::None,
        size_delta: None,
        run: None,
    };
    let mut log = String::new();
    let lock = FolderLock::acquire(&w.dir);
    let outcome = match &lock {
        Ok(_) => build_sketch_inner(env, w, &project, &mut r, &mut log),
        Err(e) => Err(e.to_string()),
    };
    if let Err(msg) = outcome {
        r.status = Status::Failed;
        r.diagnostics = diagnostics::parse(&log);
        let first = diagnostics::first_error_line(&msg).or_else(|| diagnostics::first_error_line(&log));
        r.first_error = Some(first.unwrap_or(msg.clone()));
        if let Some(e) = &w.discovery_error {
            let hint = format!(
                "no installed library provides {}; searched {}",
                e.missing,
                env.index.searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
            log.push_str(&format!("fbuild: {hint}\n"));
            if let Some(f) = &mut r.first_error {
                f.push_str(&format!(" ({hint})"));
            }
        }
        // Never leave an earlier run's firmware looking like this run's output.
        r.firmware.clear();
        let _ = std::fs::remove_file(w.dir.join(".fbuild-link"));
        for p in firmware_files(&w.dir, &project) {
            let _ = std::fs::remove_file(p);
        }
    } else {
        r.status = Status::Ok;
        r.diagnostics = diagnostics::parse(&log).into_iter().filter(|d| d.severity == "warning").collect();
    }
    if !log.is_empty() {
        let _ = report::write_atomic(&r.log, log.as_bytes());
    }
    r.stage2_seconds = t.elapsed().as_secs_f64();
    r.seconds = r.stage2_seconds + w.discover_seconds;
    r
}

/// Run a tool, appending its command line and output to a build log.
fn run_into_log(runner: &Runner, cmd: &[String], log: &mut String) -> crate::exec::Output {
    let out = runner.run(cmd, None);
    log.push_str(&display_command(cmd));
    log.push('\n');
    log.push_str(&out.text);
    out
}

fn run_logged(runner: &Runner, cmd: &[String], log: &mut String) -> std::result::Result<String, String> {
    let out = run_into_log(runner, cmd, log);
    if out.success {
        Ok(out.stdout)
    } else {
        Err(out.text)
    }
}

fn build_sketch_inner(env: &SketchEnv, w: &SketchWork, project: &str, r: &mut SketchResult, log: &mut String) -> std::result::Result<(), String> {
    if let Some(e) = &w.discovery_error {
        // The reference stops here too: the preprocessor's words name the file and
        // line that wants the header.
        log.push_str(&display_command(&e.command));
        log.push('\n');
        log.push_str(&e.message);
        return Err(e.message.clone());
    }
    let ctx = Context::new(env.props, &w.dir, project, &w.sketch.dir);
    let core = &env.units[env.core_unit];
    // A unit this sketch needs failed in stage 1: name it and its log.
    for &ui in std::iter::once(&env.core_unit).chain(w.units.iter()) {
        let u = &env.units[ui];
        let st = u.state.lock().unwrap();
        if st.failed {
            let first = diagnostics::first_error_line(&st.log).unwrap_or_default();
            let what = if u.kind == "core" { "the core".to_string() } else { format!("library {}", u.name) };
            return Err(format!("{what} failed to compile: {first} (log: {})", u.dir.join("build.log").display()));
        }
    }
    let hooks = |stage: &str, log: &mut String| -> std::result::Result<(), String> {
        for cmd in ctx.hooks(stage).map_err(|e| e.to_string())? {
            run_logged(env.runner, &cmd, log)?;
        }
        Ok(())
    };
    hooks("prebuild", log)?;
    hooks("sketch.prebuild", log)?;

    // Keys first: when they and the link stamp match, the firmware is already here.
    let mut keys: Vec<Option<Hash>> = Vec::new();
    let mut bases: Vec<Option<Hash>> = Vec::new();
    for j in &w.jobs {
        let c = compiler_for(env.toolchain, env.store, j).map_err(|e| e.to_string())?;
        let b = env.cache.base_key(&c, j);
        bases.push(b);
        keys.push(b.and_then(|b| env.cache.local_full_key(&b)));
    }
    let mut link_objects: Vec<PathBuf> = w.jobs.iter().map(|j| j.object.clone()).collect();
    let mut unit_keys: Vec<Hash> = Vec::new();
    for &ui in w.units.iter().chain(std::iter::once(&env.core_unit)) {
        let u = &env.units[ui];
        if ui != env.core_unit {
            link_objects.extend(u.link_objects.iter().cloned());
            if let Some(a) = &u.archive {
                link_objects.push(a.clone());
            }
        }
        if let Some(k) = u.state.lock().unwrap().key {
            unit_keys.push(k);
        }
    }
    link_objects.extend(core.link_objects.iter().cloned());
    let link_cmd = ctx.link(&link_objects).map_err(|e| e.to_string())?;
    let objcopies = ctx.objcopies().map_err(|e| e.to_string())?;
    let size_cmd = ctx.size().map_err(|e| e.to_string())?;
    let bootloader = bootloader_file(env.props);
    let link_key = |keys: &[Option<Hash>]| -> Option<Hash> {
        let mut inputs: Vec<Hash> = keys.iter().copied().collect::<Option<Vec<Hash>>>()?;
        if unit_keys.len() != w.units.len() + 1 {
            return None;
        }
        inputs.extend(unit_keys.iter().copied());
        if let Some(b) = &bootloader {
            inputs.push(env.cache.file_hash(b)?);
        }
        let mut commands = vec![link_cmd.clone(), size_cmd.clone()];
        commands.extend(objcopies.iter().cloned());
        let commands: Vec<Vec<String>> = commands
            .iter()
            .map(|c| normalize_args(c, &[(&w.dir, "\u{0}SKETCH"), (env.fw_dir, "\u{0}FW"), (&w.sketch.dir, "\u{0}SRC")]))
            .collect();
        Some(combine_key("link-v1", &inputs, &commands))
    };
    let stamp = w.dir.join(".fbuild-link");
    if let Some(k) = link_key(&keys) {
        if let Some(rec) = read_link_stamp(&stamp, &k) {
            let paths: Vec<PathBuf> = rec.files.iter().map(|f| w.dir.join(f)).collect();
            if paths.iter().all(|p| p.is_file()) {
                r.link = LinkSource::UpToDate;
                r.objects_cached = w.jobs.len();
                return finish_sizes(env, r, &rec, &w.dir);
            }
        }
        if let Some(error) = recall_link_failure(env, w, &k, r, log) {
            return Err(error);
        }
    }
    let _ = std::fs::remove_file(&stamp);

    // Compile (or fetch) this sketch's own translation units, the merged sketch first:
    // a missing header is reported where the reference's discovery meets it first (it
    // reads the merged sketch before the sketch's other files). Link order is unchanged.
    let mut failed = None;
    let merged = format!("{project}.cpp");
    let mut order: Vec<usize> = (0..w.jobs.len()).collect();
    order.sort_by_key(|&i| !w.jobs[i].source.ends_with(&merged));
    for i in order {
        let j = &w.jobs[i];
        let cenv = CompileEnv { cache: env.cache, runner: env.runner, includes: env.includes, system_dirs: env.system_dirs, launcher: env.launcher };
        match compile_one(&cenv, j, keys[i], bases[i], log) {
            Compiled::Hit(k) => {
                r.objects_cached += 1;
                keys[i] = k;
            }
            Compiled::Built(k) => {
                r.objects_compiled += 1;
                keys[i] = k;
            }
            Compiled::Failed(text) => {
                failed = Some(text);
                break;
            }
        }
    }
    if let Some(text) = failed {
        return Err(text);
    }
    hooks("sketch.postbuild", log)?;

    let key = link_key(&keys);
    if let (Some(k), Some(store)) = (key, env.store) {
        if let Some(rec) = store.get_record("link-meta", &k).and_then(|b| serde_json::from_slice::<LinkRecord>(&b).ok()) {
            let dests: Vec<PathBuf> = rec.files.iter().map(|f| w.dir.join(f)).collect();
            let pairs: Vec<(&str, &Path)> = rec.files.iter().map(String::as_str).zip(dests.iter().map(PathBuf::as_path)).collect();
            if store.get_files("link", &k, &pairs) {
                r.link = LinkSource::Cached;
                write_link_stamp(&stamp, &k, &rec);
                return finish_sizes(env, r, &rec, &w.dir);
            }
        }
    }

    // Link against the stage-1 units, exactly as the reference builder does.
    let _local = env.local.acquire();
    let sketch_core = w.dir.join("core").join("core.a");
    if let Some(a) = &core.archive {
        place_link(a, &sketch_core).map_err(|e| format!("cannot place {}: {e}", sketch_core.display()))?;
    }
    hooks("linking.prelink", log)?;
    let outputs_before: Vec<PathBuf> = firmware_files(&w.dir, project);
    for p in outputs_before {
        let _ = std::fs::remove_file(p);
    }
    r.link = LinkSource::Linked;
    let link_log_start = log.len();
    let link_out = run_into_log(env.runner, &link_cmd, log);
    let deterministic = link_failure::is_deterministic(&link_out, env.runner.interrupted());
    let linked = (|| -> std::result::Result<String, String> {
        if !link_out.success {
            return Err(link_out.text.clone());
        }
        hooks("linking.postlink", log)?;
        hooks("objcopy.preobjcopy", log)?;
        for c in &objcopies {
            run_logged(env.runner, c, log)?;
        }
        hooks("objcopy.postobjcopy", log)?;
        if let Some(b) = &bootloader {
            merge_bootloader(&w.dir.join(format!("{project}.hex")), b, &w.dir.join(format!("{project}.with_bootloader.hex")))?;
        }
        run_logged(env.runner, &size_cmd, log)
    })();
    let size_out = match linked {
        Ok(s) => s,
        Err(e) => {
            let overflow = ["overflowed by", "will not fit in region", "not within region"].iter().any(|m| e.contains(m));
            let (detail, sizes) = if overflow { overflow_sizes(env, &link_cmd, &size_cmd, r) } else { (None, None) };
            for p in firmware_files(&w.dir, project) {
                let _ = std::fs::remove_file(p);
            }
            if let (true, Some(k), Some(store)) = (deterministic, key, env.store) {
                let failure = LinkFailure { log: log[link_log_start..].to_string(), error: e.clone(), sizes };
                link_failure::remember(store, &k, &failure, &link_paths(env, w));
            }
            return Err(detail.unwrap_or(e));
        }
    };
    let files: Vec<String> = firmware_files(&w.dir, project)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let rec = LinkRecord { files, sizes: plan::parse_sizes(env.props, &size_out) };
    if let Some(k) = key {
        if let Some(store) = env.store {
            let paths: Vec<PathBuf> = rec.files.iter().map(|f| w.dir.join(f)).collect();
            let pairs: Vec<(&str, &Path)> = rec.files.iter().map(String::as_str).zip(paths.iter().map(PathBuf::as_path)).collect();
            if store.put_files("link", &k, &pairs).is_ok() {
                let _ = store.put_record("link-meta", &k, &serde_json::to_vec(&rec).unwrap_or_default());
            }
        }
        write_link_stamp(&stamp, &k, &rec);
    }
    let fits = finish_sizes(env, r, &rec, &w.dir);
    if let (Err(_), Some(k), Some(store)) = (&fits, key, env.store) {
        // Too big for the board: remembered so a warm run needs no store fetch of
        // the firmware to say so again.
        let failure = LinkFailure { log: log[link_log_start..].to_string(), error: String::new(), sizes: Some(rec.sizes.clone()) };
        link_failure::remember(store, &k, &failure, &link_paths(env, w));
    }
    fits
}

fn link_paths<'a>(env: &'a SketchEnv, w: &'a SketchWork) -> link_failure::PathMap<'a> {
    link_failure::PathMap::new(&w.dir, &w.sketch.dir, env.fw_dir)
}

/// A link that failed before with exactly these inputs fails again, without
/// running a tool: the same log, sizes and error. The size check is redone against
/// the board's current limits, so raising them lets a too-big sketch through.
fn recall_link_failure(env: &SketchEnv, w: &SketchWork, key: &Hash, r: &mut SketchResult, log: &mut String) -> Option<String> {
    let store = env.store?;
    // A link this machine remembers succeeding did not fail: no need to ask a remote tier.
    if store.get_local_record("link-meta", key).is_some() {
        return None;
    }
    let failure = link_failure::recall(store, key, &link_paths(env, w))?;
    let too_big = failure.sizes.clone().and_then(|sizes| finish_sizes(env, r, &LinkRecord { files: Vec::new(), sizes }, Path::new("")).err());
    if too_big.is_none() && failure.error.is_empty() {
        // It linked, and now fits: build it the ordinary way.
        r.flash_used = None;
        r.ram_used = None;
        return None;
    }
    r.link = LinkSource::Cached;
    r.objects_cached = w.jobs.len();
    log.push_str("fbuild: this link failed before with the same inputs; its log, from the cache:\n");
    log.push_str(&failure.log);
    Some(too_big.unwrap_or(failure.error))
}

/// The linker refused a sketch that does not fit the chip. Link it once more with
/// `--noinhibit-exec` (an ELF despite the overflow) and measure it with the size
/// recipe, so the error can give used and allowed bytes like a size-check failure.
fn overflow_sizes(env: &SketchEnv, link: &[String], size: &[String], r: &mut SketchResult) -> (Option<String>, Option<Sizes>) {
    let mut relink = link.to_vec();
    relink.insert(1, "-Wl,--noinhibit-exec".to_string());
    let _ = env.runner.run(&relink, None);
    let out = env.runner.run(size, None);
    if !out.success {
        return (None, None);
    }
    let sizes = plan::parse_sizes(env.props, &out.stdout);
    let rec = LinkRecord { files: Vec::new(), sizes: sizes.clone() };
    (finish_sizes(env, r, &rec, Path::new("")).err(), Some(sizes))
}

/// The board's bootloader image (`bootloader.noblink` wins over `bootloader.file`, as
/// in the reference builder), when the platform ships it.
fn bootloader_file(props: &crate::properties::Properties) -> Option<PathBuf> {
    let name = props.get("bootloader.noblink").filter(|v| !v.is_empty()).or_else(|| props.get("bootloader.file"))?;
    let name = props.expand(name);
    let path = PathBuf::from(props.get_or_empty("runtime.platform.path")).join("bootloaders").join(name);
    path.is_file().then_some(path)
}

/// `<project>.with_bootloader.hex`, byte for byte as arduino-builder writes it: both
/// files split into rows at `\n` (CRLF read as LF), the sketch's last two rows (its
/// end-of-file record and the empty row after it) dropped, the bootloader's rows
/// appended, all joined with `\n`. A binary bootloader (SAMD's `.bin`) is appended
/// the same way, as the reference does.
fn merge_bootloader(sketch_hex: &Path, bootloader: &Path, out: &Path) -> std::result::Result<(), String> {
    let rows = |p: &Path| -> std::result::Result<Vec<Vec<u8>>, String> {
        let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut lf = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            lf.push(bytes[i]);
            i += 1;
        }
        Ok(lf.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect())
    };
    let mut merged = rows(sketch_hex)?;
    merged.truncate(merged.len().saturating_sub(2));
    merged.extend(rows(bootloader)?);
    report::write_atomic(out, &merged.join(&b'\n')).map_err(|e| e.to_string())
}

/// `<project>.elf`, `.hex`, `.eep`, `.bin`, ...: what link and objcopy made.
fn firmware_files(dir: &Path, project: &str) -> Vec<PathBuf> {
    let prefix = format!("{project}.");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.file_name().map(|n| n.to_string_lossy().starts_with(&prefix)).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn place_link(src: &Path, dst: &Path) -> std::io::Result<()> {
    if let Some(p) = dst.parent() {
        std::fs::create_dir_all(p)?;
    }
    let tmp = dst.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(src, &tmp).is_err() {
        std::fs::copy(src, &tmp)?;
    }
    std::fs::rename(&tmp, dst)
}

fn read_link_stamp(stamp: &Path, key: &Hash) -> Option<LinkRecord> {
    let text = std::fs::read_to_string(stamp).ok()?;
    let (k, rest) = text.split_once('\n')?;
    (k == hex(key)).then(|| serde_json::from_str(rest).ok())?
}

fn write_link_stamp(stamp: &Path, key: &Hash, rec: &LinkRecord) {
    let body = format!("{}\n{}", hex(key), serde_json::to_string(rec).unwrap_or_default());
    let _ = report::write_atomic(stamp, body.as_bytes());
}

fn finish_sizes(env: &SketchEnv, r: &mut SketchResult, rec: &LinkRecord, dir: &Path) -> std::result::Result<(), String> {
    for f in &rec.files {
        // `Blink.ino.hex` -> `hex`, `Blink.ino.with_bootloader.hex` -> `with_bootloader.hex`.
        let kind = f.strip_prefix(&format!("{}.", r.name)).and_then(|rest| rest.strip_prefix("ino.")).unwrap_or(f).to_string();
        r.firmware.insert(kind, dir.join(f));
    }
    r.flash_used = Some(rec.sizes.flash);
    r.ram_used = Some(rec.sizes.ram);
    if let Some(max) = r.flash_max {
        if rec.sizes.flash > max {
            return Err(format!(
                "sketch too big: it uses {} bytes of program storage, the maximum for {} is {max} bytes",
                rec.sizes.flash,
                env.props.get_or_empty("name")
            ));
        }
    }
    if let Some(max) = r.ram_max {
        if rec.sizes.ram > max {
            return Err(format!(
                "not enough memory: global variables use {} bytes of RAM, the maximum is {max} bytes",
                rec.sizes.ram
            ));
        }
    }
    Ok(())
}
