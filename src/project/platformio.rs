//! `platformio.ini`, read as PlatformIO reads it: Python's configparser rules
//! (`[section]`, `key = value` or `key: value`, keys lower-cased, indented lines
//! continue a value, whole-line `;`/`#` comments, inline ones after whitespace),
//! then PlatformIO's own layer: `[platformio] extra_configs`, `[env]` defaults
//! under every `[env:NAME]`, `extends`, and `${section.key}` / `${sysenv.NAME}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One section's options in file order of first appearance (later assignments win).
type Section = Vec<(String, String)>;

#[derive(Debug, Default, Clone)]
pub struct Config {
    /// Section name → options. Names keep their case, as PlatformIO's do.
    sections: BTreeMap<String, Section>,
    /// Section names in the order they first appeared (env order for "every env").
    order: Vec<String>,
    /// The main file, for messages.
    path: PathBuf,
}

/// How deep `${...}` and `extends` may nest before we call it a cycle.
const MAX_DEPTH: usize = 32;

impl Config {
    /// Read `platformio.ini` and every file its `[platformio] extra_configs` names.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::usage(format!("{}: {e}; a PlatformIO project needs a readable platformio.ini", path.display()))
        })?;
        let mut config = Config { path: path.to_path_buf(), ..Config::default() };
        config.parse_into(&text, path)?;
        // extra_configs (plain paths, relative to the project; globs not yet) are read after the
        // main file, and an option they set again overrides the main file's, as PlatformIO documents.
        let extras = config.list("platformio", "extra_configs")?;
        let base = path.parent().unwrap_or(Path::new("."));
        for extra in extras {
            let p = base.join(&extra);
            let text = std::fs::read_to_string(&p).map_err(|e| {
                Error::usage(format!("{}: extra_configs {}: {e}; fix the path or remove it", path.display(), p.display()))
            })?;
            config.parse_into(&text, &p)?;
        }
        Ok(config)
    }

    /// Parse ini text from memory (tests, and `fbuild ci`'s generated projects).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut config = Config { path: path.to_path_buf(), ..Config::default() };
        config.parse_into(text, path)?;
        Ok(config)
    }

    fn set(&mut self, section: &str, key: &str, value: String) {
        if !self.sections.contains_key(section) {
            self.order.push(section.to_string());
        }
        let options = self.sections.entry(section.to_string()).or_default();
        match options.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => options.push((key.to_string(), value)),
        }
    }

    fn parse_into(&mut self, text: &str, path: &Path) -> Result<()> {
        let bad = |n: usize, what: &str| {
            Error::usage(format!("{}:{n}: {what}; fix that line of the PlatformIO configuration", path.display()))
        };
        let mut section: Option<String> = None;
        // The option a continuation line extends: (section, key).
        let mut open: Option<(String, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() {
                // configparser keeps blank lines inside values; list splitting drops them anyway.
                continue;
            }
            if trimmed.starts_with(';') || trimmed.starts_with('#') {
                continue;
            }
            let value_part = strip_inline_comment(line);
            let indented = line.starts_with(' ') || line.starts_with('\t');
            if indented {
                if let Some((s, k)) = &open {
                    let options = self.sections.get_mut(s).expect("open section exists");
                    let slot = options.iter_mut().find(|(key, _)| key == k).expect("open key exists");
                    let more = value_part.trim();
                    if !more.is_empty() {
                        if !slot.1.is_empty() {
                            slot.1.push('\n');
                        }
                        slot.1.push_str(more);
                    }
                    continue;
                }
            }
            if trimmed.starts_with('[') {
                let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split_once(']')).map(|(n, _)| n.trim()) else {
                    return Err(bad(n, &format!("`{trimmed}` opens a section but has no closing `]`")));
                };
                if name.is_empty() {
                    return Err(bad(n, "an empty section name `[]`"));
                }
                if !self.sections.contains_key(name) {
                    self.order.push(name.to_string());
                    self.sections.insert(name.to_string(), Vec::new());
                }
                section = Some(name.to_string());
                open = None;
                continue;
            }
            let Some(current) = section.clone() else {
                return Err(bad(n, &format!("`{trimmed}` comes before any [section]")));
            };
            // The first `=` or `:` splits key from value, as configparser's default delimiters do.
            let Some(at) = value_part.find(['=', ':']) else {
                return Err(bad(n, &format!("`{trimmed}` is neither `key = value` nor a [section]")));
            };
            let key = value_part[..at].trim().to_lowercase();
            if key.is_empty() {
                return Err(bad(n, &format!("`{trimmed}` has no option name before `{}`", &value_part[at..at + 1])));
            }
            let value = value_part[at + 1..].trim().to_string();
            self.set(&current, &key, value);
            open = Some((current, key));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// Every `[env:NAME]`, in file order.
    pub fn env_names(&self) -> Vec<String> {
        self.order.iter().filter_map(|s| s.strip_prefix("env:")).map(|s| s.trim().to_string()).collect()
    }

    /// The envs to build: those asked for, else `default_envs`, else every env.
    /// An unknown name is a usage error listing the envs there are.
    pub fn select_envs(&self, asked: &[String]) -> Result<Vec<String>> {
        let all = self.env_names();
        if all.is_empty() {
            return Err(Error::usage(format!("{} has no [env:NAME] section; add one naming a board", self.path.display())));
        }
        let wanted = if !asked.is_empty() {
            asked.to_vec()
        } else {
            let defaults = self.list("platformio", "default_envs")?;
            if defaults.is_empty() { all.clone() } else { defaults }
        };
        for env in &wanted {
            if !all.contains(env) {
                return Err(Error::usage(format!(
                    "unknown env `{env}` in {}; its envs are: {}",
                    self.path.display(),
                    all.join(", ")
                )));
            }
        }
        Ok(wanted)
    }

    /// An option's raw value in `section`, following `extends`, then `[env]` for env
    /// sections; `None` when nowhere set.
    fn raw(&self, section: &str, key: &str, depth: usize, chain: &mut Vec<String>) -> Result<Option<String>> {
        if depth > MAX_DEPTH || chain.iter().any(|s| s == section) {
            chain.push(section.to_string());
            return Err(Error::usage(format!(
                "circular `extends` in {}: {}; break the cycle",
                self.path.display(),
                chain.join(" -> ")
            )));
        }
        chain.push(section.to_string());
        let own = self.sections.get(section);
        if let Some(v) = own.and_then(|o| o.iter().find(|(k, _)| k == key)).map(|(_, v)| v.clone()) {
            chain.pop();
            return Ok(Some(v));
        }
        if key != "extends" {
            if let Some(parents) = own.and_then(|o| o.iter().find(|(k, _)| k == "extends")).map(|(_, v)| v.clone()) {
                for parent in split_list(&parents) {
                    if !self.sections.contains_key(&parent) {
                        return Err(Error::usage(format!(
                            "[{section}] extends unknown section [{parent}] in {}; name a section that exists (e.g. env:NAME)",
                            self.path.display()
                        )));
                    }
                    if let Some(v) = self.raw(&parent, key, depth + 1, chain)? {
                        chain.pop();
                        return Ok(Some(v));
                    }
                }
            }
        }
        chain.pop();
        if section.starts_with("env:") {
            if let Some(v) = self.sections.get("env").and_then(|o| o.iter().find(|(k, _)| k == key)) {
                return Ok(Some(v.1.clone()));
            }
        }
        Ok(None)
    }

    /// An option's value with `${...}` expanded; `None` when unset.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<String>> {
        match self.raw(section, key, 0, &mut Vec::new())? {
            Some(v) => Ok(Some(self.interpolate(section, &v, 0)?)),
            None => Ok(None),
        }
    }

    /// An env's option (`[env:NAME]`, its `extends`, then `[env]`).
    pub fn env(&self, env: &str, key: &str) -> Result<Option<String>> {
        self.get(&format!("env:{env}"), key)
    }

    /// A list option (one item a line or comma-separated), empty when unset.
    pub fn list(&self, section: &str, key: &str) -> Result<Vec<String>> {
        Ok(self.get(section, key)?.map(|v| split_list(&v)).unwrap_or_default())
    }

    /// A list option whose items may hold commas (build_flags): one item a line.
    pub fn lines(&self, section: &str, key: &str) -> Result<Vec<String>> {
        Ok(self
            .get(section, key)?
            .map(|v| v.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
            .unwrap_or_default())
    }

    fn interpolate(&self, section: &str, value: &str, depth: usize) -> Result<String> {
        if !value.contains("${") {
            return Ok(value.to_string());
        }
        if depth > MAX_DEPTH {
            return Err(Error::usage(format!(
                "{}: `${{...}}` references in [{section}] loop; break the cycle",
                self.path.display()
            )));
        }
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(Error::usage(format!(
                    "{}: [{section}] has an unclosed `${{` in `{value}`; write ${{section.option}}",
                    self.path.display()
                )));
            };
            let reference = &after[..end];
            let Some((sec, key)) = reference.rsplit_once('.') else {
                return Err(Error::usage(format!(
                    "{}: [{section}] `${{{reference}}}` is not ${{section.option}}",
                    self.path.display()
                )));
            };
            let replacement = if sec == "sysenv" {
                std::env::var(key).unwrap_or_default()
            } else {
                let target = if sec == "this" { section } else { sec };
                if !self.sections.contains_key(target) && target != "env" {
                    return Err(Error::usage(format!(
                        "{}: `${{{reference}}}` names section [{target}], which does not exist",
                        self.path.display()
                    )));
                }
                let raw = self.raw(target, &key.to_lowercase(), 0, &mut Vec::new())?.ok_or_else(|| {
                    Error::usage(format!(
                        "{}: `${{{reference}}}`: [{target}] has no option `{key}`",
                        self.path.display()
                    ))
                })?;
                self.interpolate(target, &raw, depth + 1)?
            };
            out.push_str(&replacement);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// configparser's inline comments: `;` or `#` after whitespace.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b';' || bytes[i] == b'#') && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

/// PlatformIO's list values: items split by newlines and commas, blanks dropped.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> Config {
        Config::parse(text, Path::new("platformio.ini")).unwrap()
    }

    #[test]
    fn env_defaults_extends_and_multiline_values() {
        let c = ini("; top\n[env]\nframework = arduino\nbuild_flags = -DA\n\n[common]\nbuild_flags =\n  -DB ; why\n  -DC=1\n# x\n[env:uno]\nboard: uno\nextends = common\n[env:mega]\nBoard = megaatmega2560\n");
        assert_eq!(c.env_names(), vec!["uno", "mega"]);
        assert_eq!(c.env("uno", "board").unwrap().as_deref(), Some("uno"));
        assert_eq!(c.env("mega", "board").unwrap().as_deref(), Some("megaatmega2560"));
        assert_eq!(c.lines("env:uno", "build_flags").unwrap(), vec!["-DB", "-DC=1"]);
        assert_eq!(c.lines("env:mega", "build_flags").unwrap(), vec!["-DA"]);
        assert_eq!(c.env("uno", "framework").unwrap().as_deref(), Some("arduino"));
        assert_eq!(c.env("uno", "lib_deps").unwrap(), None);
    }

    #[test]
    fn interpolation_of_sections_this_and_sysenv() {
        std::env::set_var("FBUILD_PIO_TEST_VAR", "42");
        let c = ini("[common]\nf = -DX=${sysenv.FBUILD_PIO_TEST_VAR}\n[env:a]\nboard = uno\nbuild_flags = ${common.f} -DB=${this.board}\nurl = http://x#frag\n");
        assert_eq!(c.env("a", "build_flags").unwrap().as_deref(), Some("-DX=42 -DB=uno"));
        // `#` without whitespace before it is not a comment.
        assert_eq!(c.env("a", "url").unwrap().as_deref(), Some("http://x#frag"));
        let bad = ini("[env:a]\nx = ${nowhere.y}\n");
        assert!(bad.env("a", "x").unwrap_err().to_string().contains("[nowhere]"));
    }

    #[test]
    fn default_envs_then_all_and_unknown_env() {
        let c = ini("[platformio]\ndefault_envs = b, a\n[env:a]\n[env:b]\n[env:c]\n");
        assert_eq!(c.select_envs(&[]).unwrap(), vec!["b", "a"]);
        assert_eq!(c.select_envs(&["c".into()]).unwrap(), vec!["c"]);
        let e = c.select_envs(&["d".into()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("unknown env `d`") && e.to_string().contains("a, b, c"), "{e}");
        let all = ini("[env:x]\n[env:y]\n");
        assert_eq!(all.select_envs(&[]).unwrap(), vec!["x", "y"]);
    }

    #[test]
    fn extra_configs_add_sections_and_override() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("platformio.ini"), "[platformio]\nextra_configs = more.ini\n[env:a]\nboard = uno\nbuild_flags = -DMAIN\n").unwrap();
        std::fs::write(d.path().join("more.ini"), "[env]\nplatform = atmelavr\n[env:a]\nbuild_flags = -DEXTRA\n[env:b]\nboard = leonardo\n").unwrap();
        let c = Config::load(&d.path().join("platformio.ini")).unwrap();
        assert_eq!(c.env_names(), vec!["a", "b"]);
        assert_eq!(c.env("a", "build_flags").unwrap().as_deref(), Some("-DEXTRA"));
        assert_eq!(c.env("a", "board").unwrap().as_deref(), Some("uno"));
        assert_eq!(c.env("b", "platform").unwrap().as_deref(), Some("atmelavr"));
    }

    #[test]
    fn circular_extends_is_one_usage_error() {
        let c = ini("[env:a]\nextends = env:b\n[env:b]\nextends = env:a\n");
        let e = c.env("a", "board").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("circular `extends`") && e.to_string().contains("env:a -> env:b -> env:a"), "{e}");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, line) in [("[env:a]\nboard uno\n", 2), ("key = v\n", 1), ("[env:a\n", 1), ("[env:a]\n= x\n", 2)] {
            let e = Config::parse(text, Path::new("p/platformio.ini")).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().starts_with(&format!("p/platformio.ini:{line}: ")), "{e}");
            assert_eq!(e.to_string().lines().count(), 1);
        }
    }
}
