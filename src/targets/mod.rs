//! The one place command-line arguments become a `Session` (how to build) and plain
//! `Target`s (what to build): sketches x boards, shards, PlatformIO envs (`build
//! PROJECT`, `ci`, projects beside sketches), `run`. Every command then goes through
//! `pipeline::build`, and `Targets::build` joins the reports where there are several.

pub mod matrix;
pub mod shard;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::CommonArgs;
use crate::error::{Error, Result};
use crate::pipeline::{self, Session, SessionOptions, SketchProperties, Target};
use crate::report::Report;

/// Default cache size bound (5 GiB), overridable with FBUILD_CACHE_MAX_SIZE or --cache-max-size.
pub const DEFAULT_CACHE_MAX: u64 = 5 << 30;

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(crate) fn cache_dir(explicit: &Option<PathBuf>) -> PathBuf {
    explicit.clone().unwrap_or_else(crate::cache::store::default_cache_dir)
}

pub(crate) fn cache_max(explicit: Option<u64>) -> Result<u64> {
    if let Some(v) = explicit {
        return Ok(v);
    }
    match std::env::var("FBUILD_CACHE_MAX_SIZE") {
        Ok(s) => crate::cache::store::parse_size(&s).ok_or_else(|| Error::usage(format!("FBUILD_CACHE_MAX_SIZE={s} is not a size; use a value like 5G or 500M"))),
        Err(_) => Ok(DEFAULT_CACHE_MAX),
    }
}

/// The session's options from the common flags; `build`, `run` and `upload` make one
/// firmware (`2.min(cores)` and 1 wide, quiet: they print their own lines).
pub fn session_options(common: &CommonArgs, framework_jobs: usize, sketch_jobs: usize) -> Result<SessionOptions> {
    let base = match common.base_dir.as_ref().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => std::path::absolute(d).map_err(|e| Error::io(d, e))?,
        None => std::env::current_dir().unwrap_or_default(),
    };
    crate::cache::paths::set_base_dir(&base);
    Ok(SessionOptions {
        hardware: common.hardware.clone(),
        cache_dir: (!common.no_cache).then(|| cache_dir(&common.cache_dir)),
        cache_max_bytes: cache_max(common.cache_max_size)?,
        remote_cache: common.remote_cache.clone().filter(|u| !u.trim().is_empty()),
        remote_cache_readonly: common.remote_cache_readonly,
        framework_jobs,
        sketch_jobs,
        local_jobs: cores(),
        verbose: common.verbose,
        quiet: common.quiet,
        compiler_launcher: match common.compiler_launcher.as_deref().filter(|c| !c.trim().is_empty()) {
            Some(c) => crate::exec::launcher::parse(c)?,
            None => Vec::new(),
        },
        no_pch: common.no_pch,
        smoke_run: None,
    })
}

/// The session of a command that builds one firmware (`build`, `run`, `upload`).
pub fn one_firmware_session(common: &CommonArgs) -> Result<Session> {
    Session::open(SessionOptions { quiet: true, ..session_options(common, 2.min(cores()), 1)? })
}

/// The target of `sketches` for the first `--board`, into `--out`.
pub fn target(common: &CommonArgs, sketches: Vec<PathBuf>) -> Result<Target> {
    Ok(Target {
        board: common.board.first().cloned().unwrap_or_default(),
        sketches,
        library: common.library.clone(),
        libraries: common.libraries.clone(),
        build_properties: common.build_property.clone(),
        // Absolute, so recipes and logs name real paths whatever the tools' cwd.
        out: std::path::absolute(&common.out).map_err(|e| Error::io(&common.out, e))?,
        // `build` builds the one sketch it is given; compile-many turns filters on.
        filter: false,
        memory_class: None,
        only_compiledb: common.only_compiledb,
        optimize_for_debug: common.optimize_for_debug,
        sketch_properties: Vec::new(),
    })
}

/// Targets to build and how their reports become the command's one report.
pub struct Targets {
    pub list: Vec<Target>,
    /// Per target: each project env's sketch folder and its result name (`project:env`).
    labels: Vec<Vec<(PathBuf, String)>>,
    /// One report for several targets (a matrix, projects), each in its own folder.
    joined: bool,
    /// Where the joined report's compile_commands.json goes.
    out: PathBuf,
    started: Instant,
}

impl Targets {
    /// One target, its report as it is.
    pub fn one(target: Target) -> Targets {
        Targets { out: target.out.clone(), list: vec![target], labels: vec![Vec::new()], joined: false, started: Instant::now() }
    }

    /// A board matrix: every sketch of `base` for every board, each board into
    /// OUT/<board> (see `targets/matrix.rs`).
    pub fn matrix(base: &Target, boards: &[String]) -> Result<Targets> {
        let started = Instant::now();
        for (i, b) in boards.iter().enumerate() {
            if boards[..i].contains(b) {
                return Err(Error::usage(format!("--board {b} is given twice; name each board once")));
            }
        }
        let list: Vec<Target> = boards.iter().map(|b| Target { board: b.clone(), out: crate::targets::matrix::board_out_dir(&base.out, b), ..base.clone() }).collect();
        Ok(Targets { labels: vec![Vec::new(); list.len()], list, joined: true, out: base.out.clone(), started })
    }

    /// Build them all in one graph; the one report of the command.
    pub fn build(self, session: &Session) -> Result<Report> {
        let mut reports = pipeline::build(session, &self.list)?;
        for (report, labels) in reports.iter_mut().zip(&self.labels) {
            for s in &mut report.sketches {
                if let Some((_, label)) = labels.iter().find(|(dir, _)| s.path == *dir || s.path.parent() == Some(dir.as_path())) {
                    s.name = label.clone();
                }
            }
        }
        if !self.joined {
            return Ok(reports.pop().expect("one report per target"));
        }
        let outs = self.list.iter().map(|t| t.out.clone());
        crate::targets::matrix::join_all(outs.zip(reports).collect(), &self.out, self.started.elapsed().as_secs_f64())
    }
}

/// `compile-many` over PlatformIO projects beside sketches: every env of every project
/// becomes a sketch of a build target, and envs whose board and build settings are
/// equal are one target, so they share one stage 1. The plain sketches get one target
/// per board (the default board when none); all go into one graph, as a board matrix.
pub fn with_projects(session: &Session, base: &Target, boards: &[String], sketches: Vec<PathBuf>, projects: &[PathBuf]) -> Result<Targets> {
    let started = Instant::now();
    let mut list: Vec<Target> = Vec::new();
    let mut labels: Vec<Vec<(PathBuf, String)>> = Vec::new();
    if !sketches.is_empty() {
        let boards = if boards.is_empty() { vec![base.board.clone()] } else { boards.to_vec() };
        for b in boards {
            let name = if b.is_empty() { "default" } else { b.as_str() };
            list.push(Target { board: b.clone(), sketches: sketches.clone(), out: crate::targets::matrix::board_out_dir(&base.out, name), ..base.clone() });
            labels.push(Vec::new());
        }
    }
    let mut used_names: Vec<String> = Vec::new();
    // Per board and shared settings: the folders its core reads headers from.
    let mut core_folders: Vec<(CoreKey, Vec<PathBuf>)> = Vec::new();
    for project in projects {
        let name = project_folder_name(project, &mut used_names);
        let project_out = base.out.join("projects").join(&name);
        for env in crate::project::prepare_in(project, &[], &project_out, &base.out.join("projects"))? {
            for w in &env.warnings {
                crate::errln!("warning: {w}; ignored");
            }
            // Envs of different projects differ in their own folders (`-I src`, ...); as
            // sketch properties those leave the core alone, so the envs share one stage 1,
            // unless a folder shadows a header the core reads.
            let mut props = env.shared_properties.clone();
            props.extend(base.build_properties.iter().cloned());
            let key = (env.fqbn.clone(), props.clone());
            let folders = match core_folders.iter().find(|(k, _)| *k == key) {
                Some((_, f)) => f.clone(),
                None => {
                    let probe = Target { board: env.fqbn.clone(), build_properties: props.clone(), ..base.clone() };
                    let f = pipeline::core_header_folders(session, &probe)?;
                    core_folders.push((key, f.clone()));
                    f
                }
            };
            let search: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
            let own = env.project_includes.join(" ");
            let shareable = pipeline::flags_the_core_ignores(&own, &search).len() == env.project_includes.len();
            let sketch_props = if shareable {
                SketchProperties { all: env.own_properties.clone(), sources: env.src_properties.clone(), out: Some(project_out.join(&env.env)) }
            } else {
                props = env.build_properties.clone();
                props.extend(base.build_properties.iter().cloned());
                SketchProperties { all: Vec::new(), sources: env.src_properties.clone(), out: Some(project_out.join(&env.env)) }
            };
            let mut libraries = env.libraries.clone();
            libraries.extend(base.libraries.iter().cloned());
            let mut library = env.library.clone();
            library.extend(base.library.iter().cloned());
            // Equal board and settings: the same stage 1, so one target.
            let same = list.iter_mut().zip(labels.iter_mut()).find(|(t, l)| {
                !l.is_empty() && t.board == env.fqbn && t.build_properties == props && t.libraries == libraries && t.library == library
            });
            match same {
                Some((t, l)) => {
                    t.sketches.push(env.sketch.clone());
                    t.sketch_properties.push((env.sketch.clone(), sketch_props));
                    l.push((env.sketch.clone(), env.label.clone()));
                }
                None => {
                    list.push(Target {
                        board: env.fqbn.clone(),
                        sketches: vec![env.sketch.clone()],
                        sketch_properties: vec![(env.sketch.clone(), sketch_props)],
                        build_properties: props,
                        libraries,
                        library,
                        out: project_out.join(&env.env),
                        ..base.clone()
                    });
                    labels.push(vec![(env.sketch.clone(), env.label.clone())]);
                }
            }
        }
    }
    if list.is_empty() {
        return Err(Error::usage("no sketches and no project envs to build; pass sketch folders or PlatformIO project folders"));
    }
    Ok(Targets { list, labels, joined: true, out: base.out.clone(), started })
}

/// A board and the build properties its envs share: what decides its core's folders.
type CoreKey = (String, Vec<(String, String)>);

/// A project's folder under OUT/projects: its own name, numbered when two projects share it.
fn project_folder_name(project: &Path, used: &mut Vec<String>) -> String {
    let base = std::path::absolute(project).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_else(|| "project".into());
    let mut name = base.clone();
    let mut n = 2;
    while used.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    used.push(name.clone());
    name
}

/// One env of a project (`build PROJECT`, `ci`, `run`) as an ordinary one-sketch
/// target into OUT/ENV.
pub fn env_target(common: &CommonArgs, b: &crate::project::EnvBuild, out: &Path) -> Result<Target> {
    let mut t = target(common, vec![b.sketch.clone()])?;
    t.board = b.fqbn.clone();
    t.out = out.join(&b.env);
    t.build_properties.splice(0..0, b.build_properties.clone());
    t.library.splice(0..0, b.library.clone());
    t.libraries.splice(0..0, b.libraries.clone());
    t.sketch_properties = vec![(b.sketch.clone(), SketchProperties { all: Vec::new(), sources: b.src_properties.clone(), out: None })];
    Ok(t)
}

/// `fbuild run PROJECT [-e ENV]`: one env, the named one or the project's only default.
/// Its `monitor_speed` and `upload_port` say where a board would talk; the simulated
/// UART needs neither, so they are reported under --verbose and otherwise kept.
pub fn project_run_target(common: &CommonArgs, project: &Path, env: Option<&str>) -> Result<Target> {
    let out = std::path::absolute(&common.out).map_err(|e| Error::io(&common.out, e))?;
    let envs: Vec<String> = env.map(String::from).into_iter().collect();
    let mut builds = crate::project::prepare(project, &envs, &out)?;
    if builds.len() != 1 {
        let names: Vec<&str> = builds.iter().map(|b| b.env.as_str()).collect();
        return Err(Error::usage(format!("{}: run takes one env and the project builds {}; name one with -e", project.display(), names.join(", "))));
    }
    let b = builds.remove(0);
    for w in &b.warnings {
        crate::errln!("warning: {w}; ignored");
    }
    if common.verbose {
        if let Some(speed) = b.monitor_speed {
            crate::errln!("note: {}: monitor_speed {speed}: the simulated UART runs at the rate the firmware sets", b.label);
        }
        if let Some(port) = &b.upload_port {
            crate::errln!("note: {}: upload_port {port} is not used: run simulates the board", b.label);
        }
    }
    env_target(common, &b, &out)
}

/// The one target of `build`, `run` and `upload`: a sketch, or one env of a project.
pub fn one_firmware(common: &CommonArgs, sketch: &Path, env: Option<&str>) -> Result<Target> {
    if crate::project::is_project(sketch) {
        project_run_target(common, sketch, env)
    } else if let Some(env) = env {
        Err(Error::usage(format!("-e {env} needs a PlatformIO project; {} has no platformio.ini", sketch.display())))
    } else {
        target(common, vec![sketch.to_path_buf()])
    }
}

/// `compile-many`'s sketch arguments expanded (folders holding sketches), and with
/// `--shard K/N` this runner's share; `None` when the shard holds no sketch.
pub fn shard_sketches(args: &[PathBuf], shard: Option<crate::targets::shard::Shard>, weights: Option<&Path>) -> Result<Option<Vec<PathBuf>>> {
    let expanded = if args.is_empty() { Vec::new() } else { crate::arduino::sketch::expand_arguments(args)? };
    let Some(shard) = shard else { return Ok(Some(expanded)) };
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let weights = weights.map(|p| crate::targets::shard::read_weights(p, &cwd)).transpose()?;
    let selected = crate::targets::shard::select(&expanded, shard, weights.as_ref(), &cwd);
    // More runners than sketches: this one has nothing to do.
    Ok((!selected.is_empty()).then_some(selected))
}
