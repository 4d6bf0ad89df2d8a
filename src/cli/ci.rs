//! `fbuild ci`: `pio ci` as a PlatformIO project staged in OUT/ci-project, then built.

use super::build::build_project;
use super::*;
use crate::error::{Error, Result};

/// The command's work; `cli::run` hands it its parsed arguments.
pub(super) fn main(command: Command) -> Result<i32> {
    let Command::Ci { common, lib, project_option, project_conf, environment, strict, src } = command else { unreachable!("cli::run dispatches by command") };
    let out = std::path::absolute(&common.out).map_err(|e| Error::io(&common.out, e))?;
    let dir = out.join("ci-project");
    let boards = if project_conf.is_some() { Vec::new() } else { common.board.clone() };
    let ci = crate::project::ci::CiRequest { sources: &src, libs: &lib, boards: &boards, options: &project_option, project_conf: project_conf.as_deref() };
    crate::project::ci::stage(&ci, &dir)?;
    build_project(&common, &dir, &environment, strict)
}
