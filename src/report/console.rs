//! Writing to stdout and stderr without panicking when the reader has gone.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe (`fbuild boards | head -1`)
//! fails with `BrokenPipe` and `println!` panics on it. Here a closed stdout ends the
//! process the way a classic Unix tool ends: quietly, killed by SIGPIPE, so the shell
//! sees the pipe's status (141). SIGPIPE stays ignored during the run itself, so a tool
//! or socket closing early is an error we handle, never a sudden death.

use std::io::Write;

/// Print to stdout, like `print!`; a closed pipe ends the process quietly.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::report::console::write_stdout(&format!($($arg)*)) };
}

/// Print a line to stdout, like `println!`; a closed pipe ends the process quietly.
#[macro_export]
macro_rules! outln {
    () => { $crate::report::console::write_stdout("\n") };
    ($($arg:tt)*) => { $crate::report::console::write_stdout(&format!("{}\n", format_args!($($arg)*))) };
}

/// Print a line to stderr, like `eprintln!`, but never panic: a closed stderr must not
/// stop a build whose results still go to results.json.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::report::console::write_stderr(&format!("{}\n", format_args!($($arg)*))) };
}

pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        drop(out);
        fail_stdout(e);
    }
}

pub fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn fail_stdout(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        exit_broken_pipe();
    }
    write_stderr(&format!("error: cannot write to standard output: {e}; check where it is redirected\n"));
    std::process::exit(crate::error::exit::ENVIRONMENT);
}

/// End as if SIGPIPE had killed us, which is what the shell expects of a pipeline
/// stage whose reader left; 141 (128 + SIGPIPE) should the signal not end us.
pub fn exit_broken_pipe() -> ! {
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}
