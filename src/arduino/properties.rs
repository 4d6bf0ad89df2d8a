//! Arduino property files (`boards.txt`, `platform.txt`, `library.properties`):
//! `key=value` lines, `{key}` references expanded recursively, OS-specific
//! `key.linux` overrides, as in the Arduino platform specification.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// How deep `{a}` -> `{b}` -> ... chains may go before we stop (cycles).
const MAX_EXPANSION_PASSES: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    map: BTreeMap<String, String>,
}

impl Properties {
    pub fn new() -> Properties {
        Properties::default()
    }

    /// Parse property text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Properties> {
        let mut props = Properties::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(Error::usage(format!(
                    "{origin}:{}: malformed line (expected key=value): {line}; fix or remove that line",
                    index + 1
                )));
            };
            props.set(key.trim(), value.trim());
        }
        props.apply_os_overrides();
        Ok(props)
    }

    /// Read a property file; a missing optional file (`*.local.txt`) is the caller's choice.
    pub fn load(path: &Path) -> Result<Properties> {
        let bytes = std::fs::read(path).at(path)?;
        Properties::parse(&String::from_utf8_lossy(&bytes), &path.display().to_string())
    }

    /// `key.linux=...` replaces `key=...` on Linux (the only OS fbuild runs on).
    fn apply_os_overrides(&mut self) {
        let overrides: Vec<(String, String)> = self
            .map
            .iter()
            .filter_map(|(k, v)| k.strip_suffix(".linux").map(|base| (base.to_string(), v.clone())))
            .collect();
        for (k, v) in overrides {
            self.map.insert(k, v);
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn get_or_empty(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.map.insert(key.into(), value.into());
    }

    pub fn remove(&mut self, key: &str) {
        self.map.remove(key);
    }

    /// Later values win, as when platform.local.txt overrides platform.txt.
    pub fn merge(&mut self, other: &Properties) {
        for (k, v) in &other.map {
            self.map.insert(k.clone(), v.clone());
        }
    }

    /// All keys below `prefix.`, with the prefix removed (`uno.build.mcu` -> `build.mcu`).
    pub fn subtree(&self, prefix: &str) -> Properties {
        let dotted = format!("{prefix}.");
        let map = self
            .map
            .range(dotted.clone()..)
            .take_while(|(k, _)| k.starts_with(&dotted))
            .map(|(k, v)| (k[dotted.len()..].to_string(), v.clone()))
            .collect();
        Properties { map }
    }

    /// First-level key names (`uno`, `nano`, `menu`) in sorted order.
    pub fn first_level_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .map
            .keys()
            .map(|k| k.split('.').next().unwrap_or(k).to_string())
            .collect();
        keys.dedup();
        keys
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.map.iter()
    }

    /// Replace `{key}` references with their values until nothing changes.
    /// Unknown references stay as written, as arduino-cli leaves them.
    pub fn expand(&self, text: &str) -> String {
        self.expand_with(text, &[])
    }

    /// Expand with `overlay` values taking precedence over stored ones (per-file
    /// values such as `source_file`, without cloning the whole property set).
    pub fn expand_with(&self, text: &str, overlay: &[(&str, String)]) -> String {
        let mut current = text.to_string();
        for _ in 0..MAX_EXPANSION_PASSES {
            let next = self.expand_once(&current, overlay);
            if next == current {
                break;
            }
            current = next;
        }
        current
    }

    fn expand_once(&self, text: &str, overlay: &[(&str, String)]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find(['}', '{']) {
                Some(close) if after.as_bytes()[close] == b'}' => {
                    let key = &after[..close];
                    let value = overlay.iter().find(|(k, _)| *k == key).map(|(_, v)| v).or_else(|| self.map.get(key));
                    match value {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push('{');
                            out.push_str(key);
                            out.push('}');
                        }
                    }
                    rest = &after[close + 1..];
                }
                _ => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Expand the value stored under `key` (empty when absent).
    pub fn expanded(&self, key: &str) -> String {
        self.expand(self.get_or_empty(key))
    }
}

/// The text that `split_command_line` splits back into exactly `words`: a word with a
/// space, or one that starts with a quote, is wrapped in the quote that none of its
/// space-separated pieces but the last ends with (PlatformIO's `build_flags` words, as
/// `-DGREETING="hello from mega"`, reach a recipe this way). `None` when neither quote
/// can carry a word.
pub fn join_command_line(words: &[String]) -> Option<String> {
    let mut parts = Vec::with_capacity(words.len());
    for w in words {
        if w.is_empty() || (!w.contains(' ') && !w.starts_with(['"', '\''])) {
            parts.push(w.clone());
            continue;
        }
        let fits = |q: char| {
            let wrapped = format!("{q}{w}{q}");
            let pieces: Vec<&str> = wrapped.split(' ').collect();
            pieces[..pieces.len() - 1].iter().all(|p| !p.ends_with(q))
        };
        let q = ['"', '\''].into_iter().find(|&q| fits(q))?;
        parts.push(format!("{q}{w}{q}"));
    }
    Some(parts.join(" "))
}

/// Split an expanded recipe into arguments as arduino-cli does
/// (`properties.SplitQuotedString(line, "\"'", false)`): words are separated by single
/// spaces; a word that *starts* with a quote opens a quoted argument that runs to the
/// first word *ending* with the same quote, and those two quotes are removed. Quotes
/// inside a word stay, so `-DVARIANT_H="variant.h"` reaches the compiler with its
/// quotes. Empty words and empty quoted arguments are dropped; an unclosed quote keeps
/// what it gathered as the last argument.
pub fn split_command_line(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut open: Option<char> = None;
    let mut quoted = String::new();
    for word in line.split(' ') {
        let mut word = word;
        if open.is_none() {
            match word.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    open = Some(q);
                    word = &word[1..];
                    quoted.clear();
                }
                _ => {
                    if !word.trim().is_empty() {
                        args.push(word.to_string());
                    }
                    continue;
                }
            }
        }
        let q = open.expect("inside a quoted argument");
        match word.strip_suffix(q) {
            Some(last) => {
                quoted.push_str(last);
                if !quoted.trim().is_empty() {
                    args.push(std::mem::take(&mut quoted));
                }
                open = None;
            }
            None => {
                quoted.push_str(word);
                quoted.push(' ');
            }
        }
    }
    if open.is_some() && !quoted.trim().is_empty() {
        args.push(quoted.trim_end_matches(' ').to_string());
    }
    args
}

/// `KEY=VALUE` as `--build-property` and `board-sim --property` take it (the value may
/// hold `=`; the key is trimmed and must not be empty).
pub fn parse_assignment(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected key=value, e.g. compiler.cpp.extra_flags=-DFOO".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_comments() {
        let p = Properties::parse("# c\n\nname = Uno \nuno.build.mcu=atmega328p\n", "t").unwrap();
        assert_eq!(p.get("name"), Some("Uno"));
        assert_eq!(p.get("uno.build.mcu"), Some("atmega328p"));
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let err = Properties::parse("a=1\nthis is wrong\n", "boards.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "boards.txt:2: malformed line (expected key=value): this is wrong; fix or remove that line"
        );
    }

    #[test]
    fn value_may_contain_equals() {
        let p = Properties::parse("k=-DA=1 -DB=2\n", "t").unwrap();
        assert_eq!(p.get("k"), Some("-DA=1 -DB=2"));
    }

    #[test]
    fn linux_override_wins() {
        let p = Properties::parse("tool.cmd=a.exe\ntool.cmd.linux=a\ntool.cmd.windows=b.exe\n", "t").unwrap();
        assert_eq!(p.get("tool.cmd"), Some("a"));
    }

    #[test]
    fn expands_recursively_and_leaves_unknown() {
        let p = Properties::parse("a={b}/x\nb={c}y\nc=z\n", "t").unwrap();
        assert_eq!(p.expand("<{a}> {unknown} {"), "<zy/x> {unknown} {");
    }

    #[test]
    fn overlay_wins_over_stored_values() {
        let p = Properties::parse("archive_file_path={build.path}/core.a\nbuild.path=/b\n", "t").unwrap();
        assert_eq!(p.expand("ar \"{archive_file_path}\""), "ar \"/b/core.a\"");
        assert_eq!(p.expand_with("ar \"{archive_file_path}\"", &[("archive_file_path", "/x/L.a".into())]), "ar \"/x/L.a\"");
    }

    #[test]
    fn expansion_cycle_terminates() {
        let p = Properties::parse("a={b}\nb={a}\n", "t").unwrap();
        let out = p.expand("{a}");
        assert!(out == "{a}" || out == "{b}");
    }

    #[test]
    fn subtree_strips_prefix() {
        let p = Properties::parse("uno.name=Uno\nuno.build.mcu=m\nunoX.name=no\n", "t").unwrap();
        let s = p.subtree("uno");
        assert_eq!(s.get("name"), Some("Uno"));
        assert_eq!(s.get("build.mcu"), Some("m"));
        assert_eq!(s.iter().count(), 2);
    }

    #[test]
    fn splits_quotes_like_arduino() {
        let args = split_command_line(
            r#""/usr/bin/avr-g++" -c '-DUSB_MANUFACTURER="Unknown"' "-I/a b/c" x"#,
        );
        assert_eq!(args, vec!["/usr/bin/avr-g++", "-c", "-DUSB_MANUFACTURER=\"Unknown\"", "-I/a b/c", "x"]);
    }

    #[test]
    fn quotes_inside_a_word_are_kept() {
        // STM32duino's build.info.flags: the macro's value must keep its quotes.
        let args = split_command_line(r#"gcc -DBOARD_NAME="BLUEPILL_F103C8" -DVARIANT_H="variant_PILL_F103Cx.h" "-I/v/F103C8T_F103CB(T-U)""#);
        assert_eq!(args, vec!["gcc", "-DBOARD_NAME=\"BLUEPILL_F103C8\"", "-DVARIANT_H=\"variant_PILL_F103Cx.h\"", "-I/v/F103C8T_F103CB(T-U)"]);
        // A quoted argument runs to the word that ends with its quote; inner ones stay.
        assert_eq!(split_command_line(r#""-D__getreent()=_impure_ptr" '-DX="a b"' y"#), vec!["-D__getreent()=_impure_ptr", "-DX=\"a b\"", "y"]);
    }

    #[test]
    fn empty_words_and_empty_quotes_are_dropped() {
        // `{build.extra_flags}` expanding to nothing leaves double spaces and `""`.
        assert_eq!(split_command_line(r#"a  "" b   c"#), vec!["a", "b", "c"]);
        assert_eq!(split_command_line("   "), Vec::<String>::new());
    }

    #[test]
    fn unclosed_quote_keeps_what_it_gathered() {
        assert_eq!(split_command_line(r#"a "b c"#), vec!["a", "b c"]);
    }

    #[test]
    fn joined_words_split_back_into_the_same_words() {
        for words in [
            vec!["-DGREETING=\"hello from mega\"", "-Os"],
            vec!["-DA='x y'", "-DB=\"q\""],
            vec!["\"quoted\"", "plain", "'single'"],
            vec!["a b c", "-DX=\"1\" 2"],
        ] {
            let words: Vec<String> = words.into_iter().map(String::from).collect();
            let text = join_command_line(&words).unwrap();
            assert_eq!(split_command_line(&text), words, "{text}");
        }
        // A word both quotes would end early cannot be carried.
        assert_eq!(join_command_line(&["a\" b' c".to_string()]), None);
    }
}
