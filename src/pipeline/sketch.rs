//! Stage-2 steps of one sketch: `prepare` (at planning: the up-to-date and
//! remembered-failure checks, which need no tool), one compile step per translation
//! unit (they need nothing from stage 1, so they run beside it), and the link step
//! (link, objcopy, bootloader merge, size), which waits for its own objects and the
//! units it links.

use crate::cache::Namespace;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::units::{compile_one, compiler_for, run_into_log, CompileEnv, Compiled, Unit};
use super::pch::{PchEnv, BoardPch};
use super::FolderLock;
use crate::cache::keys::TimeMacros;
use crate::report::diagnostics;
use crate::discover::DiscoveryError;
use crate::exec::{display_command, Runner};
use crate::cache::hash::{hex, Hash};
use crate::exec::launcher::LocalSlots;
use crate::arduino::library::{IncludeCache, LibraryIndex};
use crate::report::link_failure::{self, LinkFailure};
use crate::cache::paths;
use crate::cache::objects::{BaseKey, ObjectCache, ObjectKey};
use crate::plan::{self, CompileJob, Context, Sizes};
use crate::arduino::properties::Properties;
use crate::report::{self, LibraryUse, LinkSource, SketchResult, Status};
use crate::arduino::sketch::Sketch;
use crate::cache::store::Store;
use crate::arduino::toolchain::Toolchain;

/// One sketch as planned after discovery.
pub(super) struct SketchWork {
    pub sketch: Sketch,
    pub dir: PathBuf,
    pub jobs: Vec<CompileJob>,
    /// Library unit indexes, in discovery order.
    pub units: Vec<usize>,
    pub libraries: Vec<LibraryUse>,
    /// Discovery stopped on a header no library provides.
    pub discovery_error: Option<DiscoveryError>,
    pub discover_seconds: f64,
    pub discover_runs: usize,
    /// The sketch's own build properties (`Target::sketch_properties`), if any.
    pub props: Option<std::sync::Arc<crate::arduino::properties::Properties>>,
    pub state: Mutex<SketchState>,
}

/// What the sketch's steps leave for its link step.
#[derive(Default)]
pub(super) struct SketchState {
    keys: Vec<Option<Hash>>,
    bases: Vec<Option<BaseKey>>,
    /// Per job: the time macros its files name.
    times: Vec<TimeMacros>,
    /// Each compile's log and, when it failed, its output.
    compiled: Vec<Option<(String, Option<String>)>>,
    objects_compiled: usize,
    objects_cached: usize,
    /// Time spent in this sketch's own steps.
    busy: f64,
    log: String,
}

/// What every sketch step reads.
pub(super) struct SketchEnv<'a> {
    pub props: &'a Properties,
    pub core: &'a Unit,
    pub libs: &'a [Unit],
    pub cache: &'a ObjectCache<'a>,
    pub toolchain: &'a Toolchain,
    pub store: Option<&'a Store>,
    pub runner: &'a Runner,
    pub index: &'a LibraryIndex,
    pub includes: &'a IncludeCache,
    pub system_dirs: &'a [PathBuf],
    pub fw_dir: &'a Path,
    pub launcher: &'a [String],
    /// Links, objcopy and size run on this machine: at most this many at once.
    pub local: &'a LocalSlots,
    /// The board's precompiled headers; `None` with `--no-pch` or a compiler launcher.
    pub pch: Option<&'a BoardPch>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LinkRecord {
    files: Vec<String>,
    sizes: Sizes,
}

/// The link, objcopy and size commands of one sketch, and what keys them.
struct LinkPlan {
    project: String,
    link: Vec<String>,
    objcopies: Vec<Vec<String>>,
    size: Vec<String>,
    bootloader: Option<PathBuf>,
}

/// After planning: either the sketch is settled (up to date, remembered failure,
/// discovery error) or its compile and link steps must run.
pub(super) enum Prepared {
    Done(SketchResult),
    Build,
}

/// `to` as a path relative to the folder `from`, when both sit under one root.
fn relative(from: &Path, to: &Path) -> Option<PathBuf> {
    let common = from.ancestors().find(|a| to.starts_with(a))?;
    let ups = from.strip_prefix(common).ok()?.components().count();
    let mut rel: PathBuf = std::iter::repeat("..").take(ups).collect();
    rel.push(to.strip_prefix(common).ok()?);
    Some(rel)
}

impl SketchEnv<'_> {
    fn project(w: &SketchWork) -> String {
        format!("{}.ino", w.sketch.name)
    }

    fn empty_result(&self, w: &SketchWork) -> SketchResult {
        SketchResult {
            flash_max: self.props.get("upload.maximum_size").and_then(|v| v.parse().ok()),
            ram_max: self.props.get("upload.maximum_data_size").and_then(|v| v.parse().ok()),
            libraries: w.libraries.clone(),
            discover_seconds: w.discover_seconds,
            discover_runs: w.discover_runs,
            ..SketchResult::unbuilt(&w.sketch.name, &w.sketch.dir, &w.dir, Status::Failed)
        }
    }

    /// The sketch's context: its build folder, and the core archive read where
    /// stage 1 left it instead of a copy in every sketch folder.
    fn context(&self, w: &SketchWork) -> Context {
        let mut ctx = Context::new(w.props.as_deref().unwrap_or(self.props), &w.dir, &Self::project(w), &w.sketch.dir);
        if let Some(rel) = self.core.archive.as_deref().and_then(|a| relative(&w.dir, a)) {
            ctx.props.set("archive_file", rel.display().to_string());
        }
        // arduino-cli gives the link both: `{build.path}/{archive_file}` (AVR, SAMD,
        // arduino-pico) and `{archive_file_path}` (STM32duino).
        if let Some(a) = self.core.archive.as_deref() {
            ctx.props.set("archive_file_path", a.display().to_string());
        }
        // Precompiled libraries, in the order the sketch uses them (see `Library::precompiled_link`).
        let precompiled: String = w.units.iter().filter_map(|&u| self.libs[u].precompiled.as_ref()).map(|(flags, _)| flags.as_str()).collect();
        if !precompiled.is_empty() {
            let flags = format!("{}{precompiled}", ctx.props.get_or_empty("compiler.libraries.ldflags"));
            ctx.props.set("compiler.libraries.ldflags", flags);
        }
        ctx
    }

    fn link_plan(&self, w: &SketchWork, ctx: &Context) -> Result<LinkPlan, String> {
        let mut objects: Vec<PathBuf> = w.jobs.iter().map(|j| j.object.clone()).collect();
        for &ui in &w.units {
            let u = &self.libs[ui];
            objects.extend(u.link_objects.iter().cloned());
            if let Some(a) = &u.archive {
                objects.push(a.clone());
            }
        }
        objects.extend(self.core.link_objects.iter().cloned());
        Ok(LinkPlan {
            project: Self::project(w),
            link: ctx.link(&objects).map_err(|e| e.to_string())?,
            objcopies: ctx.objcopies().map_err(|e| e.to_string())?,
            size: ctx.size().map_err(|e| e.to_string())?,
            bootloader: bootloader_file(self.props),
        })
    }

    /// The link's key: every object's key, every unit's key, the bootloader and the
    /// commands with this build's folders taken out. `None` while any is unknown.
    fn link_key(&self, w: &SketchWork, plan: &LinkPlan, keys: &[Option<Hash>]) -> Option<Hash> {
        let mut inputs: Vec<Hash> = keys.iter().copied().collect::<Option<Vec<Hash>>>()?;
        for u in w.units.iter().map(|&ui| &self.libs[ui]).chain(std::iter::once(self.core)) {
            inputs.push(u.state.lock().unwrap().key?);
        }
        if let Some(b) = &plan.bootloader {
            inputs.push(self.cache.file_hash(b)?);
        }
        let mut commands = vec![plan.link.clone(), plan.size.clone()];
        commands.extend(plan.objcopies.iter().cloned());
        // The framework as the sketch's link line reaches it (`<sketch>/../framework/..`)
        // first, so the key is the same whichever framework folder the properties chose.
        let fw_from_sketch = relative(&w.dir, self.fw_dir).map(|rel| w.dir.join(rel)).unwrap_or_default();
        let commands: Vec<Vec<String>> = commands
            .iter()
            .map(|c| paths::link_command(c, &fw_from_sketch, &w.dir, self.fw_dir, &w.sketch.dir))
            .collect();
        Some(crate::cache::keys::link(&inputs, &commands))
    }

    /// At planning, with no tool run: settle the sketch if its firmware is up to
    /// date or its link is known to fail, else get it ready for its steps.
    pub fn prepare(&self, w: &SketchWork) -> Prepared {
        let t = Instant::now();
        let mut r = self.empty_result(w);
        let mut log = String::new();
        match self.prepare_inner(w, &mut r, &mut log) {
            Some(outcome) => Prepared::Done(self.conclude(w, r, log, outcome, t)),
            None => {
                let mut st = w.state.lock().unwrap();
                st.busy += t.elapsed().as_secs_f64();
                st.log = log;
                Prepared::Build
            }
        }
    }

    /// `Some(outcome)` when the sketch is settled without its steps.
    fn prepare_inner(&self, w: &SketchWork, r: &mut SketchResult, log: &mut String) -> Option<Result<(), String>> {
        // Each step holds the folder's lock while it works there, not from planning
        // to link: a thousand sketches must not hold a thousand open files.
        let _lock = match FolderLock::acquire(&w.dir) {
            Ok(l) => l,
            Err(e) => return Some(Err(e.to_string())),
        };
        if let Some(e) = &w.discovery_error {
            // The reference stops here too: the preprocessor's words name the file
            // and line that wants the header.
            log.push_str(&format!("{}\n{}", display_command(&e.command), e.message));
            return Some(Err(e.message.clone()));
        }
        let mut keys = Vec::new();
        {
            let mut st = w.state.lock().unwrap();
            for j in &w.jobs {
                let c = match compiler_for(self.toolchain, self.store, j) {
                    Ok(c) => c,
                    Err(e) => return Some(Err(e.to_string())),
                };
                let b = self.cache.base_key(&c, j);
                let key = b.and_then(|b| self.cache.local_full_key(&b));
                st.bases.push(b);
                st.keys.push(key.map(|k| k.hash));
                st.times.push(key.map(|k| k.time).unwrap_or_default());
                st.compiled.push(None);
            }
            keys.clone_from(&st.keys);
        }
        let ctx = self.context(w);
        let plan = match self.link_plan(w, &ctx) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if let Some(k) = self.link_key(w, &plan, &keys) {
            if let Some(done) = self.settled(w, &k, r, log) {
                return Some(done);
            }
        }
        // (The pre-build hooks ran before discovery: see `hooks::prepare`.)
        let _ = std::fs::remove_file(w.dir.join(".fbuild-link"));
        if let Some(p) = self.pch {
            // Its merged sketch may compile (a known key may still miss the cache).
            p.expect(1);
        }
        None
    }

    /// Up to date (firmware and stamp match the key) or a remembered link failure.
    fn settled(&self, w: &SketchWork, key: &Hash, r: &mut SketchResult, log: &mut String) -> Option<Result<(), String>> {
        if let Some(rec) = read_link_stamp(&w.dir.join(".fbuild-link"), key) {
            if rec.files.iter().all(|f| w.dir.join(f).is_file()) {
                r.link = LinkSource::UpToDate;
                r.objects_cached = w.jobs.len();
                return Some(self.finish_sizes(r, &rec, &w.dir));
            }
        }
        self.recall_link_failure(w, key, r, log).map(Err)
    }

    fn hooks(&self, ctx: &Context, stage: &str, log: &mut String) -> Result<(), String> {
        for cmd in ctx.hooks(stage).map_err(|e| e.to_string())? {
            run_logged(self.runner, &cmd, log)?;
        }
        Ok(())
    }

    /// The compile step of the sketch's job `i`.
    pub fn compile(&self, w: &SketchWork, i: usize) {
        let t = Instant::now();
        let (full, base) = {
            let st = w.state.lock().unwrap();
            (st.keys[i].map(|hash| ObjectKey { hash, time: st.times[i] }), st.bases[i])
        };
        let cenv = CompileEnv { cache: self.cache, runner: self.runner, includes: self.includes, system_dirs: self.system_dirs, launcher: self.launcher };
        let mut log = String::new();
        let outcome = match FolderLock::acquire(&w.dir) {
            Ok(_lock) => {
                let penv = PchEnv { toolchain: self.toolchain, store: self.store, cache: self.cache, runner: self.runner };
                let pch = |log: &mut String| self.pch.and_then(|p| p.use_for(&penv, &w.jobs[i], log));
                compile_one(&cenv, &w.jobs[i], full, base, &mut log, Some(&pch))
            }
            Err(e) => Compiled::Failed(e.to_string()),
        };
        let mut st = w.state.lock().unwrap();
        let failed = match outcome {
            Compiled::Hit(k) => {
                st.objects_cached += 1;
                st.keys[i] = Some(k.hash);
                st.times[i] = k.time;
                None
            }
            Compiled::Built(k, time) => {
                st.objects_compiled += 1;
                st.keys[i] = k;
                st.times[i] = time;
                None
            }
            Compiled::Failed(text) => Some(text),
        };
        st.compiled[i] = Some((log, failed));
        st.busy += t.elapsed().as_secs_f64();
    }

    /// The link step: after the sketch's compiles and the units it links.
    pub fn link(&self, w: &SketchWork) -> SketchResult {
        let t = Instant::now();
        let mut r = self.empty_result(w);
        let mut log = std::mem::take(&mut w.state.lock().unwrap().log);
        let outcome = match FolderLock::acquire(&w.dir) {
            Ok(_lock) => self.link_inner(w, &mut r, &mut log),
            Err(e) => Err(e.to_string()),
        };
        self.conclude(w, r, log, outcome, t)
    }

    fn link_inner(&self, w: &SketchWork, r: &mut SketchResult, log: &mut String) -> Result<(), String> {
        // A unit this sketch needs failed in stage 1: name it and its log.
        for u in std::iter::once(self.core).chain(w.units.iter().map(|&ui| &self.libs[ui])) {
            if let Some(why) = u.failure() {
                return Err(why);
            }
        }
        // The compiles' logs, the merged sketch first: a failure is reported where
        // the reference meets it first (it compiles the merged sketch first).
        let keys = {
            let mut st = w.state.lock().unwrap();
            r.objects_compiled = st.objects_compiled;
            r.objects_cached = st.objects_cached;
            let merged = format!("{}.cpp", Self::project(w));
            let mut order: Vec<usize> = (0..w.jobs.len()).collect();
            order.sort_by_key(|&i| !w.jobs[i].source.ends_with(&merged));
            for i in order {
                let (text, failed) = st.compiled[i].take().unwrap_or_default();
                log.push_str(&text);
                if let Some(f) = failed {
                    return Err(f);
                }
            }
            st.keys.clone()
        };
        let ctx = self.context(w);
        self.hooks(&ctx, "sketch.postbuild", log)?;
        let plan = self.link_plan(w, &ctx)?;
        let project = plan.project.as_str();
        let key = self.link_key(w, &plan, &keys);
        let stamp = w.dir.join(".fbuild-link");
        if let Some(k) = key {
            if let Some(done) = self.settled(w, &k, r, log) {
                return done;
            }
            if let Some(store) = self.store {
                if let Some(rec) = store.get_record(Namespace::LinkMeta, &k).and_then(|b| serde_json::from_slice::<LinkRecord>(&b).ok()) {
                    let dests: Vec<PathBuf> = rec.files.iter().map(|f| w.dir.join(f)).collect();
                    let pairs: Vec<(&str, &Path)> = rec.files.iter().map(String::as_str).zip(dests.iter().map(PathBuf::as_path)).collect();
                    if store.get_files(Namespace::Link, &k, &pairs) {
                        r.link = LinkSource::Cached;
                        write_link_stamp(&stamp, &k, &rec);
                        return self.finish_sizes(r, &rec, &w.dir);
                    }
                }
            }
        }

        // Link against the stage-1 units, exactly as the reference builder does.
        let _local = self.local.acquire();
        self.hooks(&ctx, "linking.prelink", log)?;
        for p in firmware_files(&w.dir, project) {
            let _ = std::fs::remove_file(p);
        }
        r.link = LinkSource::Linked;
        let link_log_start = log.len();
        let link_out = run_into_log(self.runner, &plan.link, log);
        let deterministic = link_failure::is_deterministic(&link_out, self.runner.interrupted());
        let linked = (|| -> Result<String, String> {
            if !link_out.success {
                return Err(link_out.text.clone());
            }
            self.hooks(&ctx, "linking.postlink", log)?;
            self.hooks(&ctx, "objcopy.preobjcopy", log)?;
            for c in &plan.objcopies {
                run_logged(self.runner, c, log)?;
            }
            self.hooks(&ctx, "objcopy.postobjcopy", log)?;
            if let Some(b) = &plan.bootloader {
                merge_bootloader(&w.dir.join(format!("{project}.hex")), b, &w.dir.join(format!("{project}.with_bootloader.hex")))?;
            }
            // The reference's last stage before it measures the firmware.
            self.hooks(&ctx, "postbuild", log)?;
            run_logged(self.runner, &plan.size, log)
        })();
        let paths = paths::PathMap::new(&w.dir, &w.sketch.dir, self.fw_dir);
        let size_out = match linked {
            Ok(s) => s,
            Err(e) => {
                let overflow = ["overflowed by", "will not fit in region", "not within region"].iter().any(|m| e.contains(m));
                let (detail, sizes) = if overflow { self.overflow_sizes(&plan.link, &plan.size, r) } else { (None, None) };
                for p in firmware_files(&w.dir, project) {
                    let _ = std::fs::remove_file(p);
                }
                if let (true, Some(k), Some(store)) = (deterministic, key, self.store) {
                    let failure = LinkFailure { log: log[link_log_start..].to_string(), error: e.clone(), sizes };
                    link_failure::remember(store, &k, &failure, &paths);
                }
                return Err(detail.unwrap_or(e));
            }
        };
        let files: Vec<String> = firmware_files(&w.dir, project)
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let rec = LinkRecord { files, sizes: plan::parse_sizes(self.props, &size_out) };
        if let Some(k) = key {
            if let Some(store) = self.store {
                let dests: Vec<PathBuf> = rec.files.iter().map(|f| w.dir.join(f)).collect();
                let pairs: Vec<(&str, &Path)> = rec.files.iter().map(String::as_str).zip(dests.iter().map(PathBuf::as_path)).collect();
                if store.put_files(Namespace::Link, &k, &pairs).is_ok() {
                    let _ = store.put_record(Namespace::LinkMeta, &k, &serde_json::to_vec(&rec).unwrap_or_default());
                }
            }
            write_link_stamp(&stamp, &k, &rec);
        }
        let fits = self.finish_sizes(r, &rec, &w.dir);
        if let (Err(_), Some(k), Some(store)) = (&fits, key, self.store) {
            // Too big for the board: remembered so a warm run needs no store fetch of
            // the firmware to say so again.
            let failure = LinkFailure { log: log[link_log_start..].to_string(), error: String::new(), sizes: Some(rec.sizes.clone()) };
            link_failure::remember(store, &k, &failure, &paths);
        }
        fits
    }

    /// The sketch's result from the outcome of its steps; its log written, and no firmware of an earlier run left behind a failure.
    fn conclude(&self, w: &SketchWork, mut r: SketchResult, mut log: String, outcome: Result<(), String>, t: Instant) -> SketchResult {
        let project = Self::project(w);
        if let Err(msg) = outcome {
            r.status = Status::Failed;
            r.diagnostics = diagnostics::parse(&log);
            let first = diagnostics::first_error_line(&msg).or_else(|| diagnostics::first_error_line(&log));
            r.first_error = Some(first.unwrap_or(msg.clone()));
            if let Some(e) = &w.discovery_error {
                let hint = format!(
                    "no installed library provides {}; searched {}",
                    e.missing,
                    self.index.searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                );
                log.push_str(&format!("fbuild: {hint}\n"));
                if let Some(f) = &mut r.first_error {
                    f.push_str(&format!(" ({hint})"));
                }
            }
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
        r.time_dependent = self.time_dependent(w);
        let mut st = w.state.lock().unwrap();
        st.busy += t.elapsed().as_secs_f64();
        r.stage2_seconds = st.busy;
        r.seconds = r.stage2_seconds + w.discover_seconds;
        r
    }

    /// What of the sketch's firmware follows the clock (results.json `time_dependent`):
    /// `sketch` for its own sources, `core`, `lib:NAME` for a library, each when one
    /// of its objects' files names `__DATE__`, `__TIME__` or `__TIMESTAMP__`.
    fn time_dependent(&self, w: &SketchWork) -> Vec<String> {
        let mut parts = Vec::new();
        if w.state.lock().unwrap().times.iter().any(|t| t.any()) {
            parts.push("sketch".to_string());
        }
        if self.core.time_dependent() {
            parts.push("core".to_string());
        }
        for &ui in &w.units {
            let u = &self.libs[ui];
            if u.time_dependent() {
                parts.push(format!("lib:{}", u.name));
            }
        }
        parts
    }

    /// A link that failed before with exactly these inputs fails again, without
    /// running a tool: the same log, sizes and error. The size check is redone against
    /// the board's current limits, so raising them lets a too-big sketch through.
    fn recall_link_failure(&self, w: &SketchWork, key: &Hash, r: &mut SketchResult, log: &mut String) -> Option<String> {
        let store = self.store?;
        // A link this machine remembers succeeding did not fail: no need to ask a remote tier.
        if store.get_near_record(Namespace::LinkMeta, key).is_some() {
            return None;
        }
        let failure = link_failure::recall(store, key, &paths::PathMap::new(&w.dir, &w.sketch.dir, self.fw_dir))?;
        let too_big = failure.sizes.clone().and_then(|sizes| self.finish_sizes(r, &LinkRecord { files: Vec::new(), sizes }, Path::new("")).err());
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
    fn overflow_sizes(&self, link: &[String], size: &[String], r: &mut SketchResult) -> (Option<String>, Option<Sizes>) {
        let mut relink = link.to_vec();
        relink.insert(1, "-Wl,--noinhibit-exec".to_string());
        let _ = self.runner.run(&relink, None);
        let out = self.runner.run(size, None);
        if !out.success {
            return (None, None);
        }
        let sizes = plan::parse_sizes(self.props, &out.stdout);
        let rec = LinkRecord { files: Vec::new(), sizes: sizes.clone() };
        (self.finish_sizes(r, &rec, Path::new("")).err(), Some(sizes))
    }

    fn finish_sizes(&self, r: &mut SketchResult, rec: &LinkRecord, dir: &Path) -> Result<(), String> {
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
                    self.props.get_or_empty("name")
                ));
            }
        }
        if let Some(max) = r.ram_max {
            if rec.sizes.ram > max {
                return Err(format!("not enough memory: global variables use {} bytes of RAM, the maximum is {max} bytes", rec.sizes.ram));
            }
        }
        Ok(())
    }
}

fn run_logged(runner: &Runner, cmd: &[String], log: &mut String) -> Result<String, String> {
    let out = run_into_log(runner, cmd, log);
    if out.success {
        Ok(out.stdout)
    } else {
        Err(out.text)
    }
}

/// The board's bootloader image (`bootloader.noblink` wins over `bootloader.file`, as
/// in the reference builder), when the platform ships it.
fn bootloader_file(props: &Properties) -> Option<PathBuf> {
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
fn merge_bootloader(sketch_hex: &Path, bootloader: &Path, out: &Path) -> Result<(), String> {
    let rows = |p: &Path| -> Result<Vec<Vec<u8>>, String> {
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

fn read_link_stamp(stamp: &Path, key: &Hash) -> Option<LinkRecord> {
    let text = std::fs::read_to_string(stamp).ok()?;
    let (k, rest) = text.split_once('\n')?;
    (k == hex(key)).then(|| serde_json::from_str(rest).ok())?
}

fn write_link_stamp(stamp: &Path, key: &Hash, rec: &LinkRecord) {
    let body = format!("{}\n{}", hex(key), serde_json::to_string(rec).unwrap_or_default());
    let _ = report::write_atomic(stamp, body.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::relative;
    use std::path::{Path, PathBuf};

    #[test]
    fn relative_paths_climb_to_the_common_folder() {
        assert_eq!(relative(Path::new("/o/Blink-1"), Path::new("/o/framework/x/core/core.a")), Some(PathBuf::from("../framework/x/core/core.a")));
        assert_eq!(relative(Path::new("/o/a/b"), Path::new("/o/c.a")), Some(PathBuf::from("../../c.a")));
    }
}
