//! The pipeline driven end to end with no compiler installed: a tiny platform in a
//! temporary folder whose recipes name programs (`fakecc`, `fakear`, `fakeobjcopy`,
//! `fakesize`) that `FakeTools` answers, as ninja's `build_test.cc` drives its build
//! logic through a fake `CommandRunner`. What runs is real (the scheduler, the cache,
//! discovery, planning, the reports); only the processes are stood in for.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::*;
use crate::exec::{display_command, Process, Stdout, Tools};
use crate::plan::Lang;
use crate::report::{LinkSource, Status};

/// A source holding this word fails to compile under `FakeTools`.
const FAIL_MARK: &str = "FAKE_COMPILE_ERROR";
/// The error line a failing fake compile prints (GCC's shape: file:line:col: error:).
const FAKE_ERROR: &str = "error: 'FAKE_COMPILE_ERROR' was not declared in this scope";

/// What a fake command is, by its words.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `--version`, `-E -v -`, `-dM -E` on an empty input.
    Probe,
    /// A discovery preprocessor run (`-E` with a source).
    Preprocess,
    /// A compile of a file of the core folder / of a sketch's build folder.
    CoreCompile(String),
    SketchCompile(String),
    /// `fakear` adding an object (its file name) to core.a.
    Archive(String),
    /// Link, objcopy and size of a project (`A.ino`).
    Link(String),
    Objcopy(String),
    Size(String),
}

#[derive(Default)]
struct Record {
    /// Every command started, in order.
    started: Vec<(Kind, String)>,
    /// "start"/"end" per command, in order, for overlap questions.
    events: Vec<(&'static str, Kind)>,
    /// A core compile / a sketch compile has started (the overlap test's meeting).
    core_compile_started: bool,
    sketch_compile_started: bool,
}

/// A unit-test seam: stands in for the compiler and binutils. It writes the files a
/// command names (`-o FILE` and its `.d` depfile, the archive, the `.elf`/`.hex`)
/// and answers probes and discovery with GCC-like text.
#[derive(Default)]
struct FakeTools {
    record: Mutex<Record>,
    changed: Condvar,
    /// Hold the first core compile until a sketch compile has started, and the first
    /// sketch compile until a core compile has: both then run at once.
    meet: bool,
    /// The folder the `-E -v` probe names as the compiler's own include folder.
    system_dir: PathBuf,
}

/// A fake process: already finished when `spawn` returns.
struct Finished(i32, Vec<u8>, Vec<u8>);

impl Process for Finished {
    fn pid(&self) -> Option<libc::pid_t> {
        None
    }

    fn wait(self: Box<Self>) -> io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
        Ok((ExitStatus::from_raw(self.0 << 8), self.1, self.2))
    }
}

fn value_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn file_name(p: &str) -> String {
    Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

impl FakeTools {
    fn new(system_dir: &Path) -> FakeTools {
        FakeTools { system_dir: system_dir.to_path_buf(), ..Default::default() }
    }

    fn classify(&self, args: &[String]) -> Kind {
        let program = file_name(&args[0]);
        let has = |w: &str| args.iter().any(|a| a == w);
        let source = || args.iter().find(|a| Lang::of(Path::new(a)).is_some() && Path::new(a).is_file()).cloned().unwrap_or_default();
        let project = |p: &str| file_name(p).rsplit_once('.').map(|(stem, _)| stem.to_string()).unwrap_or_default();
        match program.as_str() {
            "fakecc" if has("--version") || has("-dM") || args.last().is_some_and(|a| a == "-") => Kind::Probe,
            "fakecc" if has("-E") => Kind::Preprocess,
            "fakecc" if has("-c") => {
                let src = source();
                if src.contains("/cores/") {
                    Kind::CoreCompile(file_name(&src))
                } else {
                    Kind::SketchCompile(file_name(&src))
                }
            }
            "fakecc" => Kind::Link(project(value_after(args, "-o").unwrap_or_default())),
            "fakear" => Kind::Archive(file_name(args.last().unwrap())),
            "fakeobjcopy" => Kind::Objcopy(project(args.last().unwrap())),
            "fakesize" => Kind::Size(project(args.last().unwrap())),
            // `spawn` refuses every other program before asking.
            _ => unreachable!("{program} is not a fake tool"),
        }
    }

    /// Do what the command would, returning its exit code, stdout and stderr.
    fn answer(&self, kind: &Kind, args: &[String]) -> (i32, String, String) {
        let has = |w: &str| args.iter().any(|a| a == w);
        match kind {
            Kind::Probe if has("--version") => (0, "fakecc (GCC) 12.2.0\nCopyright (C) 2022\n".into(), String::new()),
            Kind::Probe if has("-dM") => (0, "#define __GNUC__ 12\n#define __FAKE__ 1\n".into(), String::new()),
            Kind::Probe => {
                let list = format!("#include <...> search starts here:\n {}\nEnd of search list.\n", self.system_dir.display());
                (0, String::new(), list)
            }
            // Every header is found: the sketches include only the core's.
            Kind::Preprocess => (0, String::new(), String::new()),
            Kind::CoreCompile(_) | Kind::SketchCompile(_) => {
                let source = args.iter().find(|a| Lang::of(Path::new(a)).is_some() && Path::new(a).is_file()).unwrap();
                let text = std::fs::read_to_string(source).unwrap_or_default();
                if text.contains(FAIL_MARK) {
                    return (1, String::new(), format!("{source}:3:5: {FAKE_ERROR}\n"));
                }
                let object = value_after(args, "-o").unwrap();
                write(Path::new(object), &format!("object of {source}\n"));
                if has("-MMD") {
                    write(&crate::cache::objects::depfile_of(Path::new(object)), &format!("{object}: {source}\n"));
                }
                (0, String::new(), String::new())
            }
            Kind::Archive(_) => {
                let archive = &args[args.len() - 2];
                let mut members = std::fs::read_to_string(archive).unwrap_or_default();
                members.push_str(&format!("{}\n", args[args.len() - 1]));
                write(Path::new(archive), &members);
                (0, String::new(), String::new())
            }
            Kind::Link(_) => {
                write(Path::new(value_after(args, "-o").unwrap()), &format!("elf of {}\n", args[2..].join(" ")));
                (0, String::new(), String::new())
            }
            Kind::Objcopy(_) => {
                let elf = std::fs::read_to_string(&args[args.len() - 2]).unwrap_or_default();
                write(Path::new(args.last().unwrap()), &format!(":00000001FF {}\n", elf.len()));
                (0, String::new(), String::new())
            }
            Kind::Size(_) => (0, ".text 900 0\n.data 10 0\n.bss 20 0\n".into(), String::new()),
        }
    }
}

impl Tools for FakeTools {
    fn spawn(&self, args: &[String], _cwd: Option<&Path>, _stdout: Stdout) -> io::Result<Box<dyn Process>> {
        if !self.exists(&args[0]) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let kind = self.classify(args);
        {
            let mut r = self.record.lock().unwrap();
            r.started.push((kind.clone(), display_command(args)));
            r.events.push(("start", kind.clone()));
            let (core, sketch) = (matches!(kind, Kind::CoreCompile(_)), matches!(kind, Kind::SketchCompile(_)));
            let first = (core && !r.core_compile_started) || (sketch && !r.sketch_compile_started);
            r.core_compile_started |= core;
            r.sketch_compile_started |= sketch;
            self.changed.notify_all();
            if self.meet && first {
                // A bound, not a clock the test depends on: without overlap the test fails.
                let (guard, _) = self.changed.wait_timeout_while(r, Duration::from_secs(20), |r| !(r.core_compile_started && r.sketch_compile_started)).unwrap();
                r = guard;
            }
            drop(r);
        }
        let (code, out, err) = self.answer(&kind, args);
        self.record.lock().unwrap().events.push(("end", kind));
        Ok(Box::new(Finished(code, out.into_bytes(), err.into_bytes())))
    }

    fn exists(&self, program: &str) -> bool {
        ["fakecc", "fakear", "fakeobjcopy", "fakesize"].contains(&file_name(program).as_str())
    }
}

/// A platform, a cache and sketches in a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
    sketches: Vec<PathBuf>,
}

impl Fixture {
    /// Sketches named by `names`; those in `failing` do not compile.
    fn new(names: &[&str], failing: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let platform = root.join("hardware/fakevendor/fakearch");
        write(
            &platform.join("boards.txt"),
            "fakeboard.name=Fake Board\nfakeboard.build.mcu=fake1\nfakeboard.build.core=arduino\nfakeboard.build.variant=standard\nfakeboard.build.board=FAKE\nfakeboard.upload.maximum_size=32000\nfakeboard.upload.maximum_data_size=2000\n",
        );
        write(
            &platform.join("platform.txt"),
            r#"name=Fake
version=1.0.0
compiler.path={runtime.platform.path}/bin/
compiler.c.flags=-c -g -Os -MMD
compiler.cpp.flags=-c -g -Os -MMD -std=gnu++17
recipe.c.o.pattern="{compiler.path}fakecc" {compiler.c.flags} -mmcu={build.mcu} -DARDUINO_{build.board} {includes} "{source_file}" -o "{object_file}"
recipe.cpp.o.pattern="{compiler.path}fakecc" {compiler.cpp.flags} -mmcu={build.mcu} -DARDUINO_{build.board} {includes} "{source_file}" -o "{object_file}"
recipe.ar.pattern="{compiler.path}fakear" rcs "{archive_file_path}" "{object_file}"
recipe.c.combine.pattern="{compiler.path}fakecc" -mmcu={build.mcu} -o "{build.path}/{build.project_name}.elf" {object_files} "{build.path}/{archive_file}"
recipe.objcopy.hex.pattern="{compiler.path}fakeobjcopy" -O ihex "{build.path}/{build.project_name}.elf" "{build.path}/{build.project_name}.hex"
recipe.size.pattern="{compiler.path}fakesize" -A "{build.path}/{build.project_name}.elf"
recipe.size.regex=^(?:\.text|\.data)\s+([0-9]+).*
recipe.size.regex.data=^(?:\.data|\.bss)\s+([0-9]+).*
"#,
        );
        // The toolchain identifies a compiler by its file (size, mtime): the fake
        // programs exist as files, never run.
        for tool in ["fakecc", "fakear", "fakeobjcopy", "fakesize"] {
            write(&platform.join("bin").join(tool), "");
        }
        write(&platform.join("cores/arduino/Arduino.h"), "#pragma once\nvoid setup();\nvoid loop();\n");
        write(&platform.join("cores/arduino/main.cpp"), "#include <Arduino.h>\nint main() { setup(); for (;;) loop(); }\n");
        write(&platform.join("cores/arduino/wiring.c"), "unsigned long millis(void) { return 0; }\n");
        write(&platform.join("variants/standard/pins_arduino.h"), "#pragma once\n");
        std::fs::create_dir_all(root.join("sysinclude")).unwrap();
        let sketches = names
            .iter()
            .map(|n| {
                let body = if failing.contains(n) { format!("void setup() {{ {FAIL_MARK}; }}\n") } else { "void setup() {}\n".to_string() };
                let p = root.join("sketches").join(n);
                write(&p.join(format!("{n}.ino")), &format!("{body}void loop() {{}}\n"));
                p
            })
            .collect();
        Fixture { dir, sketches }
    }

    fn tools(&self) -> FakeTools {
        FakeTools::new(&self.dir.path().join("sysinclude"))
    }

    /// The session of a run with `tools` under its runner, the cache in the fixture.
    fn session(&self, tools: &Arc<FakeTools>, framework_jobs: usize, sketch_jobs: usize, cache: bool) -> Session {
        let root = self.dir.path();
        let opts = SessionOptions {
            hardware: vec![root.join("hardware")],
            cache_dir: cache.then(|| root.join("cache")),
            cache_max_bytes: 1 << 30,
            framework_jobs,
            sketch_jobs,
            local_jobs: 2,
            quiet: true,
            // The fake compiler cannot precompile a header, and these tests count its
            // every process; the PCH probe and its use are tested with real compilers (tests/pch.rs).
            no_pch: true,
            ..Default::default()
        };
        Session::open_with_tools(opts, Some(tools.clone() as Arc<dyn Tools>)).expect("the session opens")
    }

    /// The fixture's sketches for its board, into its out folder.
    fn target(&self) -> Target {
        Target { board: "fakevendor:fakearch:fakeboard".into(), sketches: self.sketches.clone(), out: self.dir.path().join("out"), ..Default::default() }
    }

    /// One run of the pipeline over the fixture with `tools` under its runner.
    fn run(&self, tools: &Arc<FakeTools>, framework_jobs: usize, sketch_jobs: usize) -> Report {
        let session = self.session(tools, framework_jobs, sketch_jobs, true);
        build(&session, &[self.target()]).expect("the pipeline runs").pop().expect("one report")
    }
}

fn started(tools: &FakeTools) -> Vec<(Kind, String)> {
    tools.record.lock().unwrap().started.clone()
}

/// How many commands of each kind started (probes and discovery aside).
fn build_commands(tools: &FakeTools) -> BTreeMap<Kind, usize> {
    let mut counts = BTreeMap::new();
    for (k, _) in started(tools).into_iter().filter(|(k, _)| !matches!(k, Kind::Probe | Kind::Preprocess)) {
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
}

fn statuses(r: &Report) -> Vec<(String, Status)> {
    r.sketches.iter().map(|s| (s.name.clone(), s.status)).collect()
}

#[test]
fn a_cold_run_starts_each_command_once_and_a_warm_run_starts_none() {
    let fx = Fixture::new(&["Alpha", "Beta"], &[]);
    let cold_tools = Arc::new(fx.tools());
    let cold = fx.run(&cold_tools, 2, 2);
    assert_eq!(statuses(&cold), vec![("Alpha".into(), Status::Ok), ("Beta".into(), Status::Ok)], "{:#?}", cold.sketches);

    let mut want: Vec<Kind> = ["wiring.c", "main.cpp"].iter().flat_map(|c| [Kind::CoreCompile(c.to_string()), Kind::Archive(format!("{c}.o"))]).collect();
    for n in ["Alpha", "Beta"] {
        let project = format!("{n}.ino");
        want.extend([Kind::SketchCompile(format!("{project}.cpp")), Kind::Link(project.clone()), Kind::Objcopy(project.clone()), Kind::Size(project)]);
    }
    let want: BTreeMap<Kind, usize> = want.into_iter().map(|k| (k, 1)).collect();
    assert_eq!(build_commands(&cold_tools), want, "{:#?}", started(&cold_tools));
    let all = started(&cold_tools);
    let probes: Vec<&String> = all.iter().filter(|(k, _)| *k == Kind::Probe).map(|(_, c)| c).collect();
    assert_eq!(probes.len(), 3, "--version, -E -v and -dM -E, each once: {probes:#?}");
    let mut lines: Vec<&String> = all.iter().map(|(_, c)| c).collect();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), all.len(), "no command runs twice: {all:#?}");
    assert!(all.iter().any(|(k, _)| *k == Kind::Preprocess), "discovery preprocessed the sketches: {all:#?}");
    // Every process the fake saw is in the report's count.
    assert_eq!(cold.totals.tool_processes, all.len());
    assert_eq!((cold.totals.ok, cold.totals.failed, cold.totals.links_run), (2, 0, 2));

    // The archive the link names holds both core objects, in the reference's order.
    let core_a = cold.framework_dir.join("core/core.a");
    let members: Vec<String> = std::fs::read_to_string(&core_a).unwrap().lines().map(file_name).collect();
    assert_eq!(members, vec!["wiring.c.o", "main.cpp.o"]);

    // A link waits for core.a (a sketch's compiles do not: see the overlap test).
    let events = cold_tools.record.lock().unwrap().events.clone();
    let core_archived = events.iter().rposition(|(e, k)| *e == "end" && matches!(k, Kind::Archive(_))).unwrap();
    let first_link = events.iter().position(|(e, k)| *e == "start" && matches!(k, Kind::Link(_))).unwrap();
    assert!(core_archived < first_link, "a link waits for core.a: {events:?}");

    // Warm: the same cache and output folder, and not one process.
    let warm_tools = Arc::new(fx.tools());
    let warm = fx.run(&warm_tools, 2, 2);
    assert_eq!(started(&warm_tools), Vec::new(), "a warm run starts no process");
    assert_eq!(warm.totals.tool_processes, 0);
    assert_eq!(statuses(&warm), statuses(&cold));
    for (w, c) in warm.sketches.iter().zip(&cold.sketches) {
        assert_eq!((w.link, &w.firmware, w.flash_used, w.ram_used), (LinkSource::UpToDate, &c.firmware, c.flash_used, c.ram_used), "{}", w.name);
    }
    assert_eq!(cold.sketches[0].flash_used, Some(910), "the size recipe's regexes read the fake's size output");
}

#[test]
fn a_failing_sketch_fails_alone_with_its_first_error() {
    let fx = Fixture::new(&["Alpha", "Broken", "Gamma"], &["Broken"]);
    let tools = Arc::new(fx.tools());
    let r = fx.run(&tools, 2, 2);
    assert_eq!(
        statuses(&r),
        vec![("Alpha".into(), Status::Ok), ("Broken".into(), Status::Failed), ("Gamma".into(), Status::Ok)],
        "{:#?}",
        r.sketches
    );
    let broken = &r.sketches[1];
    let first = broken.first_error.as_deref().unwrap_or_default();
    assert!(first.contains(FAKE_ERROR) && first.contains("Broken.ino.cpp:3:5"), "{first}");
    assert!(broken.firmware.is_empty(), "no firmware behind a failure: {:?}", broken.firmware);
    assert_eq!((r.totals.ok, r.totals.failed, r.totals.links_run), (2, 1, 2));
    let counts = build_commands(&tools);
    assert_eq!(counts.get(&Kind::Link("Broken.ino".into())), None, "a sketch that did not compile is not linked");
    for ok in ["Alpha.ino", "Gamma.ino"] {
        assert_eq!(counts.get(&Kind::Link(ok.into())), Some(&1), "{counts:?}");
    }
}

#[test]
fn a_sketch_compiles_while_the_core_is_still_compiling() {
    let fx = Fixture::new(&["Alpha", "Beta"], &[]);
    // The first core compile and the first sketch compile each wait for the other to
    // start (whichever the scheduler starts first): with one stage-1 worker the held
    // core compile holds the whole core back, so they meet only if a sketch compile
    // need not wait for the core.
    let tools = Arc::new(FakeTools { meet: true, ..fx.tools() });
    let r = fx.run(&tools, 1, 2);
    assert_eq!((r.totals.ok, r.totals.failed), (2, 0));
    let events = tools.record.lock().unwrap().events.clone();
    let at = |edge: &str, core: bool| {
        events.iter().position(|(e, k)| *e == edge && if core { matches!(k, Kind::CoreCompile(_)) } else { matches!(k, Kind::SketchCompile(_)) }).unwrap()
    };
    assert!(at("start", false) < at("end", true) && at("start", true) < at("end", false), "a sketch compile and a core compile ran at once: {events:?}");
    // framework_jobs 1: core compiles never overlap each other.
    let mut running = 0;
    for (e, k) in &events {
        if matches!(k, Kind::CoreCompile(_)) {
            running += if *e == "start" { 1 } else { -1 };
            assert!(running <= 1, "two core compiles at once with framework_jobs 1: {events:?}");
        }
    }
}

/// A board matrix is one session: one store, one runner (one signal thread), and each
/// distinct compiler identified once however many boards use it. Without a cache, so
/// nothing is remembered between boards but what the session holds: three boards of
/// one `fakecc` start one `--version` and one `-E -v`, and one `-dM` per machine flags.
#[test]
fn a_board_matrix_opens_one_store_and_one_runner_and_probes_each_compiler_once() {
    let f = Fixture::new(&["A", "B"], &[]);
    let boards_txt = f.dir.path().join("hardware/fakevendor/fakearch/boards.txt");
    let mut text = std::fs::read_to_string(&boards_txt).unwrap();
    for (id, mcu) in [("fakeboard2", "fake2"), ("fakeboard3", "fake1")] {
        text.push_str(&text.lines().filter(|l| l.starts_with("fakeboard.")).map(|l| format!("{}\n", l.replacen("fakeboard.", &format!("{id}."), 1).replace("=fake1", &format!("={mcu}")))).collect::<String>());
    }
    std::fs::write(&boards_txt, text).unwrap();
    let tools = Arc::new(f.tools());
    let (runners, stores) = (crate::exec::opened::RUNNERS.with(|n| n.get()), crate::exec::opened::STORES.with(|n| n.get()));
    let session = f.session(&tools, 2, 2, false);
    let targets: Vec<Target> = ["fakeboard", "fakeboard2", "fakeboard3"]
        .iter()
        .map(|b| Target { board: format!("fakevendor:fakearch:{b}"), out: f.dir.path().join("out").join(b), ..f.target() })
        .collect();
    let reports = build(&session, &targets).expect("the pipeline runs");
    assert_eq!(reports.len(), 3);
    for r in &reports {
        assert_eq!(statuses(r), vec![("A".to_string(), Status::Ok), ("B".to_string(), Status::Ok)], "{}", r.board);
    }
    assert_eq!(crate::exec::opened::RUNNERS.with(|n| n.get()) - runners, 1, "one runner for the matrix");
    assert_eq!(crate::exec::opened::STORES.with(|n| n.get()) - stores, 0, "no cache: no store");
    let probes: Vec<String> = started(&tools).into_iter().filter(|(k, _)| *k == Kind::Probe).map(|(_, c)| c).collect();
    let count = |w: &str| probes.iter().filter(|c| c.contains(w)).count();
    assert_eq!((count("--version"), count("-E -v"), count("-dM")), (1, 1, 2), "{probes:#?}");
    assert_eq!(session.toolchain.compilers_identified(), 1);
    // Every process started is in some board's count, none twice.
    let all = started(&tools).len();
    assert_eq!(reports.iter().map(|r| r.totals.tool_processes).sum::<usize>(), all);
}
