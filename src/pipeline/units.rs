//! Stage-1 units (the core, each library) and the compile step both stages share.
//!
//! A unit is planned as its compile jobs plus one finishing step (archive and stamp).
//! Before anything runs, `check` hashes its inputs: a unit whose key matches its
//! stamp needs no step at all.

use crate::cache::Namespace;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cache::keys::TimeMacros;
use crate::report::diagnostics;
use crate::error::{Error, Result};
use crate::exec::{display_command, Runner};
use crate::cache::hash::{hex, Hash};
use crate::exec::launcher;
use crate::arduino::library::IncludeCache;
use crate::cache::paths;
use crate::cache::objects::{BaseKey, ObjectCache, ObjectKey};
use crate::plan::{CompileJob, Context};
use crate::report::{self, Status, UnitResult};
use crate::cache::store::Store;
use crate::arduino::toolchain::{Compiler, Toolchain};

/// A stage-1 unit: the core (archived) or one library (objects, or an archive
/// when its library.properties asks for `dot_a_linkage`).
pub(super) struct Unit {
    pub name: String,
    pub kind: &'static str,
    pub dir: PathBuf,
    pub jobs: Vec<CompileJob>,
    pub archive: Option<PathBuf>,
    /// Objects that go on the link line one by one (library objects, variant objects).
    pub link_objects: Vec<PathBuf>,
    /// A precompiled library's share of `compiler.libraries.ldflags`, and the hash of
    /// its archives (in the unit's key, so a new archive relinks).
    pub precompiled: Option<(String, Hash)>,
    pub state: Mutex<UnitState>,
}

#[derive(Default)]
pub(super) struct UnitState {
    pub keys: Vec<Option<Hash>>,
    pub bases: Vec<Option<BaseKey>>,
    /// Per job: the time macros its files name (any: its key follows the clock).
    pub times: Vec<TimeMacros>,
    /// Each job's log, kept in job order whatever order the jobs ran in.
    pub logs: Vec<String>,
    pub key: Option<Hash>,
    pub failed: bool,
    pub log: String,
    pub compiled: usize,
    pub cached: usize,
    pub up_to_date: bool,
}

pub(super) fn compiler_for(toolchain: &Toolchain, store: Option<&Store>, job: &CompileJob) -> Result<Compiler> {
    let program = job.args.first().ok_or_else(|| Error::usage("empty compile recipe"))?;
    toolchain.probe(Path::new(program), store)
}

/// What happened to one compile job.
pub(super) enum Compiled {
    Hit(ObjectKey),
    /// Its key (`None`: not cached), and the time macros its files name.
    Built(Option<Hash>, TimeMacros),
    Failed(String),
}

/// What a compile needs besides the job: the cache, the tool runner, and what the
/// failure key scans (includes, the compiler's own folders).
pub(super) struct CompileEnv<'a> {
    pub cache: &'a ObjectCache<'a>,
    pub runner: &'a Runner,
    pub includes: &'a IncludeCache,
    pub system_dirs: &'a [PathBuf],
    /// `--compiler-launcher` words, put before the compile command when it runs.
    pub launcher: &'a [String],
}

/// What a sketch compile may run instead of its own command: asked only when the
/// compile must run (a `.gch` is built lazily), `None` for the command itself.
pub(super) type Precompiled<'a> = &'a dyn Fn(&mut String) -> Option<super::pch::PchUse>;

/// Get-or-compile one object: "compute the key, look up, else run and store".
/// A compile that failed before with the same inputs fails again without running.
pub(super) fn compile_one(env: &CompileEnv, job: &CompileJob, full: Option<ObjectKey>, base: Option<BaseKey>, log: &mut String, pch: Option<Precompiled>) -> Compiled {
    if let Some(k) = full {
        if env.cache.fetch(&k.hash, &job.object) {
            return Compiled::Hit(k);
        }
    }
    // The failure key scans the source's includes: worth it only for a source whose
    // compile failed before with these flags (a marker under the base key says so).
    let base_hash = base.map(|b| b.hash);
    let failure_key = |b: &Hash| env.cache.failure_key(b, job, env.includes, env.system_dirs);
    let failed_before = base_hash.filter(|b| env.cache.failed_before(b));
    if let Some(text) = failed_before.and_then(|b| env.cache.cached_failure(&failure_key(&b))) {
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
            if env.cache.fetch(&k.hash, &job.object) {
                return Compiled::Hit(k);
            }
        }
    }
    if let Some(parent) = job.object.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let depfile = crate::cache::objects::depfile_of(&job.object);
    // The key and the failure memo stay the job's own command; only what runs may
    // gain the precompiled header's folder.
    let pch = pch.and_then(|p| p(log));
    let args = pch.as_ref().map_or(&job.args, |p| &p.args);
    let started = crate::cache::objects::unix_now();
    let out = run_into_log(env.runner, &launcher::wrap(env.launcher, args, &depfile), log);
    if !out.success {
        // Never leave a half-written or stale object behind a failed compile.
        let _ = std::fs::remove_file(&job.object);
        // Only an ordinary compile error (a diagnostic at a file and line) is worth
        // remembering: not a crash, an unwritable output or an interruption, which
        // may not happen again. An output folder that vanished mid-compile makes GCC
        // report "opening dependency file ...: No such file or directory" at a file
        // and line, so the source and the object's folder must still be there, and
        // the message must not name the object or its dependency file (another job
        // may have made the folder again in the meantime).
        let names_output = [&job.object, &depfile].iter().any(|p| out.text.contains(p.to_string_lossy().as_ref()));
        // SOURCE_DATE_EPOCH's value is not an input of the key: an error about it
        // (GCC 7+ refuses a value that is not a number) would outlive its fix.
        let ordinary = out.signal.is_none()
            && !out.text.contains("SOURCE_DATE_EPOCH")
            && !env.runner.interrupted()
            && !names_output
            && job.source.is_file()
            && job.object.parent().is_some_and(Path::is_dir)
            && diagnostics::parse(&out.text).iter().any(|d| d.severity == "error");
        if let (true, Some(b)) = (ordinary, base_hash.filter(|_| env.cache.store.is_some())) {
            env.cache.record_failure(&b, &failure_key(&b), &out.text);
        }
        return Compiled::Failed(out.text);
    }
    if let Some(p) = &pch {
        super::pch::merge_depfile(job, p);
    }
    match base {
        Some(b) => {
            let (key, time) = env.cache.record(&b, job, started, || crate::cache::objects::scanned_headers(job, env.includes, env.system_dirs));
            Compiled::Built(key, time)
        }
        None => Compiled::Built(None, TimeMacros::default()),
    }
}

/// Run a tool, appending its command line and output to a build log.
pub(super) fn run_into_log(runner: &Runner, cmd: &[String], log: &mut String) -> crate::exec::Output {
    let out = runner.run(cmd, None);
    log.push_str(&display_command(cmd));
    log.push('\n');
    log.push_str(&out.text);
    out
}

fn stamp_matches(stamp: &Path, key: &Hash, outputs: &[&Path]) -> bool {
    std::fs::read_to_string(stamp).map(|s| s.lines().next() == Some(hex(key).as_str())).unwrap_or(false)
        && outputs.iter().all(|p| p.is_file())
}

pub(super) fn write_log(dir: &Path, log: &str) {
    if !log.is_empty() {
        let _ = report::write_atomic(&dir.join("build.log"), log.as_bytes());
    }
}

impl Unit {
    /// Keys first (hashing only). `true`: the unit's stamp matches, nothing to run.
    pub fn check(&self, fw_ctx: &Context, toolchain: &Toolchain, cache: &ObjectCache, store: Option<&Store>) -> Result<bool> {
        let mut st = self.state.lock().unwrap();
        for j in &self.jobs {
            let compiler = compiler_for(toolchain, store, j)?;
            let base = cache.base_key(&compiler, j);
            let key = base.and_then(|b| cache.local_full_key(&b));
            st.bases.push(base);
            st.keys.push(key.map(|k| k.hash));
            st.times.push(key.map(|k| k.time).unwrap_or_default());
            st.logs.push(String::new());
        }
        if let Some(k) = self.key(fw_ctx, &st.keys)? {
            let mut outputs: Vec<&Path> = self.link_objects.iter().map(PathBuf::as_path).collect();
            if let Some(a) = &self.archive {
                outputs.push(a);
            }
            if stamp_matches(&self.dir.join(".fbuild-unit"), &k, &outputs) {
                st.key = Some(k);
                st.up_to_date = true;
                return Ok(true);
            }
        }
        let _ = std::fs::remove_file(self.dir.join(".fbuild-unit"));
        Ok(false)
    }

    /// The compile step of job `ji`.
    /// `pch`: the board's precompiled `Arduino.h`, for sources that start with it.
    pub fn compile(&self, ji: usize, cenv: &CompileEnv, pch: Option<(&super::pch::BoardPch, &super::pch::PchEnv)>) {
        let (full, base) = {
            let st = self.state.lock().unwrap();
            (st.keys[ji].map(|hash| ObjectKey { hash, time: st.times[ji] }), st.bases[ji])
        };
        let mut log = String::new();
        let job = &self.jobs[ji];
        let precompiled = |log: &mut String| pch.and_then(|(p, env)| p.use_for(env, job, log));
        let r = compile_one(cenv, job, full, base, &mut log, Some(&precompiled));
        let mut st = self.state.lock().unwrap();
        st.logs[ji] = log;
        match r {
            Compiled::Hit(k) => {
                st.cached += 1;
                st.keys[ji] = Some(k.hash);
                st.times[ji] = k.time;
            }
            Compiled::Built(k, time) => {
                st.compiled += 1;
                st.keys[ji] = k;
                st.times[ji] = time;
            }
            Compiled::Failed(_) => st.failed = true,
        }
    }

    /// The finishing step, after every compile: archive (core.a, dot_a_linkage
    /// libraries) and stamp the unit.
    pub fn finish(&self, fw_ctx: &Context, runner: &Runner, store: Option<&Store>) -> Result<()> {
        let mut guard = self.state.lock().unwrap();
        let st = &mut *guard;
        st.log = st.logs.concat();
        if st.failed || runner.interrupted() {
            write_log(&self.dir, &st.log);
            return Ok(());
        }
        let key = self.key(fw_ctx, &st.keys)?;
        if let Some(archive) = &self.archive {
            crate::cache::store::files_or_run(store, Namespace::Archive, key.as_ref(), &[("a", archive)], || {
                // `ar rcs` appends: start from nothing so no stale member survives.
                let _ = std::fs::remove_file(archive);
                for j in &self.jobs {
                    if self.link_objects.contains(&j.object) {
                        continue; // variant objects are linked, not archived
                    }
                    let cmd = fw_ctx.archive(archive, &j.object)?;
                    if !run_into_log(runner, &cmd, &mut st.log).success {
                        st.failed = true;
                        let _ = std::fs::remove_file(archive);
                        break;
                    }
                }
                Ok::<_, Error>(!st.failed)
            })?;
        }
        if !st.failed {
            st.key = key;
            if let Some(k) = key {
                let _ = report::write_atomic(&self.dir.join(".fbuild-unit"), format!("{}\n", hex(&k)).as_bytes());
            }
        }
        write_log(&self.dir, &st.log);
        Ok(())
    }

    /// A unit's key: its objects' keys plus its archive commands (paths relative).
    fn key(&self, fw_ctx: &Context, keys: &[Option<Hash>]) -> Result<Option<Hash>> {
        let Some(keys) = keys.iter().copied().collect::<Option<Vec<Hash>>>() else { return Ok(None) };
        let mut commands = Vec::new();
        if let Some(archive) = &self.archive {
            for j in &self.jobs {
                let cmd = fw_ctx.archive(archive, &j.object)?;
                commands.push(paths::unit_command(&cmd, &self.dir));
            }
        }
        if let Some((flags, archives)) = &self.precompiled {
            commands.push(vec!["precompiled".to_string(), flags.clone(), hex(archives)]);
        }
        Ok(Some(crate::cache::keys::unit(&keys, &commands)))
    }

    /// Whether an object of the unit names a time macro (its key follows the clock).
    pub fn time_dependent(&self) -> bool {
        self.state.lock().unwrap().times.iter().any(|t| t.any())
    }

    /// Why a sketch that needs this unit cannot link, when the unit failed.
    pub fn failure(&self) -> Option<String> {
        let st = self.state.lock().unwrap();
        if !st.failed {
            return None;
        }
        let first = diagnostics::first_error_line(&st.log).unwrap_or_default();
        let what = if self.kind == "core" { "the core".to_string() } else { format!("library {}", self.name) };
        Some(format!("{what} failed to compile: {first} (log: {})", self.dir.join("build.log").display()))
    }

    pub fn result(&self) -> UnitResult {
        let st = self.state.lock().unwrap();
        UnitResult {
            name: self.name.clone(),
            kind: self.kind.to_string(),
            status: if st.failed { Status::Failed } else { Status::Ok },
            key: st.key.map(|k| hex(&k)),
            archive: self.archive.clone(),
            objects: self.link_objects.clone(),
            log: self.dir.join("build.log"),
            first_error: if st.failed { diagnostics::first_error_line(&st.log) } else { None },
            objects_compiled: st.compiled,
            objects_cached: st.cached,
            up_to_date: st.up_to_date,
        }
    }
}
