//! PlatformIO's AVR board ids, mapped onto the installed Arduino AVR core's boards.
//! Facts read from PlatformIO's atmelavr `boards/*.json` (mcu, clock, flash limit);
//! the FQBN picks the same variant and `-DARDUINO_AVR_*` define from boards.txt.

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct PioBoard {
    /// PlatformIO's id (`board = ...`).
    pub id: &'static str,
    /// The Arduino AVR board (with menu options) that compiles the same way.
    pub fqbn: &'static str,
    pub mcu: &'static str,
    pub f_cpu: &'static str,
    /// PlatformIO's `upload.maximum_size` (flash for the sketch).
    pub maximum_size: u64,
}

const fn b(id: &'static str, fqbn: &'static str, mcu: &'static str, f_cpu: &'static str, maximum_size: u64) -> PioBoard {
    PioBoard { id, fqbn, mcu, f_cpu, maximum_size }
}

pub const BOARDS: &[PioBoard] = &[
    b("uno", "arduino:avr:uno", "atmega328p", "16000000L", 32256),
    b("megaatmega2560", "arduino:avr:mega:cpu=atmega2560", "atmega2560", "16000000L", 253952),
    b("megaatmega1280", "arduino:avr:mega:cpu=atmega1280", "atmega1280", "16000000L", 126976),
    b("leonardo", "arduino:avr:leonardo", "atmega32u4", "16000000L", 28672),
    b("micro", "arduino:avr:micro", "atmega32u4", "16000000L", 28672),
    b("yun", "arduino:avr:yun", "atmega32u4", "16000000L", 28672),
    b("nanoatmega328", "arduino:avr:nano:cpu=atmega328old", "atmega328p", "16000000L", 30720),
    b("nanoatmega328new", "arduino:avr:nano:cpu=atmega328", "atmega328p", "16000000L", 30720),
    b("nanoatmega168", "arduino:avr:nano:cpu=atmega168", "atmega168", "16000000L", 14336),
    b("pro8MHzatmega328", "arduino:avr:pro:cpu=8MHzatmega328", "atmega328p", "8000000L", 30720),
    b("pro16MHzatmega328", "arduino:avr:pro:cpu=16MHzatmega328", "atmega328p", "16000000L", 30720),
    b("diecimilaatmega328", "arduino:avr:diecimila:cpu=atmega328", "atmega328p", "16000000L", 30720),
    b("ethernet", "arduino:avr:ethernet", "atmega328p", "16000000L", 32256),
    b("fio", "arduino:avr:fio", "atmega328p", "8000000L", 30720),
];

/// Look up a PlatformIO board id; an unknown one lists the closest ids we know.
pub fn find(id: &str) -> Result<&'static PioBoard> {
    if let Some(board) = BOARDS.iter().find(|b| b.id == id) {
        return Ok(board);
    }
    let mut close: Vec<(f64, &str)> =
        BOARDS.iter().map(|b| (strsim::jaro_winkler(&id.to_lowercase(), &b.id.to_lowercase()), b.id)).collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0));
    let names: Vec<&str> = close.iter().take(3).map(|(_, n)| *n).collect();
    Err(Error::usage(format!(
        "unknown PlatformIO board `{id}`; close ones: {} (fbuild knows the AVR boards of PlatformIO's atmelavr platform)",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_and_close_suggestions() {
        assert_eq!(find("megaatmega2560").unwrap().fqbn, "arduino:avr:mega:cpu=atmega2560");
        assert_eq!(find("pro8MHzatmega328").unwrap().f_cpu, "8000000L");
        let e = find("nanoatmega32").unwrap_err().to_string();
        assert!(e.contains("unknown PlatformIO board `nanoatmega32`") && e.contains("nanoatmega328"), "{e}");
    }
}
