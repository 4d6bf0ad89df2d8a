//! `fbuild boards`: the installed boards with their flash and RAM.

use super::*;
use crate::error::{exit, Result};

/// The command's work; `cli::run` hands it its parsed arguments.
pub(super) fn main(command: Command) -> Result<i32> {
    let Command::Boards { hardware, json } = command else { unreachable!("cli::run dispatches by command") };
    let platforms = crate::arduino::platform::discover(&hardware)?;
    let boards = crate::arduino::platform::list_boards(&platforms);
    if json {
        outln!("{}", serde_json::to_string_pretty(&boards).unwrap_or_default());
    } else {
        out!("{}", report::listings::boards_table(&boards));
    }
    Ok(exit::OK)
}
