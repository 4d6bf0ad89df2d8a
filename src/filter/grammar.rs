//! Parsing `// @filter` comments, as FastLED's CI (ci/compiler/sketch_filter.py)
//! reads them.
//!
//! One line, after `@filter` and an optional colon, up to a trailing `//` comment:
//!
//! ```text
//! expr   = and ("or" and)*
//! and    = factor ("and" factor)*
//! factor = "not" factor | "(" expr ")" | "(" KEY OP VALUES ")"
//! KEY    = letters, digits, `_`
//! OP     = "is" | "is not" | "=" | ":" | "matches"
//! VALUES = text up to `)`, alternatives split by ` or `, the whole may be quoted
//! ```
//!
//! Or a block: `// @filter` alone, then `// require:` / `// exclude:` sections of
//! `//   - KEY: v1|v2,v3` items, closed by `// @end-filter`. Items of one key in a
//! section are one list of alternatives; every required key must match and no
//! excluded key may.

use super::{Cond, Expr, Filter, Key, MemoryClass};

/// A filter comment that could not be parsed: the sketch is built anyway, and the
/// user is told where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based line in the file.
    pub line: usize,
    pub message: String,
}

/// The first `// @filter` comment of a sketch's main file: `Ok(None)` when it has
/// none.
pub fn parse_sketch(source: &str) -> Result<Option<Filter>, Malformed> {
    let lines: Vec<&str> = source.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = marker(line) else { continue };
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        // A trailing `// why` is a comment on the filter, not part of it.
        let rest = rest.split("//").next().unwrap_or("").trim();
        let line_no = i + 1;
        return if rest.is_empty() {
            parse_block(&lines[i + 1..], line_no).map(Some)
        } else {
            // Columns in messages count from the start of the line.
            let line_start = rest.as_ptr() as usize - line.as_ptr() as usize; // `rest` is a slice of `line`
            let expr = Parser { src: rest, pos: 0, line_start }.parse_line().map_err(|message| Malformed { line: line_no, message })?;
            let expr = without_unknown_keys(expr).unwrap_or(Expr::And(Vec::new()));
            Ok(Some(Filter { expr, line: line_no, text: rest.to_string() }))
        };
    }
    Ok(None)
}

/// A one-line filter without its conditions on keys this version does not know,
/// as FastLED's CI drops them: out of `and`/`or`, and a `not` over a group that
/// held one is dropped with it (its known conditions stay, unnegated). `None`
/// when nothing is left: the filter admits every board.
fn without_unknown_keys(e: Expr) -> Option<Expr> {
    match e {
        Expr::Cond(c) if matches!(c.key, Key::Unknown(_)) => None,
        Expr::Cond(c) => Some(Expr::Cond(c)),
        Expr::Not(inner) => {
            let had_unknown = inner.mentions_unknown_key();
            let kept = without_unknown_keys(*inner)?;
            Some(if had_unknown { kept } else { Expr::Not(Box::new(kept)) })
        }
        Expr::And(v) | Expr::Or(v) if v.is_empty() => None,
        Expr::And(v) => several(v, Expr::And),
        Expr::Or(v) => several(v, Expr::Or),
    }
}

fn several(v: Vec<Expr>, join: fn(Vec<Expr>) -> Expr) -> Option<Expr> {
    let mut kept: Vec<Expr> = v.into_iter().filter_map(without_unknown_keys).collect();
    match kept.len() {
        0 => None,
        1 => kept.pop(),
        _ => Some(join(kept)),
    }
}

/// The text after `// @filter` or `/// @filter` (`@filters` or `@filterFoo` are
/// not the marker).
fn marker(line: &str) -> Option<&str> {
    let rest = comment_body(line)?.trim_start_matches('/').trim_start().strip_prefix("@filter")?;
    match rest.chars().next() {
        None | Some(':') | Some('(') => Some(rest),
        Some(c) if c.is_whitespace() => Some(rest.trim_start()),
        _ => None,
    }
}

/// The text of a `//` comment line, trimmed.
fn comment_body(line: &str) -> Option<&str> {
    Some(line.trim_start().strip_prefix("//")?.trim())
}

fn parse_block(lines: &[&str], marker_line: usize) -> Result<Filter, Malformed> {
    #[derive(PartialEq, Clone, Copy)]
    enum Section {
        None,
        Require,
        Exclude,
    }
    let mut section = Section::None;
    // Each section's keys in the order they first appear, with all their values.
    let mut required: Vec<(Key, Vec<String>)> = Vec::new();
    let mut excluded: Vec<(Key, Vec<String>)> = Vec::new();
    // For skip reasons: "require: memory: large, board: a|b; exclude: ...".
    let mut text: Vec<(String, Vec<String>)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line_no = marker_line + 1 + i;
        let bad = |message: String| Malformed { line: line_no, message };
        let Some(body) = comment_body(line) else { break };
        if body.starts_with("@end-filter") {
            let text: Vec<String> = text.into_iter().filter(|(_, items)| !items.is_empty()).map(|(s, items)| format!("{s} {}", items.join(", "))).collect();
            // A required key must match (memory by order, see `Cond::matches`); an
            // excluded key must not match its class exactly.
            let required = required.into_iter().map(|(key, values)| Expr::Cond(Cond { key, exact: false, values }));
            let excluded = excluded.into_iter().map(|(key, values)| Expr::Not(Box::new(Expr::Cond(Cond { key, exact: true, values }))));
            return Ok(Filter { expr: Expr::And(required.chain(excluded).collect()), line: marker_line, text: text.join("; ") });
        }
        if body.is_empty() {
            continue;
        }
        if body == "require:" || body == "exclude:" {
            section = if body == "require:" { Section::Require } else { Section::Exclude };
            text.push((body.to_string(), Vec::new()));
            continue;
        }
        let Some(item) = body.strip_prefix('-') else {
            return Err(bad(format!("expected `require:`, `exclude:`, `- KEY: VALUE` or `@end-filter`, found `{body}`")));
        };
        if section == Section::None {
            return Err(bad("an item before `require:` or `exclude:`".to_string()));
        }
        let Some((key_name, values)) = item.split_once(':') else {
            return Err(bad(format!("expected `- KEY: VALUE`, found `{body}`")));
        };
        let key_name = key_name.trim();
        let values: Vec<String> = values.split(['|', ',']).map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect();
        if key_name.is_empty() || values.is_empty() {
            return Err(bad(format!("expected `- KEY: VALUE`, found `{body}`")));
        }
        let key = Key::parse(key_name);
        check_values(&key, &values).map_err(bad)?;
        if let Some((_, items)) = text.last_mut() {
            items.push(format!("{key_name}: {}", values.join("|")));
        }
        let keys = if section == Section::Require { &mut required } else { &mut excluded };
        match keys.iter_mut().find(|(k, _)| *k == key) {
            Some((_, known)) => known.extend(values),
            None => keys.push((key, values)),
        }
    }
    Err(Malformed { line: marker_line, message: "the @filter block has no `// @end-filter`".to_string() })
}

/// Memory classes are a closed set: a typo must not silently change which
/// boards build. (FastLED's CI compares an unknown class as text, so it matches
/// no board.) A value with `*` is a pattern over class names.
fn check_values(key: &Key, values: &[String]) -> Result<(), String> {
    if *key == Key::Memory {
        for v in values {
            if !v.contains('*') && MemoryClass::parse(v).is_none() {
                return Err(format!("unknown memory class `{v}`; use tiny, low, large or huge"));
            }
        }
    }
    Ok(())
}

/// A recursive-descent parser over the text after `@filter`.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// Byte offset of `src` in its line.
    line_start: usize,
}

impl Parser<'_> {
    /// 1-based column of the current position in the source line.
    fn column(&self) -> usize {
        self.line_start + self.pos + 1
    }

    fn parse_line(mut self) -> Result<Expr, String> {
        let e = self.or()?;
        self.skip_ws();
        if self.pos < self.src.len() {
            return Err(format!("unexpected `{}` at column {}", self.rest(), self.column()));
        }
        Ok(e)
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    /// Consume `word` (case-insensitive) when it stands alone: followed by the end,
    /// whitespace or a parenthesis.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if rest.len() < word.len() || !rest.is_char_boundary(word.len()) || !rest[..word.len()].eq_ignore_ascii_case(word) {
            return false;
        }
        match rest[word.len()..].chars().next() {
            None | Some('(') | Some(')') => {}
            Some(c) if c.is_whitespace() => {}
            _ => return false,
        }
        self.pos += word.len();
        true
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else if self.pos >= self.src.len() {
            Err(format!("expected `{c}` at the end"))
        } else {
            Err(format!("expected `{c}` at column {}, found `{}`", self.column(), self.rest()))
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 { terms.pop().unwrap() } else { Expr::Or(terms) })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut factors = vec![self.factor()?];
        while self.keyword("and") {
            factors.push(self.factor()?);
        }
        Ok(if factors.len() == 1 { factors.pop().unwrap() } else { Expr::And(factors) })
    }

    fn factor(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            // `not` directly over a condition makes it compare by name, as in
            // FastLED's CI: `not (memory is large)` leaves out large boards only.
            return Ok(Expr::Not(Box::new(match self.factor()? {
                Expr::Cond(c) => Expr::Cond(Cond { exact: true, ..c }),
                e => e,
            })));
        }
        self.expect('(')?;
        self.skip_ws();
        let save = self.pos;
        let nested = self.peek() == Some('(') || self.keyword("not");
        self.pos = save;
        let e = if nested { self.or()? } else { self.cond()? };
        self.expect(')')?;
        Ok(e)
    }

    /// `KEY OP VALUES`, up to (not including) its `)`. `is not` is the negated
    /// condition, compared by name.
    fn cond(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        let name_len = self.rest().find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(self.rest().len());
        if name_len == 0 {
            return Err(format!("expected a key (memory, platform, board, target) at column {}", self.column()));
        }
        let name = self.rest()[..name_len].to_string();
        self.pos += name_len;
        self.skip_ws();
        let negated = if self.peek() == Some('=') || self.peek() == Some(':') {
            self.pos += 1;
            false
        } else if self.keyword("is") {
            self.keyword("not")
        } else if self.keyword("matches") {
            false
        } else {
            return Err(format!("expected `is`, `is not`, `=`, `:` or `matches` after `{name}`"));
        };
        let values = self.values()?;
        let key = Key::parse(&name);
        check_values(&key, &values)?;
        let cond = Expr::Cond(Cond { key, exact: negated, values });
        Ok(if negated { Expr::Not(Box::new(cond)) } else { cond })
    }

    /// The text up to the condition's `)`, trimmed, its quotes removed when it
    /// is quoted as a whole, split into alternatives at ` or `
    /// (`(target is Teensy40 or Teensy41)`).
    fn values(&mut self) -> Result<Vec<String>, String> {
        self.skip_ws();
        let column = self.column();
        let len = self.rest().find(')').unwrap_or(self.rest().len());
        let src = self.src;
        let mut text = src[self.pos..self.pos + len].trim_end();
        self.pos += len;
        if let Some(q) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
            if text.len() < 2 || !text.ends_with(q) {
                return Err(format!("unclosed {q} in a value at column {column}"));
            }
            text = &text[1..text.len() - 1];
        }
        let values: Vec<String> = alternatives(text).map(String::from).collect();
        if values.is_empty() {
            return Err(format!("expected a value at column {column}"));
        }
        Ok(values)
    }
}

/// `a or b` -> `a`, `b`: split at a lower-case `or` with whitespace on both sides.
fn alternatives(text: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let words: Vec<(usize, &str)> = text.split_whitespace().map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w)).collect();
    for (k, (at, w)) in words.iter().enumerate() {
        // Whitespace on both sides: not the first or last word.
        if *w == "or" && k > 0 && k + 1 < words.len() {
            parts.push(&text[start..*at]);
            start = at + 2;
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(key: Key, v: &str) -> Expr {
        Expr::Cond(Cond { key, exact: false, values: vec![v.to_string()] })
    }

    /// `is not`: the negated condition, compared by name.
    fn cond_not(key: Key, v: &str) -> Expr {
        Expr::Not(Box::new(Expr::Cond(Cond { key, exact: true, values: vec![v.to_string()] })))
    }

    fn expr(src: &str) -> Expr {
        parse_sketch(src).unwrap().unwrap().expr
    }

    fn malformed(src: &str) -> Malformed {
        parse_sketch(src).expect_err("malformed")
    }

    #[test]
    fn every_operator_spelling() {
        let want = cond(Key::Memory, "large");
        for src in ["// @filter: (memory is large)", "// @filter (memory is large)", "// @filter(mem=large)", "// @filter: (mem : large)", "//@filter (memory matches large)", "// @filter (MEM IS large)"] {
            assert_eq!(expr(src), want, "{src}");
        }
        assert_eq!(expr("// @filter (board is not atmega8*)"), cond_not(Key::Board, "atmega8*"));
        assert_eq!(expr("// @filter (board: arduino:avr:uno)"), cond(Key::Board, "arduino:avr:uno"));
        assert_eq!(expr("// @filter (tgt is -D__AVR__)"), cond(Key::Target, "-D__AVR__"));
        assert_eq!(expr("// @filter (board is 'my board')"), cond(Key::Board, "my board"));
        assert_eq!(expr("// @filter (board is my  board)"), cond(Key::Board, "my  board"), "a value runs to its `)`");
        assert_eq!(expr("// @filter (board is notebook)"), cond(Key::Board, "notebook"), "`not` only as a word");
        assert_eq!(expr("// @filter (target is Teensy40 or Teensy41)"), Expr::Cond(Cond { key: Key::Target, exact: false, values: vec!["Teensy40".into(), "Teensy41".into()] }));
        assert_eq!(expr("// @filter: (board is not stm32f103cb)  // Maple Mini lacks pin 5"), cond_not(Key::Board, "stm32f103cb"));
    }

    #[test]
    fn precedence_and_nesting() {
        let a = || cond(Key::Board, "a");
        let b = || cond(Key::Board, "b");
        let c = || cond(Key::Board, "c");
        let exact_a = || Expr::Cond(Cond { key: Key::Board, exact: true, values: vec!["a".into()] });
        assert_eq!(expr("// @filter (board is a) or (board is b) and (board is c)"), Expr::Or(vec![a(), Expr::And(vec![b(), c()])]));
        assert_eq!(expr("// @filter ((board is a) or (board is b)) and (board is c)"), Expr::And(vec![Expr::Or(vec![a(), b()]), c()]));
        // `not` makes the condition it stands directly before exact, through parentheses.
        assert_eq!(expr("// @filter not not (board is a)"), Expr::Not(Box::new(Expr::Not(Box::new(exact_a())))));
        assert_eq!(expr("// @filter (not (board is a))"), Expr::Not(Box::new(exact_a())));
        assert_eq!(expr("// @filter not ((board is a))"), Expr::Not(Box::new(exact_a())));
        assert_eq!(expr("// @filter not ((board is a) or (board is b))"), Expr::Not(Box::new(Expr::Or(vec![a(), b()]))));
        assert_eq!(expr("// @filter not (board is not a)"), Expr::Not(Box::new(Expr::Not(Box::new(exact_a())))));
    }

    #[test]
    fn unknown_keys_leave_one_liners() {
        let m = || cond(Key::Memory, "large");
        assert_eq!(expr("// @filter (colour is red)"), Expr::And(vec![]));
        assert_eq!(expr("// @filter (colour is red) and (memory is large)"), m());
        assert_eq!(expr("// @filter ((colour is red) or (memory is large)) and (board is a)"), Expr::And(vec![m(), cond(Key::Board, "a")]));
        assert_eq!(expr("// @filter not ((colour is red) and (memory is large))"), m(), "the `not` goes with the unknown key");
        assert_eq!(expr("// @filter not ((board is a) and (memory is large))"), Expr::Not(Box::new(Expr::And(vec![cond(Key::Board, "a"), m()]))));
    }

    #[test]
    fn not_a_marker() {
        assert_eq!(parse_sketch("// @filters are great\n// @filterComponent(x)\nint x; // @filter\n//// @filtered\n"), Ok(None));
        assert_eq!(parse_sketch("void setup() {}\n"), Ok(None));
    }

    #[test]
    fn malformed_one_liners_name_the_line() {
        let m = malformed("\n\n// @filter (memory is large");
        assert_eq!(m.line, 3);
        assert!(m.message.contains("expected `)`"), "{}", m.message);
        assert_eq!(malformed("  // @filter: (memory is)  ").message, "expected a value at column 25", "columns count from the line start");
        assert!(malformed("// @filter (memory large)").message.contains("expected `is`"));
        assert!(malformed("// @filter (memory is)").message.contains("expected a value"));
        assert!(malformed("// @filter (memory is large) and").message.contains("expected `(`"));
        assert!(malformed("// @filter (memory is large) (board is uno)").message.contains("unexpected"));
        assert!(malformed("// @filter (memory is big)").message.contains("unknown memory class `big`"));
        assert!(malformed("// @filter (board is 'uno)").message.contains("unclosed"));
        assert!(malformed("// @filter (my-key is x)").message.contains("expected `is`"), "a key is a word");
        assert!(malformed("// @filter (is uno)").message.contains("expected `is`"), "`is` read as a key, then no operator");
        assert!(malformed("// @filter (memory is large and platform is avr)").message.contains("unknown memory class `large and platform is avr`"), "a value runs to its `)`");
        assert!(malformed("// @filter memory is large").message.contains("expected `(`"));
    }

    #[test]
    fn malformed_blocks_name_the_line() {
        let m = malformed("// @filter\n// require:\n//   - memory: large\nvoid setup() {}\n");
        assert_eq!(m, Malformed { line: 1, message: "the @filter block has no `// @end-filter`".into() });
        let m = malformed("// @filter\n//   - memory: large\n// @end-filter\n");
        assert_eq!(m.line, 2);
        assert!(m.message.contains("before `require:`"));
        let m = malformed("// @filter\n// require:\n//   - memory large\n// @end-filter\n");
        assert_eq!(m.line, 3);
        let m = malformed("// @filter\n// require:\n//   - board:\n// @end-filter\n");
        assert_eq!(m.line, 3);
        let m = malformed("// @filter\n// needs:\n// @end-filter\n");
        assert_eq!(m.line, 2);
        assert!(m.message.contains("`needs:`"));
        let m = malformed("// @filter\n// require:\n//   - mem: enormous\n// @end-filter\n");
        assert!(m.message.contains("enormous"));
    }

    #[test]
    fn block_items_become_conditions() {
        let e = expr("// @filter:\n// require:\n//   - memory: large\n//   - platform: esp32|teensy, rp2040\n//   - plat: stm32\n//\n// exclude:\n//   - board: esp32c3\n// @end-filter\n");
        assert_eq!(
            e,
            Expr::And(vec![
                cond(Key::Memory, "large"),
                Expr::Cond(Cond { key: Key::Platform, exact: false, values: vec!["esp32".into(), "teensy".into(), "rp2040".into(), "stm32".into()] }),
                cond_not(Key::Board, "esp32c3"),
            ])
        );
        let e = expr("// @filter\n// require:\n//   - colour: red\n// @end-filter\n");
        assert_eq!(e, Expr::And(vec![cond(Key::Unknown("colour".into()), "red")]), "kept: a block's unknown key is a requirement no board meets");
    }
}
