//! Parsing `// @filter` comments.
//!
//! One line, after `@filter` and an optional colon:
//!
//! ```text
//! expr   = and ("or" and)*
//! and    = factor ("and" factor)*
//! factor = "not" factor | "(" expr ")" | "(" KEY OP VALUE ")"
//! OP     = "is" | "is not" | "=" | ":" | "matches"
//! VALUE  = a word (may hold `*`, `?`, `-`, `:`, `.`) or a quoted string
//! ```
//!
//! Or a block: `// @filter` alone, then `// require:` / `// exclude:` sections of
//! `//   - KEY: v1|v2,v3` items, closed by `// @end-filter`. A `require:` item
//! holds when any of its values matches; every one must hold; any `exclude:` item
//! that matches excludes the board.

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
        let rest = rest.strip_prefix(':').unwrap_or(rest).trim();
        let line_no = i + 1;
        return if rest.is_empty() {
            parse_block(&lines[i + 1..], line_no).map(Some)
        } else {
            // Columns in messages count from the start of the line.
            let line_start = rest.as_ptr() as usize - line.as_ptr() as usize; // `rest` is a slice of `line`
            let expr = Parser { src: rest, pos: 0, line_start }.parse_line().map_err(|message| Malformed { line: line_no, message })?;
            Ok(Some(Filter { expr, line: line_no, text: rest.to_string() }))
        };
    }
    Ok(None)
}

/// The text after `// @filter` (`@filters` or `@filterFoo` are not the marker).
fn marker(line: &str) -> Option<&str> {
    let rest = comment_body(line)?.strip_prefix("@filter")?;
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
    let mut conds = Vec::new();
    // For skip reasons: "require: memory: large, board: a|b; exclude: ...".
    let mut text: Vec<(String, Vec<String>)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line_no = marker_line + 1 + i;
        let bad = |message: String| Malformed { line: line_no, message };
        let Some(body) = comment_body(line) else { break };
        if body.starts_with("@end-filter") {
            let text: Vec<String> = text.into_iter().filter(|(_, items)| !items.is_empty()).map(|(s, items)| format!("{s} {}", items.join(", "))).collect();
            return Ok(Filter { expr: Expr::And(conds), line: marker_line, text: text.join("; ") });
        }
        if body.is_empty() {
            continue;
        }
        let header = body.to_ascii_lowercase();
        if header == "require:" || header == "exclude:" {
            section = if header == "require:" { Section::Require } else { Section::Exclude };
            text.push((header, Vec::new()));
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
        conds.push(Expr::Cond(Cond { key, negated: section == Section::Exclude, values }));
    }
    Err(Malformed { line: marker_line, message: "the @filter block has no `// @end-filter`".to_string() })
}

/// Memory classes are a closed set: a typo must not silently admit every board.
fn check_values(key: &Key, values: &[String]) -> Result<(), String> {
    if *key == Key::Memory {
        for v in values {
            if !v.contains(['*', '?']) && MemoryClass::parse(v).is_none() {
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
            return Ok(Expr::Not(Box::new(self.factor()?)));
        }
        self.expect('(')?;
        self.skip_ws();
        let save = self.pos;
        let nested = self.peek() == Some('(') || self.keyword("not");
        self.pos = save;
        let e = if nested { self.or()? } else { Expr::Cond(self.cond()?) };
        self.expect(')')?;
        Ok(e)
    }

    fn cond(&mut self) -> Result<Cond, String> {
        self.skip_ws();
        let name_len = self.rest().find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(self.rest().len());
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
        let value = self.value()?;
        let key = Key::parse(&name);
        check_values(&key, std::slice::from_ref(&value))?;
        Ok(Cond { key, negated, values: vec![value] })
    }

    fn value(&mut self) -> Result<String, String> {
        self.skip_ws();
        let quote = self.peek().filter(|c| *c == '"' || *c == '\'');
        let value = if let Some(q) = quote {
            let body = &self.rest()[1..];
            let end = body.find(q).ok_or_else(|| format!("unclosed {q} in a value"))?;
            let v = body[..end].to_string();
            self.pos += end + 2;
            v
        } else {
            let len = self.rest().find(|c: char| c == ')' || c == '(' || c.is_whitespace()).unwrap_or(self.rest().len());
            let v = self.rest()[..len].to_string();
            self.pos += len;
            v
        };
        if value.is_empty() {
            return Err(format!("expected a value at column {}", self.column()));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(key: Key, negated: bool, v: &str) -> Expr {
        Expr::Cond(Cond { key, negated, values: vec![v.to_string()] })
    }

    fn expr(src: &str) -> Expr {
        parse_sketch(src).unwrap().unwrap().expr
    }

    fn malformed(src: &str) -> Malformed {
        parse_sketch(src).expect_err("malformed")
    }

    #[test]
    fn every_operator_spelling() {
        let want = cond(Key::Memory, false, "large");
        for src in ["// @filter: (memory is large)", "// @filter (memory is large)", "// @filter(mem=large)", "// @filter: (mem : large)", "//@filter (memory matches large)", "// @filter (MEM IS large)"] {
            assert_eq!(expr(src), want, "{src}");
        }
        assert_eq!(expr("// @filter (board is not atmega8*)"), cond(Key::Board, true, "atmega8*"));
        assert_eq!(expr("// @filter (board: arduino:avr:uno)"), cond(Key::Board, false, "arduino:avr:uno"));
        assert_eq!(expr("// @filter (tgt is -D__AVR__)"), cond(Key::Target, false, "-D__AVR__"));
        assert_eq!(expr("// @filter (board is 'my board')"), cond(Key::Board, false, "my board"));
        assert_eq!(expr("// @filter (board is notebook)"), cond(Key::Board, false, "notebook"), "`not` only as a word");
    }

    #[test]
    fn precedence_and_nesting() {
        let a = || cond(Key::Board, false, "a");
        let b = || cond(Key::Board, false, "b");
        let c = || cond(Key::Board, false, "c");
        assert_eq!(expr("// @filter (board is a) or (board is b) and (board is c)"), Expr::Or(vec![a(), Expr::And(vec![b(), c()])]));
        assert_eq!(expr("// @filter ((board is a) or (board is b)) and (board is c)"), Expr::And(vec![Expr::Or(vec![a(), b()]), c()]));
        assert_eq!(expr("// @filter not not (board is a)"), Expr::Not(Box::new(Expr::Not(Box::new(a())))));
        assert_eq!(expr("// @filter (not (board is a))"), Expr::Not(Box::new(a())));
    }

    #[test]
    fn unknown_keys_parse() {
        assert_eq!(expr("// @filter (colour is red)"), cond(Key::Unknown("colour".into()), false, "red"));
    }

    #[test]
    fn not_a_marker() {
        assert_eq!(parse_sketch("// @filters are great\n// @filterComponent(x)\nint x; // @filter\n"), Ok(None));
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
        assert!(malformed("// @filter (is uno)").message.contains("expected `is`"), "`is` read as a key, then no operator");
        assert!(malformed("// @filter (memory is large and platform is avr)").message.contains("expected `)`"));
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
        let e = expr("// @filter:\n// require:\n//   - memory: large\n//   - platform: esp32|teensy, rp2040\n//\n// exclude:\n//   - board: esp32c3\n// @end-filter\n");
        assert_eq!(
            e,
            Expr::And(vec![
                cond(Key::Memory, false, "large"),
                Expr::Cond(Cond { key: Key::Platform, negated: false, values: vec!["esp32".into(), "teensy".into(), "rp2040".into()] }),
                cond(Key::Board, true, "esp32c3"),
            ])
        );
    }
}
