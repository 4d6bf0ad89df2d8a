//! Command-line interface: flags are documented where they are defined.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::emulator;
use crate::error::{exit, Error, Result};
use crate::compiledb;
use crate::report::size_delta::OldResults;
use crate::{errln, out, outln};
use crate::pipeline::{Session, SessionOptions, Target};
use crate::report::{self, Status};
use crate::cache::store::{self, Store};
use crate::targets::{self, cache_dir, cache_max, cores, Targets};

pub use crate::targets::DEFAULT_CACHE_MAX;

#[derive(Parser, Debug)]
#[command(name = "fbuild", version, about = "Byte-identical Arduino firmware, built fast: many sketches, one or more boards, one process")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build one sketch (a folder or its main .ino), or a PlatformIO project folder (one
    /// build per env, into OUT/ENV), and print where the firmware is.
    Build {
        #[command(flatten)]
        common: CommonArgs,
        /// PlatformIO project only: the env to build (repeatable). Default: the project's
        /// `default_envs`, else every env. Its `board` replaces --board.
        #[arg(long = "environment", short = 'e', value_name = "ENV")]
        environment: Vec<String>,
        /// PlatformIO project only: what fbuild cannot honour (`extra_scripts`) is an error
        /// (exit 2) instead of a warning.
        #[arg(long)]
        strict: bool,
        /// The sketch folder, the path of its main .ino file, or a folder holding platformio.ini.
        sketch: PathBuf,
    },
    /// A drop-in for `pio ci`: SRC (sketches, source files or folders) and the --lib
    /// folders laid out as a PlatformIO project in OUT/ci-project, one env per --board
    /// (PlatformIO board ids), each built into OUT/ENV as `fbuild build` builds a project.
    Ci {
        #[command(flatten)]
        common: CommonArgs,
        /// A library folder (or file) copied into the project's lib/ (repeatable).
        #[arg(long = "lib", short = 'l', value_name = "DIR")]
        lib: Vec<PathBuf>,
        /// An option for every env, as `"key = value"` (repeatable).
        #[arg(long = "project-option", short = 'O', value_name = "KEY = VALUE")]
        project_option: Vec<String>,
        /// Take the envs of this platformio.ini (its [platformio] section dropped)
        /// instead of one per --board.
        #[arg(long = "project-conf", short = 'c', value_name = "FILE")]
        project_conf: Option<PathBuf>,
        /// Build only this env (repeatable). Default: every env.
        #[arg(long = "environment", short = 'e', value_name = "ENV")]
        environment: Vec<String>,
        /// What fbuild cannot honour (`extra_scripts`) is an error instead of a warning.
        #[arg(long)]
        strict: bool,
        /// Sources: sketch folders, .ino/.cpp/.h files, source folders.
        #[arg(required = true)]
        src: Vec<PathBuf>,
    },
    /// Build many sketches (and PlatformIO projects) for one board or a matrix of boards: core
    /// and libraries once per board, then every sketch in parallel. Writes OUT/results.json and
    /// OUT/phases.tsv; exit 1 if any sketch failed.
    CompileMany {
        #[command(flatten)]
        common: CommonArgs,
        /// Stage-1 width (core and libraries). Default: min(cores, 2).
        #[arg(long, value_name = "N", value_parser = parse_jobs, allow_hyphen_values = true)]
        framework_jobs: Option<usize>,
        /// Stage-2 width (sketches at once). Default: number of cores. When the wider of the two
        /// stages equals the cores fbuild may use, each worker is pinned to a core of its own
        /// (FBUILD_NO_PIN=1 leaves placement to the kernel).
        #[arg(long, value_name = "N", value_parser = parse_jobs, allow_hyphen_values = true)]
        sketch_jobs: Option<usize>,
        /// Where to write the per-sketch result map. Default: OUT/results.json.
        #[arg(long, value_name = "FILE")]
        results: Option<PathBuf>,
        /// Where to write the per-phase timings (TSV). Default: OUT/phases.tsv.
        #[arg(long, value_name = "FILE")]
        phases: Option<PathBuf>,
        /// Read more sketch paths from FILE, one per line (blank lines and # comments skipped; repeatable).
        #[arg(long, value_name = "FILE")]
        sketches_from: Vec<PathBuf>,
        /// Build every sketch, even those whose `// @filter` comment leaves this board out
        /// (by default they are reported as `skipped`).
        #[arg(long)]
        no_filter: bool,
        /// The board's memory class for `@filter` (tiny, low, large, huge). Default: from
        /// its RAM (at most 1 KiB tiny; 8-bit AVR low; 256 KiB or more huge; else large).
        #[arg(long, value_name = "CLASS", value_parser = parse_memory_class)]
        memory_class: Option<crate::filter::MemoryClass>,
        /// Compare flash and RAM use with an earlier results.json: each sketch gains
        /// `size_delta` (bytes, and % of the board's maximum); new and vanished sketches are marked.
        #[arg(long, value_name = "OLD_RESULTS")]
        compare_to: Option<PathBuf>,
        /// Write the size changes as a Markdown table, largest first (for a pull-request comment). Needs --compare-to.
        #[arg(long, value_name = "FILE", requires = "compare_to")]
        report_md: Option<PathBuf>,
        /// Boot every firmware that built in simavr for this long in simulated time (2s,
        /// 500ms), each right after its link (a step in the same graph, every board of a
        /// matrix on its own chip); each sketch result gains `run`, and a run that does not
        /// succeed makes the exit code 1.
        #[arg(long, value_name = "DURATION", value_parser = emulator::parse_duration)]
        smoke_run: Option<std::time::Duration>,
        /// With --smoke-run: a regular expression every firmware's UART output must match (repeatable).
        #[arg(long, value_name = "REGEX", value_parser = emulator::parse_expect, requires = "smoke_run")]
        expect: Vec<String>,
        /// Build only shard K of N (1-based) of the sketch list, so N CI runners split one
        /// example set; by a stable hash of each sketch's path unless --shard-weights.
        #[arg(long, value_name = "K/N", value_parser = crate::shard::parse)]
        shard: Option<crate::shard::Shard>,
        /// With --shard: balance the shards by the seconds each sketch took in this
        /// earlier results.json (unknown sketches weigh the mean).
        #[arg(long, value_name = "OLD_RESULTS", requires = "shard")]
        shard_weights: Option<PathBuf>,
        /// Sketch folders, main .ino files, folders holding sketches anywhere below, or
        /// PlatformIO project folders (holding platformio.ini: their default envs).
        sketches: Vec<PathBuf>,
    },
    /// Build a sketch if needed, then run its firmware in simavr for the board's MCU and clock:
    /// UART0 goes to stdout, --input to UART0's receiver. Exit 0 when every --expect matched
    /// (or, with none, the time ran out without a crash); 1 when one did not, the firmware
    /// crashed or halted, or the sketch did not build.
    Run {
        #[command(flatten)]
        common: CommonArgs,
        /// Simulated time to run (2s, 500ms, 1min): the same firmware and input give the same
        /// output on any machine, however loaded.
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = emulator::parse_duration)]
        timeout: std::time::Duration,
        /// A regular expression the UART output must match (repeatable; all must match, in any
        /// order). The run stops as soon as every one has.
        #[arg(long, value_name = "REGEX", value_parser = emulator::parse_expect)]
        expect: Vec<String>,
        /// A file whose bytes go to UART0's receiver, as fast as the line takes them, once the
        /// firmware enables it.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// PlatformIO project only: the env to run (default: the project's one default env).
        #[arg(long = "environment", short = 'e', value_name = "ENV")]
        environment: Option<String>,
        /// The sketch folder, the path of its main .ino file, or a folder holding platformio.ini.
        sketch: PathBuf,
    },
    /// Build a sketch or project if needed, then put it on the board at --port with the
    /// platform's upload recipe (as arduino-cli does; `pio run -t upload` for a project).
    Upload(crate::upload::UploadArgs),
    /// Print a serial port's bytes as they arrive; with --expect, exit 0 once all matched
    /// and 1 at --timeout.
    Monitor(crate::upload::monitor::MonitorArgs),
    /// Build, upload, then (with --monitor or --expect) monitor the port: the whole loop.
    Deploy {
        #[command(flatten)]
        upload: crate::upload::UploadArgs,
        /// Monitor the port after the upload.
        #[arg(long)]
        monitor: bool,
        #[command(flatten)]
        options: crate::upload::monitor::MonitorOptions,
    },
    /// A virtual board: the board's MCU in simavr, from its own bootloader, UART0 on a
    /// pseudo-terminal whose path it prints; runs until stopped (see docs/design.md).
    BoardSim(emulator::board_sim::BoardSimArgs),
    /// Internal: one emulator run in a child process (see src/emulator/mod.rs).
    #[command(name = "emulator-child", hide = true)]
    EmulatorChild(emulator::ChildArgs),
    /// Join the results.json of several shards into one (exit 1 if any sketch failed; 2 if two
    /// inputs hold the same sketch or differ in board).
    MergeResults {
        /// The shards' results.json files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write the joined result map.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
    /// List every board of every installed platform.
    Boards {
        /// Extra hardware folder holding <vendor>/<arch>/boards.txt, searched first (repeatable).
        #[arg(long, value_name = "DIR")]
        hardware: Vec<PathBuf>,
        /// Print a JSON array (id, fqbn, name, mcu, max_flash, max_ram, memory) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or empty the object/archive/link cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        /// Cache folder. Default: $FBUILD_CACHE_DIR, else $XDG_CACHE_HOME/fbuild, else ~/.cache/fbuild.
        #[arg(long, value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheAction {
    /// Entries, bytes, and hits/misses per kind for the last run and in total.
    Stats {
        /// Print the raw counts as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove every cache entry.
    Clean,
    /// Print the cache folder.
    Dir,
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Board id (`uno`) or FQBN with menu options (`arduino:avr:nano:cpu=atmega328old`).
    /// compile-many takes it more than once (a board matrix): every sketch is built for
    /// every board, each board into OUT/<board>/, and each result names its board. For ci:
    /// a PlatformIO board id (`uno`, `megaatmega2560`), one env each (repeatable).
    #[arg(long, short = 'b', default_value = "uno")]
    pub board: Vec<String>,
    /// Output folder, relative to the working directory; each sketch gets its own subfolder.
    #[arg(long, value_name = "DIR", default_value = ".fbuild")]
    pub out: PathBuf,
    /// Hardware folder holding <vendor>/<arch>/boards.txt, searched first (repeatable); then
    /// $FBUILD_HARDWARE, ~/.arduino15/packages and /usr/share/arduino/hardware.
    #[arg(long, value_name = "DIR")]
    pub hardware: Vec<PathBuf>,
    /// One library folder, preferred over every installed library (repeatable).
    #[arg(long, value_name = "DIR")]
    pub library: Vec<PathBuf>,
    /// A folder of library folders, preferred over ~/Arduino/libraries (repeatable).
    #[arg(long, value_name = "DIR")]
    pub libraries: Vec<PathBuf>,
    /// Override a platform property, as arduino-cli does: key=value (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_property)]
    pub build_property: Vec<(String, String)>,
    /// Print every command run, the choices made (menu defaults, compiler quirks) and each
    /// sketch's `Using library` lines.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Print nothing but errors and the final result.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Build without reading or writing the cache (local and remote).
    #[arg(long)]
    pub no_cache: bool,
    /// Cache folder. Default: $FBUILD_CACHE_DIR, else $XDG_CACHE_HOME/fbuild, else ~/.cache/fbuild.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Cache size bound (e.g. 5G, 500M); least recently used entries go first. Default: $FBUILD_CACHE_MAX_SIZE or 5G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub cache_max_size: Option<u64>,
    /// Print results.json to stdout and nothing else there (the summary goes to stderr); for
    /// compile-many, and build of a sketch.
    #[arg(long)]
    pub json: bool,
    /// Write OUT/compile_commands.json (every translation unit, with its real command) and
    /// stop, nothing compiled; for compile-many, and build of a sketch.
    #[arg(long, conflicts_with = "json")]
    pub only_compiledb: bool,
    /// Shared cache behind the local one: redis://[:PASSWORD@]HOST:PORT[/DB] or http://HOST:PORT/PREFIX
    /// (GET/PUT, as WebDAV serves it). Lookups go local, then remote; a remote hit is kept
    /// locally. Server trouble gives one warning and the build goes on with the local cache.
    #[arg(long, value_name = "URL", env = "FBUILD_REMOTE_CACHE")]
    pub remote_cache: Option<String>,
    /// Read the remote cache but never write to it (builds of untrusted pull requests).
    #[arg(long)]
    pub remote_cache_readonly: bool,
    /// Prefix every compile command (never the link) with CMD: distcc, icecc, ccache,
    /// sccache. Cache keys ignore it; stage widths may then exceed the cores, while
    /// discovery, links and objcopy stay within them.
    #[arg(long, value_name = "CMD", env = "FBUILD_COMPILER_LAUNCHER")]
    pub compiler_launcher: Option<String>,
    /// Build with the platform's debug profile, as arduino-cli's --optimize-for-debug:
    /// compiler.optimization_flags takes compiler.optimization_flags.debug, not .release.
    #[arg(long)]
    pub optimize_for_debug: bool,
    /// Paths under DIR enter cache keys relative to it, so the same tree at another path
    /// (another checkout, another runner) hits the cache. Default: the working folder;
    /// `/` keys absolute paths.
    #[arg(long, value_name = "DIR", env = "FBUILD_BASE_DIR")]
    pub base_dir: Option<PathBuf>,
}

fn parse_jobs(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number of at least 1".to_string()),
    }
}

pub(crate) fn parse_property(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected key=value, e.g. compiler.cpp.extra_flags=-DFOO".to_string()),
    }
}

fn parse_memory_class(s: &str) -> std::result::Result<crate::filter::MemoryClass, String> {
    crate::filter::MemoryClass::parse(s).ok_or_else(|| "expected tiny, low, large or huge".to_string())
}

fn parse_size_arg(s: &str) -> std::result::Result<u64, String> {
    store::parse_size(s).ok_or_else(|| "expected a size like 5G, 500M or 1048576".to_string())
}

/// `fbuild build PROJECT`: each env an ordinary one-sketch target in OUT/ENV, all
/// envs in one graph (as `compile-many PROJECT`), reported env by env.
fn build_project(common: &CommonArgs, project: &Path, envs: &[String], strict: bool) -> Result<i32> {
    no_compiledb(common, "a PlatformIO project", "fbuild compile-many --only-compiledb PROJECT")?;
    let out = std::path::absolute(&common.out).map_err(|e| Error::io(&common.out, e))?;
    let builds = crate::project::prepare(project, envs, &out)?;
    if let Some(w) = builds.iter().flat_map(|b| &b.warnings).next().filter(|_| strict) {
        return Err(Error::usage(format!("{w} (--strict); remove it from the env or build without --strict")));
    }
    for w in builds.iter().flat_map(|b| &b.warnings) {
        errln!("warning: {w}; ignored");
    }
    let list = builds.iter().map(|b| targets::env_target(common, b, &out)).collect::<Result<Vec<Target>>>()?;
    let session = targets::one_firmware_session(common)?;
    let reports = crate::pipeline::build(&session, &list)?;
    let mut code = exit::OK;
    for (b, report) in builds.iter().zip(&reports) {
        let r = &report.sketches[0];
        if r.status == Status::Ok {
            let hex = r.firmware.get("hex").map(|p| p.display().to_string()).unwrap_or_default();
            outln!("{}: flash {} bytes, ram {} bytes, firmware {hex}", b.label, r.flash_used.unwrap_or(0), r.ram_used.unwrap_or(0));
        } else {
            code = exit::BUILD_FAILED;
            errln!("error: {}: {}", b.label, r.first_error.as_deref().unwrap_or("build failed"));
            errln!("log: {}", report::summary::display_path_here(&r.log));
        }
    }
    Ok(code)
}

/// `--only-compiledb` writes the compile commands of one graph and stops; the commands
/// that build env by env (projects, `ci`) or run the firmware have nothing to stop
/// before, so they say which command does it instead of building anyway.
fn no_compiledb(common: &CommonArgs, what: &str, instead: &str) -> Result<()> {
    if common.only_compiledb {
        return Err(Error::usage(format!("--only-compiledb does not apply to {what}; use `{instead}`")));
    }
    Ok(())
}

/// `build` and `run` make one firmware: one board.
pub(crate) fn one_board(common: &CommonArgs) -> Result<()> {
    match common.board.len() {
        0 | 1 => Ok(()),
        _ => Err(Error::usage("--board is given more than once; build and run take one board (compile-many takes several)")),
    }
}

fn read_sketch_list(path: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!("--sketches-from {}: {e}; pass a readable file with one sketch path per line", path.display()))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect())
}

/// Run a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Boards { hardware, json } => {
            let platforms = crate::platform::discover(&hardware)?;
            let boards = crate::platform::list_boards(&platforms);
            if json {
                outln!("{}", serde_json::to_string_pretty(&boards).unwrap_or_default());
            } else {
                out!("{}", report::listings::boards_table(&boards));
            }
            Ok(exit::OK)
        }
        Command::Cache { action, cache_dir: dir } => {
            let dir = cache_dir(&dir);
            match action {
                CacheAction::Dir => outln!("{}", dir.display()),
                CacheAction::Stats { json } => {
                    let s = Store::open(&dir, cache_max(None)?).map_err(|e| Error::Environment(format!("cache {}: {e}", dir.display())))?;
                    let stats = s.disk_stats().map_err(|e| Error::Environment(e.to_string()))?;
                    if json {
                        outln!("{}", serde_json::to_string_pretty(&stats).unwrap_or_default());
                    } else {
                        out!("{}", report::listings::cache_stats_table(&stats));
                    }
                }
                CacheAction::Clean => {
                    let s = Store::open(&dir, cache_max(None)?).map_err(|e| Error::Environment(format!("cache {}: {e}", dir.display())))?;
                    s.clean().map_err(|e| Error::Environment(e.to_string()))?;
                    outln!("cleaned {}", dir.display());
                }
            }
            Ok(exit::OK)
        }
        Command::Build { common, environment, strict, sketch } => {
            one_board(&common)?;
            if crate::project::is_project(&sketch) {
                return build_project(&common, &sketch, &environment, strict);
            }
            if !environment.is_empty() {
                return Err(Error::usage(format!("-e/--environment needs a PlatformIO project; {} has no platformio.ini", sketch.display())));
            }
            let session = targets::one_firmware_session(&common)?;
            let report = Targets::one(targets::target(&common, vec![sketch])?).build(&session)?;
            if common.only_compiledb {
                outln!("{}", common.out.join(compiledb::FILE_NAME).display());
                return Ok(exit::OK);
            }
            let r = &report.sketches[0];
            let code = if r.status == Status::Ok { exit::OK } else { exit::BUILD_FAILED };
            if r.status != Status::Ok {
                errln!("error: {}", r.first_error.as_deref().unwrap_or("build failed"));
                errln!("log: {}", report::summary::display_path_here(&r.log));
            }
            if common.json {
                outln!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else if r.status == Status::Ok {
                if let (Some(used), Some(max)) = (r.flash_used, r.flash_max) {
                    outln!("Sketch uses {used} bytes ({}%) of program storage space. Maximum is {max} bytes.", used * 100 / max.max(1));
                }
                if let (Some(used), Some(max)) = (r.ram_used, r.ram_max) {
                    outln!(
                        "Global variables use {used} bytes ({}%) of dynamic memory, leaving {} bytes for local variables. Maximum is {max} bytes.",
                        used * 100 / max.max(1),
                        max.saturating_sub(used)
                    );
                }
                if let Some(hex) = r.firmware.get("hex") {
                    outln!("Firmware: {}", hex.display());
                }
            }
            Ok(code)
        }
        Command::Ci { common, lib, project_option, project_conf, environment, strict, src } => {
            let out = std::path::absolute(&common.out).map_err(|e| Error::io(&common.out, e))?;
            let dir = out.join("ci-project");
            let boards = if project_conf.is_some() { Vec::new() } else { common.board.clone() };
            let ci = crate::project::ci::CiRequest { sources: &src, libs: &lib, boards: &boards, options: &project_option, project_conf: project_conf.as_deref() };
            crate::project::ci::stage(&ci, &dir)?;
            build_project(&common, &dir, &environment, strict)
        }
        Command::EmulatorChild(args) => Ok(emulator::simavr::child_main(&args)),
        Command::Upload(args) => crate::upload::upload(&args).map(|(code, _)| code),
        Command::Monitor(args) => crate::upload::monitor::main(&args),
        Command::Deploy { upload, monitor, options } => crate::upload::deploy(&upload, monitor, &options),
        Command::BoardSim(args) => emulator::board_sim::main(&args),
        Command::Run { common, timeout, expect, input, environment, sketch } => {
            one_board(&common)?;
            no_compiledb(&common, "run", "fbuild build --only-compiledb SKETCH")?;
            let input = input.as_deref().map(emulator::check_input).transpose()?;
            let target = targets::one_firmware(&common, &sketch, environment.as_deref())?;
            let session = targets::one_firmware_session(&common)?;
            // The chip before the build: a board simavr cannot run costs no build. The
            // session remembers the loaded board for the build.
            let loaded = session.load(&target, &session.toolchain)?;
            let chip = emulator::Target::from_properties(&loaded.props, &loaded.board.id)?;
            let report = Targets::one(target).build(&session)?;
            let r = &report.sketches[0];
            let Some(firmware) = r.built_firmware().and_then(emulator::Firmware::from_files) else {
                eprintln!("error: {}", r.first_error.as_deref().unwrap_or("build failed"));
                eprintln!("log: {}", r.log.display());
                return Ok(exit::BUILD_FAILED);
            };
            let spec = emulator::RunSpec { duration: timeout, expects: expect, input };
            let runner = session.runner.scope();
            let result = emulator::run(&runner, &chip, &firmware, &spec, emulator::Output::Stream);
            if runner.interrupted() {
                return Err(Error::Interrupted);
            }
            eprintln!("{}", emulator::describe(&result));
            Ok(if result.status.succeeded() { exit::OK } else { exit::RUN_FAILED })
        }
        Command::MergeResults { inputs, output } => {
            report::check_writable(&output)?;
            let merged = report::join::merge(&inputs)?;
            report::write_atomic(&output, merged.to_json().as_bytes())?;
            let t = &merged.report.totals;
            outln!("{} sketches: {} ok, {} failed (from {} results)", t.sketches, t.ok, t.failed, inputs.len());
            outln!("results: {}", output.display());
            Ok(if t.failed == 0 { exit::OK } else { exit::BUILD_FAILED })
        }
        Command::CompileMany { common, framework_jobs, sketch_jobs, results, phases, sketches_from, no_filter, memory_class, compare_to, report_md, sketches, smoke_run, expect, shard, shard_weights } => {
            let mut args = sketches;
            for f in &sketches_from {
                args.extend(read_sketch_list(f)?);
            }
            if args.is_empty() {
                return Err(Error::usage("no sketches given; pass sketch folders, .ino files, folders holding sketches, or --sketches-from FILE"));
            }
            let results_path = results.unwrap_or_else(|| common.out.join("results.json"));
            let phases_path = phases.unwrap_or_else(|| common.out.join("phases.tsv"));
            report::check_writable(&results_path)?;
            report::check_writable(&phases_path)?;
            // Bad comparison input fails before any build work.
            let old = compare_to.as_deref().map(OldResults::load).transpose()?;
            if let Some(p) = &report_md {
                report::check_writable(p)?;
            }
            // PlatformIO project folders build their envs beside the sketches.
            let (projects, args): (Vec<PathBuf>, Vec<PathBuf>) = args.into_iter().partition(|a| crate::project::is_project(a));
            if !projects.is_empty() && shard.is_some() {
                return Err(Error::usage("--shard splits sketches, not PlatformIO projects; give a shard's runner the projects without --shard"));
            }
            let Some(expanded) = targets::shard_sketches(&args, shard, shard_weights.as_deref())? else {
                // More runners than sketches: this one has nothing to do, and says so.
                let shard = shard.expect("only a shard can be empty");
                let empty = crate::shard::empty_results(&common.board.join(","), shard);
                report::write_atomic(&results_path, serde_json::to_string_pretty(&empty).unwrap_or_default().as_bytes())?;
                outln!("shard {shard} holds no sketch");
                outln!("results: {}", results_path.display());
                return Ok(exit::OK);
            };
            let opts = targets::session_options(&common, framework_jobs.unwrap_or(2.min(cores())), sketch_jobs.unwrap_or(cores()))?;
            // Each firmware boots as a step after its link, in the same graph.
            let smoke_run = smoke_run.map(|duration| emulator::RunSpec { duration, expects: expect, input: None });
            let smoke = smoke_run.is_some();
            let session = Session::open(SessionOptions { smoke_run, ..opts })?;
            let base = Target { filter: !no_filter, memory_class, ..targets::target(&common, expanded)? };
            let plan = if !projects.is_empty() {
                targets::with_projects(&session, &base, &common.board, base.sketches.clone(), &projects)?
            } else if common.board.len() > 1 {
                Targets::matrix(&base, &common.board)?
            } else {
                Targets::one(base)
            };
            let mut report = plan.build(&session)?;
            if common.only_compiledb {
                outln!("{}", common.out.join(compiledb::FILE_NAME).display());
                return Ok(exit::OK);
            }
            let runs_ok = report.sketches.iter().filter_map(|r| r.run.as_ref()).all(|r| r.status.succeeded());
            if let Some(old) = &old {
                report::size_delta::compare(&mut report, old);
            }
            let file = report::ResultsFile { report, shard: shard.map(|s| s.to_string()), merged_from: None };
            let json = file.to_json();
            report::write_atomic(&results_path, json.as_bytes())?;
            let report = file.report;
            report::write_atomic(&phases_path, report.phases_tsv().as_bytes())?;
            let cwd = std::env::current_dir().unwrap_or_default();
            if let (Some(p), Some(md)) = (&report_md, report::markdown::render(&report, &cwd)) {
                report::write_atomic(p, md.as_bytes())?;
            }
            let mut summary = if !common.quiet || !report.all_ok() { report::summary(&report, &cwd) } else { String::new() };
            if smoke && (!common.quiet || !runs_ok) {
                summary.push_str(&report::run_summary::run_summary(&report));
            }
            let results_line = format!("results: {}", report::summary::display_path(&results_path, &cwd));
            if common.json {
                // stdout is for the machine: the person reads stderr.
                crate::console::write_stderr(&summary);
                errln!("{results_line}");
                outln!("{json}");
            } else {
                out!("{summary}");
                outln!("{results_line}");
            }
            Ok(if report.all_ok() && runs_ok { exit::OK } else { exit::BUILD_FAILED })
        }
    }
}
