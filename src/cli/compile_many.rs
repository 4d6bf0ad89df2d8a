//! `fbuild compile-many`: many sketches, one or more boards, one process.

use std::path::{Path, PathBuf};

use super::*;
use crate::error::{exit, Error, Result};

/// The command's work; `cli::run` hands it its parsed arguments.
pub(super) fn main(command: Command) -> Result<i32> {
    let Command::CompileMany { common, framework_jobs, sketch_jobs, results, phases, sketches_from, no_filter, memory_class, compare_to, report_md, sketches, smoke_run, expect, shard, shard_weights } = command else { unreachable!("cli::run dispatches by command") };
    let mut args = sketches;
    for f in &sketches_from {
        args.extend(read_sketch_list(f)?);
    }
    if args.is_empty() {
        return Err(Error::usage("no sketches given; pass sketch folders, .ino files, folders holding sketches, or --sketches-from FILE"));
    }
    let results_path = results.unwrap_or_else(|| common.out.join("results.json"));
    let phases_path = phases.unwrap_or_else(|| common.out.join("phases.tsv"));
    report::check_writable(&results_path)?;
    report::check_writable(&phases_path)?;
    // Bad comparison input fails before any build work.
    let old = compare_to.as_deref().map(OldResults::load).transpose()?;
    if let Some(p) = &report_md {
        report::check_writable(p)?;
    }
    // PlatformIO project folders build their envs beside the sketches.
    let (projects, args): (Vec<PathBuf>, Vec<PathBuf>) = args.into_iter().partition(|a| crate::project::is_project(a));
    if !projects.is_empty() && shard.is_some() {
        return Err(Error::usage("--shard splits sketches, not PlatformIO projects; give a shard's runner the projects without --shard"));
    }
    let Some(expanded) = targets::shard_sketches(&args, shard, shard_weights.as_deref())? else {
        // More runners than sketches: this one has nothing to do, and says so.
        let shard = shard.expect("only a shard can be empty");
        let empty = crate::targets::shard::empty_results(&common.board.join(","), shard);
        report::write_atomic(&results_path, serde_json::to_string_pretty(&empty).unwrap_or_default().as_bytes())?;
        outln!("shard {shard} holds no sketch");
        outln!("results: {}", results_path.display());
        return Ok(exit::OK);
    };
    let opts = targets::session_options(&common, framework_jobs.unwrap_or(2.min(cores())), sketch_jobs.unwrap_or(cores()))?;
    // Each firmware boots as a step after its link, in the same graph.
    let smoke_run = smoke_run.map(|duration| emulator::RunSpec { duration, expects: expect, input: None });
    let smoke = smoke_run.is_some();
    let session = Session::open(SessionOptions { smoke_run, ..opts })?;
    let base = Target { filter: !no_filter, memory_class, ..targets::target(&common, expanded)? };
    let plan = if !projects.is_empty() {
        targets::with_projects(&session, &base, &common.board, base.sketches.clone(), &projects)?
    } else if common.board.len() > 1 {
        Targets::matrix(&base, &common.board)?
    } else {
        Targets::one(base)
    };
    let mut report = plan.build(&session)?;
    if common.only_compiledb {
        outln!("{}", common.out.join(compiledb::FILE_NAME).display());
        return Ok(exit::OK);
    }
    let runs_ok = report.sketches.iter().filter_map(|r| r.run.as_ref()).all(|r| r.status.succeeded());
    if let Some(old) = &old {
        report::size_delta::compare(&mut report, old);
    }
    let file = report::ResultsFile { report, shard: shard.map(|s| s.to_string()), merged_from: None };
    let json = file.to_json();
    report::write_atomic(&results_path, json.as_bytes())?;
    let report = file.report;
    report::write_atomic(&phases_path, report.phases_tsv().as_bytes())?;
    let cwd = std::env::current_dir().unwrap_or_default();
    if let (Some(p), Some(md)) = (&report_md, report::markdown::render(&report, &cwd)) {
        report::write_atomic(p, md.as_bytes())?;
    }
    let mut summary = if !common.quiet || !report.all_ok() { report::summary(&report, &cwd) } else { String::new() };
    if smoke && (!common.quiet || !runs_ok) {
        summary.push_str(&report::run_summary::run_summary(&report));
    }
    let results_line = format!("results: {}", report::summary::display_path(&results_path, &cwd));
    if common.json {
        // stdout is for the machine: the person reads stderr.
        crate::report::console::write_stderr(&summary);
        errln!("{results_line}");
        outln!("{json}");
    } else {
        out!("{summary}");
        outln!("{results_line}");
    }
    Ok(if report.all_ok() && runs_ok { exit::OK } else { exit::BUILD_FAILED })
}

fn read_sketch_list(path: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!("--sketches-from {}: {e}; pass a readable file with one sketch path per line", path.display()))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect())
}
