//! What the preprocessor would know before reading any file: macros from `-D` flags
//! and the compiler's own predefined ones. Used to evaluate `#if`/`#ifdef` lines
//! during include scanning, so a library's `#if defined(ARDUINO_ARCH_SAMD)` branch
//! does not pull a SAMD-only library into an AVR build.
//!
//! Evaluation is three-valued: a condition is true, false, or unknown (it depends on
//! a macro some header may define). Unknown counts as live, so scanning stays a
//! superset of what the compiler reads unless a condition is certain.

use std::collections::HashMap;

use crate::cpp::lex::{tokenize, Kind, Token};

#[derive(Debug, Clone, Default)]
pub struct Macros {
    values: HashMap<String, String>,
}

/// Macros that only a compiler or a build's `-D` flags define: when absent they are
/// certainly undefined (no library defines `ARDUINO_ARCH_SAMD` on an AVR build).
fn is_platform_identity(name: &str) -> bool {
    const EXACT: &[&str] = &["ESP8266", "ESP32", "TEENSYDUINO", "CORE_TEENSY", "__arm__", "__thumb__", "__riscv", "__XTENSA__", "__xtensa__", "NRF52", "NRF51", "__RP2040__"];
    const PREFIXES: &[&str] = &["ARDUINO_ARCH_", "__AVR_", "__ARM_ARCH", "__SAM", "__MK", "__IMXRT", "__STM32", "STM32F", "ARDUINO_AVR_", "ARDUINO_SAM_", "ARDUINO_SAMD_", "ARDUINO_ESP", "ARDUINO_NRF", "ARDUINO_TEENSY"];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim().trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok();
    }
    t.parse().ok()
}

impl Macros {
    /// `-DNAME` and `-DNAME=VALUE` flags of a command line.
    pub fn from_args(args: &[String]) -> Macros {
        let mut m = Macros::default();
        for a in args {
            if let Some(def) = a.strip_prefix("-D") {
                let (k, v) = def.split_once('=').unwrap_or((def, "1"));
                m.values.insert(k.to_string(), v.to_string());
            }
        }
        m
    }

    /// `#define NAME VALUE` lines, as `gcc -dM -E` prints them.
    pub fn add_definitions(&mut self, text: &str) {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("#define ") else { continue };
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            if !name.contains('(') {
                self.values.entry(name.to_string()).or_insert_with(|| value.to_string());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every known macro as (name, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether `name` is defined: known yes, known no, or unknown.
    pub fn defined(&self, name: &str) -> Option<bool> {
        if self.values.contains_key(name) {
            Some(true)
        } else if is_platform_identity(name) {
            Some(false)
        } else {
            None
        }
    }

    /// Evaluate an `#if` expression; `None` when it depends on unknown macros or is
    /// beyond this small evaluator.
    pub fn eval(&self, expr: &str) -> Option<bool> {
        let toks = tokenize(expr);
        let mut p = Parser { toks: &toks, pos: 0, macros: self };
        let v = p.or()?;
        (p.pos == toks.len()).then_some(v? != 0)
    }

    fn value(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            // `#define X` (empty) evaluates as 0 in arithmetic; other text is unknown.
            Some(v) => parse_int(v).or(v.is_empty().then_some(0)),
            None => self.defined(name).map(|_| 0),
        }
    }
}

/// Recursive descent over an `#if` expression. Every level returns
/// `Option<Option<i64>>`: outer `None` is a parse failure, inner `None` an unknown value.
struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    macros: &'a Macros,
}

type Val = Option<Option<i64>>;

impl Parser<'_> {
    fn peek(&self, s: &str) -> bool {
        self.toks.get(self.pos).is_some_and(|t| t.is(s))
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.peek(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat2(&mut self, a: &str, b: &str) -> bool {
        if self.peek(a) && self.toks.get(self.pos + 1).is_some_and(|t| t.is(b) && !t.space_before) {
            self.pos += 2;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Val {
        let mut v = self.and()?;
        while self.eat2("|", "|") {
            let r = self.and()?;
            v = match (v, r) {
                (Some(a), _) if a != 0 => Some(1),
                (_, Some(b)) if b != 0 => Some(1),
                (Some(_), Some(_)) => Some(0),
                _ => None,
            };
        }
        Some(v)
    }

    fn and(&mut self) -> Val {
        let mut v = self.cmp()?;
        while self.eat2("&", "&") {
            let r = self.cmp()?;
            v = match (v, r) {
                (Some(0), _) | (_, Some(0)) => Some(0),
                (Some(_), Some(_)) => Some(1),
                _ => None,
            };
        }
        Some(v)
    }

    fn cmp(&mut self) -> Val {
        let l = self.unary()?;
        let op = if self.eat2("=", "=") {
            "=="
        } else if self.eat2("!", "=") {
            "!="
        } else if self.eat2(">", "=") {
            ">="
        } else if self.eat2("<", "=") {
            "<="
        } else if self.eat(">") {
            ">"
        } else if self.eat("<") {
            "<"
        } else {
            return Some(l);
        };
        let r = self.unary()?;
        Some(match (l, r) {
            (Some(a), Some(b)) => Some(match op {
                "==" => (a == b) as i64,
                "!=" => (a != b) as i64,
                ">=" => (a >= b) as i64,
                "<=" => (a <= b) as i64,
                ">" => (a > b) as i64,
                _ => (a < b) as i64,
            }),
            _ => None,
        })
    }

    fn unary(&mut self) -> Val {
        if self.peek("!") && !self.toks.get(self.pos + 1).is_some_and(|t| t.is("=") && !t.space_before) {
            self.pos += 1;
            return Some(self.unary()?.map(|v| (v == 0) as i64));
        }
        self.primary()
    }

    fn primary(&mut self) -> Val {
        let t = self.toks.get(self.pos)?;
        self.pos += 1;
        match t.kind {
            Kind::Number => Some(Some(parse_int(&t.text)?)),
            Kind::Word if t.text == "defined" => {
                let paren = self.eat("(");
                let name = self.toks.get(self.pos).filter(|n| n.kind == Kind::Word)?.text.clone();
                self.pos += 1;
                if paren && !self.eat(")") {
                    return None;
                }
                Some(self.macros.defined(&name).map(i64::from))
            }
            Kind::Word if t.text == "true" => Some(Some(1)),
            Kind::Word if t.text == "false" => Some(Some(0)),
            // A function-like macro call we cannot expand.
            Kind::Word if self.peek("(") => None,
            Kind::Word => Some(self.macros.value(&t.text)),
            _ if t.is("(") => {
                let v = self.or()?;
                self.eat(")").then_some(v)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avr() -> Macros {
        let mut m = Macros::from_args(&["-DARDUINO=10600".into(), "-DARDUINO_ARCH_AVR".into(), "-DF_CPU=16000000L".into(), "-mmcu=atmega328p".into()]);
        m.add_definitions("#define __AVR__ 1\n#define __AVR_ATmega328P__ 1\n#define __GNUC__ 5\n#define F(x) x\n");
        m
    }

    #[test]
    fn defined_forms_and_platform_identity() {
        let m = avr();
        assert_eq!(m.eval("defined(ARDUINO_ARCH_AVR)"), Some(true));
        assert_eq!(m.eval("defined ARDUINO_ARCH_SAMD"), Some(false), "another platform's identity is certainly absent");
        assert_eq!(m.eval("defined(MY_LIB_OPTION)"), None, "a header may define it");
        assert_eq!(m.eval("defined(ESP8266) || defined(ESP32)"), Some(false));
        assert_eq!(m.eval("defined(__AVR__) && !defined(ARDUINO_ARCH_MEGAAVR)"), Some(true));
    }

    #[test]
    fn arithmetic_comparisons_and_unknowns() {
        let m = avr();
        assert_eq!(m.eval("ARDUINO >= 100"), Some(true));
        assert_eq!(m.eval("F_CPU == 16000000L"), Some(true));
        assert_eq!(m.eval("(ARDUINO < 100)"), Some(false));
        assert_eq!(m.eval("USER_THING > 3"), None);
        assert_eq!(m.eval("USER_THING > 3 || defined(__AVR__)"), Some(true), "true whatever the unknown is");
        assert_eq!(m.eval("USER_THING > 3 && defined(ESP32)"), Some(false), "false whatever the unknown is");
        assert_eq!(m.eval("__GNUC__ >= 6"), Some(false));
        assert_eq!(m.eval("SOME_FN(3)"), None);
        assert_eq!(m.eval("0x10 == 16"), Some(true));
        assert_eq!(m.eval("1 +"), None, "beyond the evaluator: unknown, never a guess");
    }
}
