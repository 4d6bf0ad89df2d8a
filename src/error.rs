//! One error type for the whole tool, so every failure maps to a documented exit code.

use std::path::PathBuf;

/// Exit codes, documented in docs/reference/exit-codes.md.
pub mod exit {
    /// Every sketch built.
    pub const OK: i32 = 0;
    /// At least one sketch failed to build (its result says why).
    pub const BUILD_FAILED: i32 = 1;
    /// `fbuild run` / `--smoke-run`: a firmware failed an expectation, crashed or halted.
    pub const RUN_FAILED: i32 = 1;
    /// Unusable input: bad flags, unknown board, missing sketch, broken platform.
    pub const USAGE: i32 = 2;
    /// The environment failed under us: unwritable output, I/O errors.
    pub const ENVIRONMENT: i32 = 3;
    /// Interrupted by SIGINT/SIGTERM (128 + 2, as shells report it).
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something that cannot work; the message names the fix.
    #[error("{0}")]
    Usage(String),
    /// A file we must read or write failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something outside our control stopped the run (output folder vanished, ...).
    #[error("{0}")]
    Environment(String),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Io { .. } | Error::Environment(_) => exit::ENVIRONMENT,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
