//! `fbuild cache dir|stats|clean`: the local cache folder.

use super::*;
use crate::error::{exit, Error, Result};

/// The command's work; `cli::run` hands it its parsed arguments.
pub(super) fn main(command: Command) -> Result<i32> {
    let Command::Cache { action, cache_dir: dir } = command else { unreachable!("cli::run dispatches by command") };
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
