//! The seam under the runner: what actually starts a program, and whether one is
//! installed. The runner (`exec/mod.rs`) keeps the accounting, `--verbose` echo and
//! interruption; a `Tools` only starts processes, so unit tests can put a fake one
//! under the whole pipeline (as ninja's `CommandRunner` under `build_test.cc`).

use std::io;
use std::path::Path;
use std::process::ExitStatus;

use super::spawn::{self, Stdout};

/// A started tool: its process id, for interruption, and its end.
pub trait Process: Send {
    /// The process group to stop on Ctrl-C (`None`: nothing to signal, a fake).
    fn pid(&self) -> Option<libc::pid_t>;
    /// Read its stdout (empty when inherited) and stderr to their ends, then reap it.
    fn wait(self: Box<Self>) -> io::Result<(ExitStatus, Vec<u8>, Vec<u8>)>;
}

/// What starts programs: the system (`SystemTools`), or a fake in unit tests.
pub trait Tools: Send + Sync {
    /// Start `args` (the program looked up on `PATH` when it has no `/`) with stdin
    /// from /dev/null, stderr captured, stdout as asked, in `cwd` when given.
    fn spawn(&self, args: &[String], cwd: Option<&Path>, stdout: Stdout) -> io::Result<Box<dyn Process>>;
    /// Whether `program` is installed: a file at that path, or on `PATH` for a bare name.
    fn exists(&self, program: &str) -> bool;
}

/// The real tools: `spawn.rs` and the `PATH` of this process.
pub struct SystemTools;

impl Process for spawn::Child {
    fn pid(&self) -> Option<libc::pid_t> {
        Some(self.pid)
    }

    fn wait(self: Box<Self>) -> io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
        self.wait_with_output()
    }
}

impl Tools for SystemTools {
    fn spawn(&self, args: &[String], cwd: Option<&Path>, stdout: Stdout) -> io::Result<Box<dyn Process>> {
        Ok(Box::new(spawn::spawn(args, cwd, stdout)?))
    }

    fn exists(&self, program: &str) -> bool {
        let p = Path::new(program);
        if p.components().count() > 1 {
            return p.is_file();
        }
        std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file())).unwrap_or(false)
    }
}
