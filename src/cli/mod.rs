//! Command-line interface: the flags, documented where they are defined, and the
//! dispatch to one file per command.

mod boards;
mod build;
mod cache;
mod ci;
mod compile_many;
mod merge_results;
mod run;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::emulator;
use crate::error::{Error, Result};
use crate::plan::compiledb;
use crate::report::size_delta::OldResults;
use crate::{errln, out, outln};
use crate::pipeline::{Session, SessionOptions, Target};
use crate::report::{self, Status};
use crate::cache::store::{self, Store};
use crate::targets::{self, cache_dir, cache_max, cores, Targets};

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
        #[arg(long, value_name = "K/N", value_parser = crate::targets::shard::parse)]
        shard: Option<crate::targets::shard::Shard>,
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
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::arduino::properties::parse_assignment)]
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
    /// Compile without a precompiled Arduino.h. By default, where the compiler
    /// uses one (probed once per compiler and flags: arm-none-eabi-gcc yes, avr-gcc 5.4 no),
    /// a run with three or more sketches to build makes OUT/framework/<board>/pch/*/Arduino.h.gch
    /// and each sketch starting with `#include <Arduino.h>` loads it instead of parsing the
    /// core's headers again (core and library sources that start so too, when 5 or more
    /// compile): the same firmware; cache keys and compile_commands.json keep the
    /// platform's command.
    #[arg(long)]
    pub no_pch: bool,
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


fn parse_memory_class(s: &str) -> std::result::Result<crate::filter::MemoryClass, String> {
    crate::filter::MemoryClass::parse(s).ok_or_else(|| "expected tiny, low, large or huge".to_string())
}

fn parse_size_arg(s: &str) -> std::result::Result<u64, String> {
    store::parse_size(s).ok_or_else(|| "expected a size like 5G, 500M or 1048576".to_string())
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


/// Run a parsed command line; returns the process exit code. Each command's work is
/// in its own file.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        command @ Command::Boards { .. } => boards::main(command),
        command @ Command::Cache { .. } => cache::main(command),
        command @ Command::Build { .. } => build::main(command),
        command @ Command::Ci { .. } => ci::main(command),
        Command::EmulatorChild(args) => Ok(emulator::simavr::child_main(&args)),
        Command::Upload(args) => crate::upload::upload(&args).map(|(code, _)| code),
        Command::Monitor(args) => crate::upload::monitor::main(&args),
        Command::Deploy { upload, monitor, options } => crate::upload::deploy(&upload, monitor, &options),
        Command::BoardSim(args) => emulator::board_sim::main(&args),
        command @ Command::Run { .. } => run::main(command),
        command @ Command::MergeResults { .. } => merge_results::main(command),
        command @ Command::CompileMany { .. } => compile_many::main(command),
    }
}
