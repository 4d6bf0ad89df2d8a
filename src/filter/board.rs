//! What a filter can ask about the board being built: its memory class, platform,
//! board id and target (MCU and the macros a compile sees).

/// Ordered: a sketch that needs `low` builds on `large` boards too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemoryClass {
    Tiny,
    Low,
    Large,
    Huge,
}

impl MemoryClass {
    pub fn parse(name: &str) -> Option<MemoryClass> {
        match name.to_ascii_lowercase().as_str() {
            "tiny" => Some(MemoryClass::Tiny),
            "low" => Some(MemoryClass::Low),
            // `high` is what older FastLED examples call it.
            "large" | "high" => Some(MemoryClass::Large),
            "huge" => Some(MemoryClass::Huge),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemoryClass::Tiny => "tiny",
            MemoryClass::Low => "low",
            MemoryClass::Large => "large",
            MemoryClass::Huge => "huge",
        }
    }

    /// A board's class from its architecture and RAM (`upload.maximum_data_size`):
    /// at most 1 KiB is tiny, the 8-bit AVR architectures are low, 256 KiB or more
    /// is huge, anything else large.
    pub fn of(arch: &str, ram: Option<u64>) -> MemoryClass {
        match ram {
            Some(r) if r <= 1024 => MemoryClass::Tiny,
            _ if arch == "avr" || arch == "megaavr" => MemoryClass::Low,
            Some(r) if r >= 256 * 1024 => MemoryClass::Huge,
            _ => MemoryClass::Large,
        }
    }
}

/// PlatformIO's platform names for Arduino architecture folders, accepted as
/// aliases (`platform is atmelavr` on an `avr` board).
const PLATFORMIO_NAMES: &[(&str, &str)] = &[
    ("avr", "atmelavr"),
    ("megaavr", "atmelmegaavr"),
    ("sam", "atmelsam"),
    ("samd", "atmelsam"),
    ("esp32", "espressif32"),
    ("esp8266", "espressif8266"),
    ("stm32", "ststm32"),
    ("rp2040", "raspberrypi"),
    ("mbed_rp2040", "raspberrypi"),
    ("nrf52", "nordicnrf52"),
    ("renesas_uno", "renesas-ra"),
];

/// The plain facts a board's filter answers come from (unit tests build these).
#[derive(Debug, Clone)]
pub struct BoardSpec<'a> {
    pub id: &'a str,
    pub fqbn: &'a str,
    pub vendor: &'a str,
    pub arch: &'a str,
    pub mcu: &'a str,
    pub ram: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct BoardFacts {
    pub id: String,
    pub memory: MemoryClass,
    /// Board id, full FQBN, FQBN without menu options.
    pub(super) boards: Vec<String>,
    /// Architecture folder and its PlatformIO names.
    pub(super) platforms: Vec<String>,
    /// MCU, and every macro a compile sees as `NAME` and `NAME=VALUE`.
    pub(super) targets: Vec<String>,
    mcu: String,
}

impl BoardFacts {
    pub fn new<N: AsRef<str>, V: AsRef<str>>(spec: BoardSpec, macros: impl IntoIterator<Item = (N, V)>, memory: Option<MemoryClass>) -> BoardFacts {
        let mut boards = vec![spec.id.to_string(), spec.fqbn.to_string()];
        let plain_fqbn = spec.fqbn.split(':').take(3).collect::<Vec<_>>().join(":");
        if plain_fqbn != spec.fqbn {
            boards.push(plain_fqbn);
        }
        let mut platforms = vec![spec.arch.to_string()];
        platforms.extend(PLATFORMIO_NAMES.iter().filter(|(a, _)| *a == spec.arch).map(|(_, p)| p.to_string()));
        if spec.vendor == "teensy" {
            platforms.push("teensy".to_string()); // Teensyduino installs as teensy/avr
        }
        let mut targets = vec![spec.mcu.to_string()];
        for (name, value) in macros {
            targets.push(name.as_ref().to_string());
            targets.push(format!("{}={}", name.as_ref(), value.as_ref()));
        }
        BoardFacts {
            id: spec.id.to_string(),
            memory: memory.unwrap_or_else(|| MemoryClass::of(spec.arch, spec.ram)),
            boards,
            platforms,
            targets,
            mcu: spec.mcu.to_string(),
        }
    }

    /// The facts of the board a build resolved: its properties and the macros its
    /// compiles see (`-D` flags and the compiler's predefined ones).
    pub fn of_build(board: &crate::platform::Board, props: &crate::properties::Properties, macros: Option<&crate::macros::Macros>, memory: Option<MemoryClass>) -> BoardFacts {
        let spec = BoardSpec {
            id: &board.id,
            fqbn: &board.fqbn,
            vendor: &board.platform.vendor,
            arch: &board.platform.arch,
            mcu: props.get_or_empty("build.mcu"),
            ram: props.get("upload.maximum_data_size").and_then(|v| v.trim().parse().ok()),
        };
        let defined: Vec<(&str, &str)> = macros.map(|m| m.iter().collect()).unwrap_or_default();
        BoardFacts::new(spec, defined, memory)
    }

    /// `uno (memory low, platform avr, mcu atmega328p)`, for skip reasons.
    pub fn describe(&self) -> String {
        format!("{} (memory {}, platform {}, mcu {})", self.id, self.memory.name(), self.platforms[0], self.mcu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_class_from_ram_and_arch() {
        assert_eq!(MemoryClass::of("avr", Some(512)), MemoryClass::Tiny, "attiny85");
        assert_eq!(MemoryClass::of("avr", Some(2048)), MemoryClass::Low, "uno");
        assert_eq!(MemoryClass::of("avr", Some(8192)), MemoryClass::Low, "mega: still 8-bit");
        assert_eq!(MemoryClass::of("megaavr", Some(6144)), MemoryClass::Low);
        assert_eq!(MemoryClass::of("samd", Some(32768)), MemoryClass::Large);
        assert_eq!(MemoryClass::of("esp32", Some(327680)), MemoryClass::Huge);
        assert_eq!(MemoryClass::of("esp32", Some(262144)), MemoryClass::Huge, "256 KiB is huge");
        assert_eq!(MemoryClass::of("avr", None), MemoryClass::Low);
        assert_eq!(MemoryClass::of("stm32", None), MemoryClass::Large);
        assert!(MemoryClass::Tiny < MemoryClass::Low && MemoryClass::Low < MemoryClass::Large && MemoryClass::Large < MemoryClass::Huge);
    }

    #[test]
    fn names_a_board_answers_to() {
        let f = BoardFacts::new(
            BoardSpec { id: "nano", fqbn: "arduino:avr:nano:cpu=atmega328old", vendor: "arduino", arch: "avr", mcu: "atmega328p", ram: Some(2048) },
            [("ARDUINO", "10600")],
            None,
        );
        assert_eq!(f.boards, vec!["nano", "arduino:avr:nano:cpu=atmega328old", "arduino:avr:nano"]);
        assert_eq!(f.platforms, vec!["avr", "atmelavr"]);
        assert_eq!(f.targets, vec!["atmega328p", "ARDUINO", "ARDUINO=10600"]);
        assert_eq!(f.describe(), "nano (memory low, platform avr, mcu atmega328p)");
    }
}
