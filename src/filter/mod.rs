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

pub use board::{BoardFacts, BoardSpec, MemoryClass};
pub use grammar::{parse_sketch, Malformed};
pub use select::{select, Selection};

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

/// `KEY is VALUE` (or `=`, `:`, `matches`): true when any value matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub key: Key,
    /// Compare a memory class by name instead of by order. Set where FastLED's CI
    /// sets it: on `is not`, on a condition that is the direct operand of `not`,
    /// and on a block's `exclude:` items (see `Cond::matches`).
    pub exact: bool,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Cond(Cond),
    Not(Box<Expr>),
    /// All hold; the empty `And` admits every board.
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
    /// Whether the sketch is for this board.
    pub fn admits(&self, facts: &BoardFacts) -> bool {
        self.expr.eval(facts)
    }
}

impl Expr {
    /// Plain boolean logic: what `not` means for a memory condition was settled
    /// when it was parsed (`Cond::exact`), and conditions on unknown keys of a
    /// one-line filter were taken out then too (`grammar::without_unknown_keys`).
    pub fn eval(&self, facts: &BoardFacts) -> bool {
        match self {
            Expr::Cond(c) => c.matches(facts),
            Expr::Not(e) => !e.eval(facts),
            Expr::And(v) => v.iter().all(|e| e.eval(facts)),
            Expr::Or(v) => v.iter().any(|e| e.eval(facts)),
        }
    }

    fn mentions_unknown_key(&self) -> bool {
        match self {
            Expr::Cond(c) => matches!(c.key, Key::Unknown(_)),
            Expr::Not(e) => e.mentions_unknown_key(),
            Expr::And(v) | Expr::Or(v) => v.iter().any(Expr::mentions_unknown_key),
        }
    }
}

impl Cond {
    /// As FastLED's CI (ci/compiler/sketch_filter.py) answers a condition: a
    /// memory condition that is not `exact` states a need, so `memory is large`
    /// admits large and huge boards; an `exact` one names one class, so
    /// `not (memory is large)` leaves out large boards only. A key the board has
    /// no value for (an unknown one, kept only in blocks) never matches.
    fn matches(&self, facts: &BoardFacts) -> bool {
        let names: &[String] = match &self.key {
            Key::Unknown(_) => return false,
            Key::Memory => return self.values.iter().any(|v| memory_matches(v, facts.memory, self.exact)),
            Key::Platform => &facts.platforms,
            Key::Board => &facts.boards,
            Key::Target => &facts.targets,
        };
        self.values.iter().any(|v| names.iter().any(|n| value_matches(v, n)))
    }
}

fn memory_matches(value: &str, board: MemoryClass, exact: bool) -> bool {
    match MemoryClass::parse(value.trim()) {
        Some(class) if exact => board == class,
        Some(class) => board >= class,
        // Not a class name (only values with `*` get this far, see
        // `grammar::check_values`): compared as text, a pattern only when exact.
        None if exact => value_matches(value, board.name()),
        None => value.trim().eq_ignore_ascii_case(board.name()),
    }
}

/// One filter value against one name a board answers to, as FastLED compares
/// them: case-insensitive, a leading `-D` dropped (`-D__AVR__` names `__AVR__`),
/// and a pattern only when the value holds a `*`.
pub fn value_matches(value: &str, name: &str) -> bool {
    let value = if value.len() > 2 && value[..2].eq_ignore_ascii_case("-d") { &value[2..] } else { value };
    if value.contains('*') {
        glob_match(value, name)
    } else {
        value.eq_ignore_ascii_case(name)
    }
}

/// Case-insensitive match of `name` against a shell pattern, as Python's
/// `fnmatch` reads one: `*` any run, `?` any one character, `[seq]` / `[!seq]`
/// a set; a `[` without its `]` is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("(?is)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                // A `]` first in the set (after any `!`) is a member, not its end.
                let mut j = i;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                match chars[j.min(chars.len())..].iter().position(|&c| c == ']') {
                    None => re.push_str(r"\["),
                    Some(len) => {
                        let set = &chars[i..j + len];
                        re.push('[');
                        for (k, &c) in set.iter().enumerate() {
                            match c {
                                '!' if k == 0 => re.push('^'),
                                '-' => re.push('-'),
                                c => re.push_str(&regex::escape(&c.to_string())),
                            }
                        }
                        re.push(']');
                        i = j + len + 1;
                    }
                }
            }
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
    fn values_match_as_fastled_compares_them() {
        assert!(value_matches("atmega8*", "ATmega8A"));
        assert!(value_matches("esp32?3*", "esp32s3"), "`?` is a wildcard in a pattern");
        assert!(!value_matches("esp32?3", "esp32s3"), "without `*` a value is plain text");
        assert!(value_matches("esp32?3", "ESP32?3"));
        assert!(!value_matches("esp32", "esp32s3"));
        assert!(!value_matches("mega*", "atmega2560"), "anchored");
        assert!(value_matches("a.b*", "A.Bc"), "regex metacharacters are literal");
        assert!(!value_matches("a.b*", "axbc"));
        assert!(value_matches("teensy[34]*", "teensy41") && !value_matches("teensy[34]*", "teensylc"));
        assert!(value_matches("teensy[!l]*", "teensy41") && !value_matches("teensy[!l]*", "teensylc"), "fnmatch sets");
        assert!(value_matches("a[*", "a[b"), "a `[` without `]` is literal");
        assert!(value_matches("-D__AVR__", "__AVR__") && value_matches("-d__avr__", "__AVR__"));
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
        // Negated, a class is compared by name (FastLED's CI).
        assert!(!admits("// @filter: (memory is not low)", &u));
        assert!(admits("// @filter: (memory is not low)", &e));
        assert!(admits("// @filter: (memory is not large)", &e), "huge is not large");
        assert!(admits("// @filter: not (memory is large)", &u), "low is not large");
        assert!(admits("// @filter: not (memory is large)", &e));
        assert!(!admits("// @filter: not (memory is low)", &u));
        assert!(admits("// @filter: (platform is avr) and not (memory is large)", &u));
        assert!(!admits("// @filter: not not (memory is tiny)", &u), "the inner `not` makes it exact: low is not tiny");
        assert!(admits("// @filter: not ((memory is large) and (platform is avr))", &u), "a group keeps the order: low < large");
        assert!(!admits("// @filter: not ((memory is large) or (platform is esp32))", &e));
        assert!(admits("// @filter: (mem = huge)", &e));
        assert!(!admits("// @filter: (mem: huge)", &u));
        assert!(!admits("// @filter: (memory is l*)", &u), "a pattern is text where the class is ordered");
        assert!(!admits("// @filter: (memory is not l*)", &u), "and a pattern where it is compared by name");
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
        assert!(admits("// @filter (board is not stm32f103cb)  // Maple Mini lacks pin 5", &u), "a trailing comment is not the filter");
        assert!(admits("/// @filter: (platform is avr)", &u), "a doc comment holds one too");
        assert!(!admits("/// @filter: (platform is esp32)", &u));
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
        assert!(admits("// @filter (board is mega or uno)", &u), "alternatives in one condition");
        assert!(admits("// @filter (board is 'mega or uno')", &u));
        assert!(!admits("// @filter (board is mega OR uno)", &u), "only a lower-case `or` splits a value");
    }

    #[test]
    fn unknown_keys_are_dropped_from_one_liners() {
        let u = uno();
        assert!(admits("// @filter (color is blue)", &u), "only unknown keys: no constraint");
        assert!(!admits("// @filter (color is blue) and (memory is large)", &u));
        assert!(!admits("// @filter (color is blue) or (memory is large)", &u), "dropped from or too");
        assert!(admits("// @filter not (color is blue)", &u));
        assert!(admits("// @filter (board is uno) and not (color is blue)", &u));
        // FastLED's CI drops a `not` over a group that held an unknown key, and
        // keeps the group's known conditions as they are.
        assert!(!admits("// @filter not ((color is blue) and (memory is large))", &u));
        assert!(admits("// @filter not ((color is blue) or (board is uno))", &u));
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
        let src = "// @filter\n// exclude:\n//   - memory: large\n// @end-filter\n";
        assert!(admits(src, &u) && admits(src, &e), "exclude is by name: huge and low boards stay");
        let src = "// @filter\n// require:\n//   - board: mega\n//   - board: uno\n// @end-filter\n";
        assert!(admits(src, &u), "items of one key are alternatives");
        let src = "// @filter\n// require:\n//   - colour: red\n// @end-filter\n";
        assert!(!admits(src, &u), "a required key the board has no value for never matches");
        let src = "// @filter\n// exclude:\n//   - colour: red\n// @end-filter\n";
        assert!(admits(src, &u), "nor does an excluded one");
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
