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
    pub fn of_build(board: &crate::arduino::platform::Board, props: &crate::arduino::properties::Properties, macros: Option<&crate::cpp::macros::Macros>, memory: Option<MemoryClass>) -> BoardFacts {
        let spec = BoardSpec {
            id: &board.id,
            fqbn: &board.fqbn,
            vendor: &board.platform.vendor,
            arch: &board.platform.arch,
            mcu: crate::arduino::platform::mcu_of(props),
            ram: crate::arduino::platform::ram_of(props),
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

    /// The shared platform kits (../shared/platforms beside the clone, as CI lays it out).
    fn kit_platform(kit: &str, vendor: &str, arch: &str) -> crate::arduino::platform::Platform {
        let beside = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/platforms");
        let root = if beside.is_dir() { beside } else { std::path::PathBuf::from("/work/shared/platforms") };
        let path = root.join(kit).join("hardware").join(vendor).join(arch);
        crate::arduino::platform::Platform::load(vendor, arch, &path).unwrap_or_else(|e| panic!("kit {kit} at {}: {e}", path.display()))
    }

    /// The facts a build of `board` sees, from the kit's real boards.txt and platform.txt.
    fn facts_of(platform: &crate::arduino::platform::Platform, board: &str) -> BoardFacts {
        let b = crate::arduino::platform::resolve_board(std::slice::from_ref(platform), board).unwrap();
        BoardFacts::of_build(&b, &b.properties, None, None)
    }

    #[test]
    fn kit_boards_get_their_class_from_their_ram() {
        let attiny = kit_platform("attiny", "ATTinyCore", "avr");
        let megaavr = kit_platform("megaavr", "arduino", "megaavr");
        let samd = kit_platform("samd", "arduino", "samd");
        let rp2040 = kit_platform("rp2040", "rp2040", "rp2040");
        let stm32 = kit_platform("stm32", "STMicroelectronics", "stm32");
        let cases: [(&crate::arduino::platform::Platform, &str, &str, &str, &str); 8] = [
            (&attiny, "ATTinyCore:avr:attinyx5", "tiny", "avr", "attiny85"),
            (&attiny, "ATTinyCore:avr:attinyx8", "tiny", "avr", "attiny88"),
            (&attiny, "ATTinyCore:avr:attiny1634", "tiny", "avr", "attiny1634"), // 1 KiB: the boundary
            (&megaavr, "arduino:megaavr:nona4809", "low", "megaavr", "atmega4809"),
            (&samd, "arduino:samd:arduino_zero_native", "large", "samd", "cortex-m0plus"),
            (&stm32, "STMicroelectronics:stm32:GenF1:pnum=BLUEPILL_F103C8", "large", "stm32", "cortex-m3"),
            (&rp2040, "rp2040:rp2040:rpipico", "huge", "rp2040", "rp2040"),
            (&rp2040, "rp2040:rp2040:rpipico2", "huge", "rp2040", "rp2350"),
        ];
        for (platform, board, memory, arch, mcu) in cases {
            let f = facts_of(platform, board);
            assert_eq!((f.memory.name(), f.platforms[0].as_str(), f.mcu.as_str()), (memory, arch, mcu), "{board}");
        }
        // The listing shows the same class, from the default menu options.
        let info = |p: &crate::arduino::platform::Platform, id: &str| {
            let i = p.board_info(id);
            (i.mcu, i.max_flash, i.max_ram, i.memory)
        };
        assert_eq!(info(&attiny, "attinyx5"), ("attiny85".into(), Some(8192), Some(512), "tiny"));
        assert_eq!(info(&megaavr, "nona4809"), ("atmega4809".into(), Some(49152), Some(6144), "low"));
        assert_eq!(info(&samd, "arduino_zero_native"), ("cortex-m0plus".into(), Some(262144), Some(32768), "large"));
        assert_eq!(info(&rp2040, "rpipico"), ("rp2040".into(), Some(2093056), Some(262144), "huge"));
        // GenF1's first part number is not the Blue Pill; its class is still its own RAM's.
        let genf1 = stm32.board_info("GenF1");
        assert_eq!(genf1.memory, MemoryClass::of("stm32", genf1.max_ram).name());
        assert!(facts_of(&megaavr, "arduino:megaavr:nona4809").platforms.contains(&"atmelmegaavr".to_string()));
    }

    #[test]
    fn ram_given_as_zero_is_unknown_not_tiny() {
        // STM32's generic boards set upload.maximum_data_size=0 until a part is chosen.
        let mut props = crate::arduino::properties::Properties::new();
        props.set("upload.maximum_data_size", "0");
        assert_eq!(crate::arduino::platform::ram_of(&props), None);
        props.set("upload.maximum_data_size", " 2048 ");
        assert_eq!(crate::arduino::platform::ram_of(&props), Some(2048));
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
