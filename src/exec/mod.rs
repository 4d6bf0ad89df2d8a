//! Running tools: one place that spawns processes, so interruption can stop them
//! all, `--verbose` can print every command, and tests can count what ran.

pub mod affinity;
pub mod scheduler;
pub mod spawn;

pub use spawn::Stdout;

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
    /// A runner that stops its tools when SIGINT or SIGTERM arrives.
    pub fn new(verbose: bool) -> Runner {
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
        Runner { verbose, interrupted, children, spawned: AtomicUsize::new(0) }
    }

    /// A handle on the same runner (one signal thread, one list of children to stop on
    /// Ctrl-C) that counts its own starts: each build target of a session reports the
    /// tools it started.
    pub fn scope(&self) -> Runner {
        Runner { verbose: self.verbose, interrupted: self.interrupted.clone(), children: self.children.clone(), spawned: AtomicUsize::new(0) }
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
        let child = match self.start(args, cwd, Stdout::Capture) {
            Ok(c) => c,
            Err(text) => return Output { success: false, text, stdout: String::new(), signal: None },
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
        let child = match self.start(args, None, stdout) {
            Ok(c) => c,
            Err(text) => return RawOutput { success: false, stdout_bytes: Vec::new(), stderr: text, signal: None },
        };
        match self.wait(child) {
            Ok((status, out, err)) => RawOutput { success: status.success(), stdout_bytes: out, stderr: String::from_utf8_lossy(&err).into_owned(), signal: signal_of(&status) },
            Err(e) => RawOutput { success: false, stdout_bytes: Vec::new(), stderr: e.to_string(), signal: None },
        }
    }

    /// Spawn a tool in its own process group, dying with fbuild (`spawn.rs`), and
    /// register it for interruption.
    fn start(&self, args: &[String], cwd: Option<&Path>, stdout: Stdout) -> Result<spawn::Child, String> {
        if self.verbose {
            crate::errln!("{}", display_command(args));
        }
        if self.interrupted() {
            return Err("interrupted".into());
        }
        let Some(program) = args.first() else {
            return Err("empty command".into());
        };
        self.spawned.fetch_add(1, Ordering::SeqCst);
        let child = spawn::spawn(args, cwd, stdout).map_err(|e| format!("cannot run {program}: {e}"))?;
        self.children.lock().unwrap().insert(child.pid);
        // A signal may have landed between the check above and registering the child.
        if self.interrupted() {
            unsafe {
                libc::kill(-child.pid, libc::SIGTERM);
            }
        }
        Ok(child)
    }

    /// Wait for a started tool and take it off the interruption list.
    fn wait(&self, child: spawn::Child) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
        let pid = child.pid;
        let result = child.wait_with_output();
        self.children.lock().unwrap().remove(&pid);
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
