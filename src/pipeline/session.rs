//! How to build, opened once per command: the one cache store (with its remote tier),
//! the one tool runner, the compiler probes memoised per path, the installed
//! platforms and loaded boards, and the knobs (jobs, verbosity, launcher, smoke run).
//! Every target of the command is built with it (ninja's `BuildConfig`); the cache's
//! stats are flushed and the store evicted once, when the session closes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::exec::{Runner, Tools};
use crate::arduino::platform::Platform;
use crate::report::CacheSummary;
use crate::cache::store::Store;
use crate::arduino::toolchain::Toolchain;

use super::load::load_board;
use super::{Loaded, Target};

/// What a `Session` is opened with.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Hardware folders searched first for platforms (`--hardware`).
    pub hardware: Vec<PathBuf>,
    /// `None`: build without a cache (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
    /// `--remote-cache`: the shared tier behind the local cache.
    pub remote_cache: Option<String>,
    pub remote_cache_readonly: bool,
    pub framework_jobs: usize,
    pub sketch_jobs: usize,
    /// How much work may run on this machine at once (discovery, links): the cores.
    pub local_jobs: usize,
    pub verbose: bool,
    pub quiet: bool,
    /// `--compiler-launcher`, split into words; empty for none.
    pub compiler_launcher: Vec<String>,
    /// `--no-pch`: sketch compiles never use a precompiled `Arduino.h`.
    pub no_pch: bool,
    /// `--smoke-run`: boot each firmware that built in simavr, as a step after its link.
    pub smoke_run: Option<crate::emulator::RunSpec>,
}

/// The build's "how", shared by every target (see the module comment).
pub struct Session {
    pub opts: SessionOptions,
    pub store: Option<Store>,
    /// The one runner: targets count their tools through `Runner::scope` handles.
    pub runner: Arc<Runner>,
    /// The one probe memo: targets count their probes through `Toolchain::scope`.
    pub toolchain: Toolchain,
    platforms: OnceLock<Vec<Platform>>,
    /// Boards loaded so far, by what decides them (see `Session::load`).
    loaded: Mutex<Vec<(LoadKey, Arc<Loaded>)>>,
}

/// What a loaded board depends on besides the installed platforms.
type LoadKey = (String, Vec<(String, String)>, bool);

impl Session {
    /// Open the cache (a folder that cannot be used gives one warning and the build goes
    /// on without it) and the runner.
    pub fn open(opts: SessionOptions) -> Result<Session> {
        Session::open_with_tools(opts, None)
    }

    /// `open`, starting programs through `tools` (`None`: the system's; a unit test's fake).
    pub fn open_with_tools(opts: SessionOptions, tools: Option<Arc<dyn Tools>>) -> Result<Session> {
        let remote = opts.remote_cache.as_deref().map(|url| crate::cache::remote::open(url, opts.remote_cache_readonly)).transpose().map_err(Error::Usage)?;
        let store = match &opts.cache_dir {
            None => None,
            Some(dir) => match Store::open(dir, opts.cache_max_bytes) {
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
        let runner = Arc::new(match tools {
            Some(tools) => Runner::with_tools(tools, opts.verbose),
            None => Runner::new(opts.verbose),
        });
        let toolchain = Toolchain::new(runner.clone());
        Ok(Session { opts, store, runner, toolchain, platforms: OnceLock::new(), loaded: Mutex::default() })
    }

    /// The installed platforms, discovered on first use.
    pub fn platforms(&self) -> Result<&[Platform]> {
        if let Some(p) = self.platforms.get() {
            return Ok(p);
        }
        let found = crate::arduino::platform::discover(&self.opts.hardware)?;
        Ok(self.platforms.get_or_init(|| found))
    }

    /// The target's board resolved, its properties set and its compiler probed (probe
    /// processes counted by `toolchain`, a scope of the session's): once per board and
    /// settings, however many times a command asks (`fbuild run`, project envs).
    pub fn load(&self, target: &Target, toolchain: &Toolchain) -> Result<Arc<Loaded>> {
        let key: LoadKey = (target.board.clone(), target.build_properties.clone(), target.optimize_for_debug);
        if let Some((_, l)) = self.loaded.lock().unwrap().iter().find(|(k, _)| *k == key) {
            return Ok(l.clone());
        }
        let loaded = Arc::new(load_board(target, self.platforms()?, toolchain, self.store.as_ref())?);
        self.loaded.lock().unwrap().push((key, loaded.clone()));
        Ok(loaded)
    }

    /// The cache's counts so far (every target of the session shares them).
    pub(super) fn cache_summary(&self) -> CacheSummary {
        match self.store.as_ref() {
            Some(s) => {
                let st = s.run_stats();
                CacheSummary { enabled: true, dir: Some(s.root().to_path_buf()), hits: st.hits(), misses: st.misses(), remote: s.remote_stats() }
            }
            None => CacheSummary::default(),
        }
    }
}

impl Drop for Session {
    /// Closing: the run's cache counts join the persistent ones, and the store is
    /// trimmed to its bound, once for every target built.
    fn drop(&mut self) {
        if let Some(s) = &self.store {
            let st = s.run_stats();
            let _ = s.flush_stats();
            // Eviction scans the whole store: only worth it when this run added to it.
            if st.stores() > 0 {
                let _ = s.evict();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::opened;

    /// A board matrix is one session: one store, one runner (one signal thread), and
    /// each distinct compiler probed once, however many boards use it. Uses the real
    /// AVR platform and avr-g++ (loading a board probes its compiler); stops after
    /// planning (`only_compiledb`), so nothing is compiled.
    #[test]
    fn a_board_matrix_of_the_real_avr_platform_opens_one_store_and_one_runner() {
        let t = tempfile::tempdir().unwrap();
        let sketch = t.path().join("Blinky");
        std::fs::create_dir_all(&sketch).unwrap();
        std::fs::write(sketch.join("Blinky.ino"), "void setup() { pinMode(13, OUTPUT); }\nvoid loop() { digitalWrite(13, HIGH); }\n").unwrap();
        let (runners, stores) = (opened::RUNNERS.with(|n| n.get()), opened::STORES.with(|n| n.get()));
        let session = Session::open(SessionOptions {
            cache_dir: Some(t.path().join("cache")),
            cache_max_bytes: 1 << 30,
            framework_jobs: 1,
            sketch_jobs: 2,
            local_jobs: 2,
            quiet: true,
            ..Default::default()
        })
        .unwrap();
        let base = Target { sketches: vec![sketch], only_compiledb: true, ..Default::default() };
        let boards = ["uno", "mega", "nano"];
        let targets: Vec<Target> = boards.iter().map(|b| Target { board: b.to_string(), out: t.path().join("out").join(b), ..base.clone() }).collect();
        let reports = crate::pipeline::build(&session, &targets).unwrap();
        assert_eq!(reports.iter().map(|r| r.board.as_str()).collect::<Vec<_>>(), boards);
        assert_eq!(opened::RUNNERS.with(|n| n.get()) - runners, 1, "one runner for the matrix");
        assert_eq!(opened::STORES.with(|n| n.get()) - stores, 1, "one store for the matrix");
        // The three boards share avr-g++: identified once (three separate loads did it three times).
        assert_eq!(session.toolchain.compilers_identified(), 1);
        for b in boards {
            assert!(t.path().join("out").join(b).join(crate::plan::compiledb::FILE_NAME).is_file(), "{b}: its plan is written");
        }
    }
}
