//! `fbuild build SKETCH|PROJECT`: one firmware, or each env of a PlatformIO project.

use std::path::Path;

use super::*;
use crate::error::{exit, Error, Result};

/// The command's work; `cli::run` hands it its parsed arguments.
pub(super) fn main(command: Command) -> Result<i32> {
    let Command::Build { common, environment, strict, sketch } = command else { unreachable!("cli::run dispatches by command") };
    one_board(&common)?;
    if crate::project::is_project(&sketch) {
        return build_project(&common, &sketch, &environment, strict);
    }
    if !environment.is_empty() {
        return Err(Error::usage(format!("-e/--environment needs a PlatformIO project; {} has no platformio.ini", sketch.display())));
    }
    let session = targets::one_firmware_session(&common)?;
    let report = Targets::one(targets::target(&common, vec![sketch])?).build(&session)?;
    if common.only_compiledb {
        outln!("{}", common.out.join(compiledb::FILE_NAME).display());
        return Ok(exit::OK);
    }
    let r = &report.sketches[0];
    let code = if r.status == Status::Ok { exit::OK } else { exit::BUILD_FAILED };
    if r.status != Status::Ok {
        errln!("error: {}", r.first_error.as_deref().unwrap_or("build failed"));
        errln!("log: {}", report::summary::display_path_here(&r.log));
    }
    if common.json {
        outln!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else if r.status == Status::Ok {
        if let (Some(used), Some(max)) = (r.flash_used, r.flash_max) {
            outln!("Sketch uses {used} bytes ({}%) of program storage space. Maximum is {max} bytes.", used * 100 / max.max(1));
        }
        if let (Some(used), Some(max)) = (r.ram_used, r.ram_max) {
            outln!(
                "Global variables use {used} bytes ({}%) of dynamic memory, leaving {} bytes for local variables. Maximum is {max} bytes.",
                used * 100 / max.max(1),
                max.saturating_sub(used)
            );
        }
        if let Some(hex) = r.firmware.get("hex") {
            outln!("Firmware: {}", hex.display());
        }
    }
    Ok(code)
}

/// `fbuild build PROJECT`: each env an ordinary one-sketch target in OUT/ENV, all
/// envs in one graph (as `compile-many PROJECT`), reported env by env.
pub(super) fn build_project(common: &CommonArgs, project: &Path, envs: &[String], strict: bool) -> Result<i32> {
    no_compiledb(common, "a PlatformIO project", "fbuild compile-many --only-compiledb PROJECT")?;
    let out = std::path::absolute(&common.out).map_err(|e| Error::io(&common.out, e))?;
    let builds = crate::project::prepare(project, envs, &out)?;
    if let Some(w) = builds.iter().flat_map(|b| &b.warnings).next().filter(|_| strict) {
        return Err(Error::usage(format!("{w} (--strict); remove it from the env or build without --strict")));
    }
    for w in builds.iter().flat_map(|b| &b.warnings) {
        errln!("warning: {w}; ignored");
    }
    let list = builds.iter().map(|b| targets::env_target(common, b, &out)).collect::<Result<Vec<Target>>>()?;
    let session = targets::one_firmware_session(common)?;
    let reports = crate::pipeline::build(&session, &list)?;
    let mut code = exit::OK;
    for (b, report) in builds.iter().zip(&reports) {
        let r = &report.sketches[0];
        if r.status == Status::Ok {
            let hex = r.firmware.get("hex").map(|p| p.display().to_string()).unwrap_or_default();
            outln!("{}: flash {} bytes, ram {} bytes, firmware {hex}", b.label, r.flash_used.unwrap_or(0), r.ram_used.unwrap_or(0));
        } else {
            code = exit::BUILD_FAILED;
            errln!("error: {}: {}", b.label, r.first_error.as_deref().unwrap_or("build failed"));
            errln!("log: {}", report::summary::display_path_here(&r.log));
        }
    }
    Ok(code)
}
