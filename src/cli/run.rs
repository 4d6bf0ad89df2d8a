//! `fbuild run`: build one firmware and boot it in simavr.

use super::*;
use crate::error::{exit, Error, Result};

/// The command's work; `cli::run` hands it its parsed arguments.
pub(super) fn main(command: Command) -> Result<i32> {
    let Command::Run { common, timeout, expect, input, environment, sketch } = command else { unreachable!("cli::run dispatches by command") };
    one_board(&common)?;
    no_compiledb(&common, "run", "fbuild build --only-compiledb SKETCH")?;
    let input = input.as_deref().map(emulator::check_input).transpose()?;
    let target = targets::one_firmware(&common, &sketch, environment.as_deref())?;
    let session = targets::one_firmware_session(&common)?;
    // The chip before the build: a board simavr cannot run costs no build. The
    // session remembers the loaded board for the build.
    let loaded = session.load(&target, &session.toolchain)?;
    let chip = emulator::Target::from_properties(&loaded.props, &loaded.board.id)?;
    let report = Targets::one(target).build(&session)?;
    let r = &report.sketches[0];
    let Some(firmware) = r.built_firmware().and_then(emulator::Firmware::from_files) else {
        eprintln!("error: {}", r.first_error.as_deref().unwrap_or("build failed"));
        eprintln!("log: {}", r.log.display());
        return Ok(exit::BUILD_FAILED);
    };
    let spec = emulator::RunSpec { duration: timeout, expects: expect, input };
    let runner = session.runner.scope();
    let result = emulator::run(&runner, &chip, &firmware, &spec, emulator::Output::Stream);
    if runner.interrupted() {
        return Err(Error::Interrupted);
    }
    eprintln!("{}", emulator::describe(&result));
    Ok(if result.status.succeeded() { exit::OK } else { exit::RUN_FAILED })
}
