//! Sketches that declare which boards they are for: a `// @filter` comment in the
//! main `.ino`, as library examples write them (FastLED's convention).
//!
//! * `grammar`: the one-line form `// @filter: (memory is large) and not (board is uno)`
//!   and the block form (`// @filter`, `// require:` / `// exclude:` items,
//!   `// @end-filter`), both parsed into one boolean [`Expr`].
//! * `board`: what a filter can ask about a board ([`BoardFacts`]: memory class,
//!   platform, board, target).
//! * `select`: applying the filters of a batch of sketches before discovery.
//!
//! Parsing and evaluation are pure; only `select` reads files.

mod board;
mod grammar;
mod select;

pub use board::{BoardFacts, MemoryClass};
pub use grammar::{parse_sketch, Malformed};
pub use select::{in_argument_order, select, skipped_result, Selection};

/// What a condition asks about the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Memory,
    Platform,
    Board,
    Target,
    /// A key this version does not know: the condition is ignored.
    Unknown(String),
}

impl Key {
    /// Full names and their short aliases, case-insensitive.
    pub fn parse(name: &str) -> Key {
        match name.to_ascii_lowercase().as_str() {
            "memory" | "mem" => Key::Memory,
            "platform" | "plat" => Key::Platform,
            "board" | "brd" => Key::Board,
            "target" | "tgt" => Key::Target,
            other => Key::Unknown(other.to_string()),
        }
    }
}

/// `KEY is VALUE` (or `is not`, `=`, `:`, `matches`): true when any value matches.
/// A block's `exclude:` item is a negated condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub key: Key,
    /// `is not`, or an `exclude:` item.
    pub negated: bool,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Cond(Cond),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A parsed filter and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub expr: Expr,
    /// 1-based line of the `@filter` marker.
    pub line: usize,
    /// The filter as written, on one line (block items joined), for skip reasons.
    pub text: String,
}

impl Filter {
    /// Whether the sketch is for this board. A filter made only of unknown keys
    /// says nothing, so it admits every board.
    pub fn admits(&self, facts: &BoardFacts) -> bool {
        self.expr.eval(facts).unwrap_or(true)
    }
}

impl Expr {
    /// Three-valued: `None` for a condition on an unknown key, which `and`/`or`
    /// drop from their operands (so it neither admits nor excludes).
    pub fn eval(&self, facts: &BoardFacts) -> Option<bool> {
        self.eval_in(facts, false)
    }

    /// `not` is pushed down to the conditions (De Morgan), because a memory
    /// condition in a negative position means something of its own (see
    /// `Cond::eval_memory`); for every other key it is plain negation.
    fn eval_in(&self, facts: &BoardFacts, negate: bool) -> Option<bool> {
        let combine = |v: &[Expr], all: bool| -> Option<bool> {
            let known: Vec<bool> = v.iter().filter_map(|e| e.eval_in(facts, negate)).collect();
            (!known.is_empty()).then(|| if all { known.iter().all(|&b| b) } else { known.iter().any(|&b| b) })
        };
        match self {
            Expr::Cond(c) => c.eval(facts, c.negated != negate),
            Expr::Not(e) => e.eval_in(facts, !negate),
            Expr::And(v) => combine(v, !negate),
            Expr::Or(v) => combine(v, negate),
        }
    }
}

impl Cond {
    fn eval(&self, facts: &BoardFacts, negated: bool) -> Option<bool> {
        let names: &[String] = match &self.key {
            Key::Unknown(_) => return None,
            Key::Memory => return Some(self.eval_memory(facts.memory, negated)),
            Key::Platform => &facts.platforms,
            Key::Board => &facts.boards,
            Key::Target => &facts.targets,
        };
        let hit = self.values.iter().any(|v| {
            // `-D__AVR__` names the macro `__AVR__`.
            let v = if self.key == Key::Target { strip_define(v) } else { v.as_str() };
            names.iter().any(|n| glob_match(v, n))
        });
        Some(hit != negated)
    }

    /// Memory classes are ordered (tiny < low < large < huge) and a memory
    /// condition states what the sketch needs: `memory is large` admits large and
    /// huge boards. In a negative position (`is not`, `not (...)`, an `exclude:`
    /// item) it says which boards are too small: `memory is not low`,
    /// `not (memory is low)` and `exclude: memory: low` all leave out low boards
    /// and everything smaller. A value with wildcards matches class names as text.
    fn eval_memory(&self, board: MemoryClass, negated: bool) -> bool {
        let matches = |v: &String| -> bool {
            if is_glob(v) {
                return glob_match(v, board.name()) != negated;
            }
            match MemoryClass::parse(v) {
                Some(c) if negated => board > c,
                Some(c) => board >= c,
                None => !negated, // unreachable: the parser rejects unknown classes
            }
        };
        if negated {
            self.values.iter().all(matches)
        } else {
            self.values.iter().any(matches)
        }
    }
}

fn strip_define(v: &str) -> &str {
    if v.len() > 2 && v[..2].eq_ignore_ascii_case("-d") {
        &v[2..]
    } else {
        v
    }
}

fn is_glob(v: &str) -> bool {
    v.contains('*') || v.contains('?')
}

/// Case-insensitive match of `name` against `pattern`, where `*` is any run of
/// characters and `?` any one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if !is_glob(pattern) {
        return pattern.eq_ignore_ascii_case(name);
    }
    let mut re = String::from("(?i)^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map(|r| r.is_match(name)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uno() -> BoardFacts {
        BoardFacts::new(
            board::BoardSpec {
                id: "uno",
                fqbn: "arduino:avr:uno",
                vendor: "arduino",
                arch: "avr",
                mcu: "atmega328p",
                ram: Some(2048),
            },
            [("__AVR__", "1"), ("__AVR_ATmega328P__", "1"), ("F_CPU", "16000000L"), ("ARDUINO_AVR_UNO", "1")],
            None,
        )
    }

    fn esp32() -> BoardFacts {
        BoardFacts::new(
            board::BoardSpec {
                id: "esp32s3",
                fqbn: "esp32:esp32:esp32s3:PSRAM=enabled",
                vendor: "esp32",
                arch: "esp32",
                mcu: "esp32s3",
                ram: Some(327680),
            },
            [("ESP32", "1")],
            None,
        )
    }

    fn admits(src: &str, facts: &BoardFacts) -> bool {
        parse_sketch(src).expect("well-formed").expect("a filter").admits(facts)
    }

    #[test]
    fn glob_is_case_insensitive_and_anchored() {
        assert!(glob_match("atmega8*", "ATmega8A"));
        assert!(glob_match("esp32?3", "esp32s3"));
        assert!(!glob_match("esp32", "esp32s3"));
        assert!(!glob_match("mega*", "atmega2560"));
        assert!(glob_match("a.b", "A.B"), "regex metacharacters are literal");
        assert!(!glob_match("a.b", "axb"));
    }

    #[test]
    fn memory_order_and_negation() {
        let (u, e) = (uno(), esp32());
        assert_eq!(u.memory, MemoryClass::Low);
        assert_eq!(e.memory, MemoryClass::Huge);
        assert!(!admits("// @filter: (memory is large)", &u));
        assert!(admits("// @filter: (memory is large)", &e), "huge satisfies large");
        assert!(admits("// @filter: (memory is low)", &u));
        assert!(admits("// @filter: (memory is tiny)", &u), "low satisfies tiny");
        assert!(!admits("// @filter: (memory is not low)", &u), "is not low leaves out low boards");
        assert!(admits("// @filter: (memory is not low)", &e));
        assert!(!admits("// @filter: not (memory is low)", &u), "not (...) reads like is not");
        assert!(admits("// @filter: not (memory is low)", &e));
        assert!(admits("// @filter: not (mem is tiny)", &u), "not on tiny boards");
        assert!(admits("// @filter: not not (memory is low)", &u));
        assert!(!admits("// @filter: not ((memory is low) and (platform is avr))", &u), "pushed through and/or");
        assert!(admits("// @filter: not ((memory is low) and (platform is avr))", &e), "esp32 is not avr");
        assert!(admits("// @filter: (mem = huge)", &e));
        assert!(!admits("// @filter: (mem: huge)", &u));
        assert!(admits("// @filter: (memory is l*)", &u), "wildcards match class names");
        assert!(admits("// @filter: (memory is high)", &e), "FastLED's older name for large");
    }

    #[test]
    fn memory_override_wins() {
        let spec = board::BoardSpec { id: "mega", fqbn: "arduino:avr:mega", vendor: "arduino", arch: "avr", mcu: "atmega2560", ram: Some(8192) };
        let f = BoardFacts::new(spec.clone(), [] as [(&str, &str); 0], Some(MemoryClass::Large));
        assert!(admits("// @filter (memory is large)", &f));
        assert_eq!(BoardFacts::new(spec, [] as [(&str, &str); 0], None).memory, MemoryClass::Low);
    }

    #[test]
    fn and_or_not_and_nesting() {
        let (u, e) = (uno(), esp32());
        let src = "// @filter: (mem is large) and ((platform is teensy) or (platform is esp32))";
        assert!(!admits(src, &u));
        assert!(admits(src, &e));
        let src = "// @filter (platform is avr) or (board is esp32s3)";
        assert!(admits(src, &u) && admits(src, &e));
        let src = "// @filter (platform is avr) and not (board is uno)";
        assert!(!admits(src, &u));
        let src = "// @filter not ((board is uno) or (board is esp32s3))";
        assert!(!admits(src, &u) && !admits(src, &e));
        // `and` binds tighter than `or`.
        let src = "// @filter (board is esp32s3) or (board is uno) and (memory is huge)";
        assert!(!admits(src, &u) && admits(src, &e));
        assert!(admits("// @filter (BOARD IS UNO) AND NOT (PLAT IS ESP32)", &u), "keywords and values are case-insensitive");
    }

    #[test]
    fn keys_aliases_wildcards_and_quotes() {
        let u = uno();
        assert!(admits("// @filter (board is not atmega8*)", &u));
        assert!(admits("// @filter (brd is uno)", &u));
        assert!(admits("// @filter (board is arduino:avr:uno)", &u), "the FQBN names the board too");
        assert!(admits("// @filter (board: arduino:avr:*)", &u));
        assert!(admits("// @filter (plat is atmelavr)", &u), "PlatformIO's name for avr");
        assert!(admits("// @filter (platform matches 'at*avr')", &u));
        assert!(admits("// @filter (target is -D__AVR__)", &u));
        assert!(admits("// @filter (tgt is atmega328p)", &u), "the MCU");
        assert!(admits("// @filter (target is \"F_CPU=16000000L\")", &u));
        assert!(admits("// @filter (target matches -DARDUINO_AVR_*)", &u));
        assert!(!admits("// @filter (target is -DESP32)", &u));
        assert!(admits("// @filter (target is -DESP32)", &esp32()));
        assert!(admits("// @filter (board is esp32s3)", &esp32()));
        assert!(admits("// @filter (board is esp32:esp32:esp32s3)", &esp32()), "FQBN without its menus");
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let u = uno();
        assert!(admits("// @filter (color is blue)", &u), "only unknown keys: no constraint");
        assert!(!admits("// @filter (color is blue) and (memory is large)", &u));
        assert!(!admits("// @filter (color is blue) or (memory is large)", &u), "dropped from or too");
        assert!(admits("// @filter not (color is blue)", &u));
    }

    #[test]
    fn block_form_require_and_exclude() {
        let (u, e) = (uno(), esp32());
        let src = "#include <X.h>\n// @filter\n// require:\n//   - memory: large\n//   - platform: esp32|teensy\n// @end-filter\nvoid setup() {}\n";
        assert!(!admits(src, &u));
        assert!(admits(src, &e));
        let src = "// @filter:\n// exclude:\n//   - board: nano,uno\n// @end-filter\n";
        assert!(!admits(src, &u));
        assert!(admits(src, &e));
        let src = "// @filter\n// require:\n//   - board: esp32s3,teensy41\n// exclude:\n//   - memory: low\n// @end-filter\n";
        assert!(admits(src, &e), "exclude low keeps large boards");
        assert!(!admits(src, &u));
        let src = "// @filter\n// require:\n//   - colour: red\n// @end-filter\n";
        assert!(admits(src, &u), "unknown keys ignored in blocks too");
    }

    #[test]
    fn filter_text_and_line_are_kept() {
        let f = parse_sketch("// hello\n//\n// @filter: (memory is large)\n").unwrap().unwrap();
        assert_eq!(f.line, 3);
        assert_eq!(f.text, "(memory is large)");
        let f = parse_sketch("// @filter\n// require:\n//   - memory: large\n// exclude:\n//   - board: uno|nano\n// @end-filter\n").unwrap().unwrap();
        assert_eq!(f.line, 1);
        assert_eq!(f.text, "require: memory: large; exclude: board: uno|nano");
    }
}
