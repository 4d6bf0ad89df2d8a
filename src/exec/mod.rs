//! Running tools: one place that spawns processes, so interruption can stop them
//! all, `--verbose` can print every command, and tests can count what ran.

pub mod affinity;
pub mod scheduler;
pub mod spawn;
pub mod tools;
pub mod launcher;

pub use spawn::Stdout;
pub use tools::{Process, SystemTools, Tools};

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct Output {
    pub success: bool,
    /// stdout then stderr, as a user would read them in a log.
    pub text: String,
    pub stdout: String,
    /// "killed by signal 9 (SIGKILL)" when the tool died from a signal.
    pub signal: Option<String>,
}

pub struct Runner {
    pub verbose: bool,
    interrupted: Arc<AtomicBool>,
    children: Arc<Mutex<HashSet<libc::pid_t>>>,
    spawned: AtomicUsize,
    /// What actually starts a program (the system's, or a unit test's fake).
    tools: Arc<dyn Tools>,
}

/// Why the runner did not start a tool.
enum Refused {
    Interrupted,
    Empty,
    CannotRun(String, std::io::Error),
}

impl Refused {
    /// As the runner's outputs have always worded it.
    fn text(&self) -> String {
        match self {
            Refused::Interrupted => "interrupted".into(),
            Refused::Empty => "empty command".into(),
            Refused::CannotRun(program, e) => format!("cannot run {program}: {e}"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

impl Runner {
    /// A runner of the system's tools that stops them when SIGINT or SIGTERM arrives.
    pub fn new(verbose: bool) -> Runner {
        Runner::with_tools(Arc::new(SystemTools), verbose)
    }

    /// `new`, starting programs through `tools` (a fake in unit tests).
    pub fn with_tools(tools: Arc<dyn Tools>, verbose: bool) -> Runner {
        #[cfg(test)]
        opened::RUNNERS.with(|n| n.set(n.get() + 1));
        let interrupted = Arc::new(AtomicBool::new(false));
        let children: Arc<Mutex<HashSet<libc::pid_t>>> = Arc::default();
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM]) {
            let flag = interrupted.clone();
            let kids = children.clone();
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    flag.store(true, Ordering::SeqCst);
                    for &pid in kids.lock().unwrap().iter() {
                        // Each tool leads its own process group: stop it and its children.
                        unsafe {
                            libc::kill(-pid, libc::SIGTERM);
                        }
                    }
                }
            });
        }
        Runner { verbose, interrupted, children, spawned: AtomicUsize::new(0), tools }
    }

    /// Whether `program` is installed (a path, or a name on `PATH`).
    pub fn tool_exists(&self, program: &str) -> bool {
        self.tools.exists(program)
    }

    /// A handle on the same runner (one signal thread, one list of children to stop on
    /// Ctrl-C) that counts its own starts: each build target of a session reports the
    /// tools it started.
    pub fn scope(&self) -> Runner {
        Runner { verbose: self.verbose, interrupted: self.interrupted.clone(), children: self.children.clone(), spawned: AtomicUsize::new(0), tools: self.tools.clone() }
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Tool processes started so far (for results.json and the no-op tests).
    pub fn spawned(&self) -> usize {
        self.spawned.load(Ordering::SeqCst)
    }

    pub fn run(&self, args: &[String], cwd: Option<&Path>) -> Output {
        let program = args.first().cloned().unwrap_or_default();
        let child = match self.start(args, cwd, Stdout::Capture, true) {
            Ok(c) => c,
            Err(r) => return Output { success: false, text: r.text(), stdout: String::new(), signal: None },
        };
        match self.wait(child) {
            Ok((status, out, err)) => {
                let stdout = String::from_utf8_lossy(&out).into_owned();
                let mut text = stdout.clone();
                text.push_str(&String::from_utf8_lossy(&err));
                let signal = signal_of(&status);
                if let Some(s) = &signal {
                    text.push_str(&format!("{program}: {s}\n"));
                }
                Output { success: status.success(), text, stdout, signal }
            }
            Err(e) => Output { success: false, text: format!("{program}: {e}"), stdout: String::new(), signal: None },
        }
    }

    /// Run a tool whose stdout is inherited (to stream it) or captured (to keep its
    /// exact bytes); stderr is always captured.
    pub fn run_with_stdout(&self, args: &[String], stdout: Stdout) -> RawOutput {
        let child = match self.start(args, None, stdout, true) {
            Ok(c) => c,
            Err(r) => return RawOutput { success: false, stdout_bytes: Vec::new(), stderr: r.text(), signal: None },
        };
        self.raw_output(child)
    }

    /// Run a toolchain probe (`--version`, `-E -v`, `-dM -E`), stdout captured:
    /// echoed with `--verbose` and stopped by Ctrl-C like any tool, but not counted in
    /// `spawned`, because the toolchain counts its probes itself and the run adds them
    /// to `tool_processes` only when it built something (a run whose every sketch was
    /// filtered out reports 0, tests/filter.rs). `Err`: not started, with the kind
    /// `Interrupted` after Ctrl-C.
    pub fn run_probe(&self, args: &[String]) -> std::io::Result<RawOutput> {
        use std::io::{Error, ErrorKind};
        match self.start(args, None, Stdout::Capture, false) {
            Ok(child) => Ok(self.raw_output(child)),
            Err(Refused::Interrupted) => Err(Error::new(ErrorKind::Interrupted, "interrupted")),
            Err(Refused::Empty) => Err(Error::new(ErrorKind::InvalidInput, "empty command")),
            Err(Refused::CannotRun(_, e)) => Err(e),
        }
    }

    fn raw_output(&self, child: Box<dyn Process>) -> RawOutput {
        match self.wait(child) {
            Ok((status, out, err)) => RawOutput { success: status.success(), stdout_bytes: out, stderr: String::from_utf8_lossy(&err).into_owned(), signal: signal_of(&status) },
            Err(e) => RawOutput { success: false, stdout_bytes: Vec::new(), stderr: e.to_string(), signal: None },
        }
    }

    /// Start a tool through `tools` (the system's: in its own process group, dying
    /// with fbuild, see `spawn.rs`) and register it for interruption; `counted` says
    /// whether it adds to `spawned`.
    fn start(&self, args: &[String], cwd: Option<&Path>, stdout: Stdout, counted: bool) -> Result<Box<dyn Process>, Refused> {
        if self.verbose {
            crate::errln!("{}", display_command(args));
        }
        if self.interrupted() {
            return Err(Refused::Interrupted);
        }
        let Some(program) = args.first() else {
            return Err(Refused::Empty);
        };
        if counted {
            self.spawned.fetch_add(1, Ordering::SeqCst);
        }
        let child = self.tools.spawn(args, cwd, stdout).map_err(|e| Refused::CannotRun(program.clone(), e))?;
        if let Some(pid) = child.pid() {
            self.children.lock().unwrap().insert(pid);
            // A signal may have landed between the check above and registering the child.
            if self.interrupted() {
                unsafe {
                    libc::kill(-pid, libc::SIGTERM);
                }
            }
        }
        Ok(child)
    }

    /// Wait for a started tool and take it off the interruption list.
    fn wait(&self, child: Box<dyn Process>) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
        let pid = child.pid();
        let result = child.wait();
        if let Some(pid) = pid {
            self.children.lock().unwrap().remove(&pid);
        }
        result
    }
}

/// What the calling thread opened, for the tests that count them (a session opens one
/// runner and one store however many targets it builds).
#[cfg(test)]
pub(crate) mod opened {
    use std::cell::Cell;
    thread_local! {
        pub(crate) static RUNNERS: Cell<usize> = const { Cell::new(0) };
        pub(crate) static STORES: Cell<usize> = const { Cell::new(0) };
    }
}

/// What a tool run with [`Runner::run_with_stdout`] left.
#[derive(Debug)]
pub struct RawOutput {
    pub success: bool,
    /// Exact bytes (empty when stdout was inherited).
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    pub signal: Option<String>,
}

fn signal_of(status: &std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    status.signal().map(|s| format!("killed by signal {s} ({})", signal_name(s)))
}

/// A command as a shell would accept it back, for logs and `--verbose`.
pub fn display_command(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c)) {
                a.clone()
            } else {
                format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// A unit-test seam: answers every program with its own words on stdout,
    /// "installed" only for `known`.
    struct Echo;

    struct Done(Vec<u8>);

    impl Process for Done {
        fn pid(&self) -> Option<libc::pid_t> {
            None
        }

        fn wait(self: Box<Self>) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
            Ok((std::process::ExitStatus::from_raw(0), self.0, Vec::new()))
        }
    }

    impl Tools for Echo {
        fn spawn(&self, args: &[String], _: Option<&Path>, _: Stdout) -> std::io::Result<Box<dyn Process>> {
            match args[0].as_str() {
                "known" => Ok(Box::new(Done(args.join(" ").into_bytes()))),
                _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            }
        }

        fn exists(&self, program: &str) -> bool {
            program == "known"
        }
    }

    #[test]
    fn the_runner_starts_through_its_tools_and_counts_all_but_probes() {
        let runner = Runner::with_tools(Arc::new(Echo), false);
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let out = runner.run(&words(&["known", "a"]), None);
        assert!(out.success && out.stdout == "known a", "{out:?}");
        assert_eq!(runner.run_probe(&words(&["known", "--version"])).unwrap().stdout_bytes, b"known --version");
        assert_eq!(runner.spawned(), 1, "a probe is counted by the toolchain, not here");
        let missing = runner.run(&words(&["unknown"]), None);
        assert!(!missing.success && missing.text.starts_with("cannot run unknown: "), "{missing:?}");
        assert_eq!(runner.run_probe(&words(&["unknown"])).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert_eq!(runner.spawned(), 2, "a start tried counts, as before the seam");
        assert!(runner.tool_exists("known") && !runner.tool_exists("unknown"));
    }
}
