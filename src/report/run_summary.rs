//! The lines compile-many prints after `--smoke-run`: each failed run, then a count
//! by outcome and the simulated and wall seconds.

use super::{Report, SketchResult};
use crate::emulator::{status_name, RunResult, RunStatus};

/// The lines compile-many prints after a smoke run: failed runs, then a count.
pub fn run_summary(report: &Report) -> String {
    let runs: Vec<(&SketchResult, &RunResult)> = report.sketches.iter().filter_map(|s| Some((s, s.run.as_ref()?))).collect();
    let mut s = String::new();
    let failed: Vec<_> = runs.iter().filter(|(_, r)| !r.status.succeeded()).collect();
    if !failed.is_empty() {
        s.push_str("Failed runs:\n");
        for (sk, r) in &failed {
            s.push_str(&format!("  {}\n    {}: {}\n", sk.path.display(), status_name(r.status), r.reason.as_deref().unwrap_or("")));
        }
    }
    let count = |st: RunStatus| runs.iter().filter(|(_, r)| r.status == st).count();
    let simulated: f64 = runs.iter().map(|(_, r)| r.simulated_seconds).sum();
    let wall = report.phases.iter().find(|p| p.name == "smoke_run").map(|p| p.seconds).unwrap_or(0.0);
    s.push_str(&format!(
        "{} runs: {} passed, {} timeout, {} failed, {} crashed, {} halted | {:.1} s simulated in {:.2} s wall ({:.1} simulated s per wall s)\n",
        runs.len(),
        count(RunStatus::Passed),
        count(RunStatus::Timeout),
        count(RunStatus::Failed),
        count(RunStatus::Crashed),
        count(RunStatus::Halted),
        simulated,
        wall,
        if wall > 0.0 { simulated / wall } else { 0.0 }
    ));
    s
}

