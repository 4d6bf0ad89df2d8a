//! `fbuild merge-results`: the shards' results.json joined into one.

use super::*;
use crate::error::{exit, Result};

/// The command's work; `cli::run` hands it its parsed arguments.
pub(super) fn main(command: Command) -> Result<i32> {
    let Command::MergeResults { inputs, output } = command else { unreachable!("cli::run dispatches by command") };
    report::check_writable(&output)?;
    let merged = report::join::merge(&inputs)?;
    report::write_atomic(&output, merged.to_json().as_bytes())?;
    let t = &merged.report.totals;
    outln!("{} sketches: {} ok, {} failed (from {} results)", t.sketches, t.ok, t.failed, inputs.len());
    outln!("results: {}", output.display());
    Ok(if t.failed == 0 { exit::OK } else { exit::BUILD_FAILED })
}
