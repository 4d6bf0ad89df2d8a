//! The one path normaliser: every placeholder a key or a stored record writes for a
//! folder of this build (`\0FW`, `\0SKETCH`, `\0SRC`, `\0OBJ`, `\0UNIT`) and for the
//! base folder (`\0BASE`, `--base-dir`) is put in and taken out here, so two output
//! folders, or the same tree at two paths, share cache entries.

use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

/// The framework (core) build folder.
pub const FW: &str = "\u{0}FW";
/// A sketch's output folder.
pub const SKETCH: &str = "\u{0}SKETCH";
/// A source file, or a sketch's source folder.
pub const SRC: &str = "\u{0}SRC";
/// An object file.
pub const OBJ: &str = "\u{0}OBJ";
/// A stage-1 unit's folder.
pub const UNIT: &str = "\u{0}UNIT";

/// Replace run-specific paths in arguments with stable placeholders.
pub fn normalize_args(args: &[String], replacements: &[(&Path, &str)]) -> Vec<String> {
    args.iter()
        .map(|a| {
            let mut a = a.clone();
            for (path, placeholder) in replacements {
                let p = path.to_string_lossy();
                if !p.is_empty() && a.contains(p.as_ref()) {
                    a = a.replace(p.as_ref(), placeholder);
                }
            }
            a
        })
        .collect()
}

/// A compile command as its object's key sees it: its object and source as placeholders.
pub fn object_args(args: &[String], object: &Path, source: &Path) -> Vec<String> {
    normalize_args(args, &[(object, OBJ), (source, SRC)])
}

/// A discovery command as its record's key sees it: its source as a placeholder.
/// Borrowed where nothing is replaced: a warm run keys every command of every
/// sketch, each with the whole include path.
pub fn discovery_args<'a>(args: impl IntoIterator<Item = &'a String>, source: &Path) -> impl Iterator<Item = Cow<'a, str>> {
    let source = source.to_string_lossy().into_owned();
    args.into_iter().map(move |a| if !source.is_empty() && a.contains(&source) { Cow::Owned(a.replace(&source, SRC)) } else { Cow::Borrowed(a.as_str()) })
}

/// An archive command as its unit's key sees it: the unit's folder as a placeholder.
pub fn unit_command(args: &[String], unit_dir: &Path) -> Vec<String> {
    normalize_args(args, &[(unit_dir, UNIT)])
}

/// A link, size or objcopy command as the link's key sees it: the framework folder
/// (also as the sketch's relative path to it), the sketch's output and source folders.
pub fn link_command(args: &[String], fw_from_sketch: &Path, sketch_out: &Path, fw: &Path, sketch_src: &Path) -> Vec<String> {
    normalize_args(args, &[(fw_from_sketch, FW), (sketch_out, SKETCH), (fw, FW), (sketch_src, SRC)])
}

/// Run-specific paths and their placeholders, longest path first so a folder
/// inside another is replaced before its parent.
pub struct PathMap<'a>(Vec<(&'a Path, &'static str)>);

impl<'a> PathMap<'a> {
    pub fn new(sketch_out: &'a Path, sketch_src: &'a Path, framework: &'a Path) -> PathMap<'a> {
        let mut v = vec![(sketch_out, SKETCH), (sketch_src, SRC), (framework, FW)];
        v.retain(|(p, _)| !p.as_os_str().is_empty());
        v.sort_by_key(|(p, _)| std::cmp::Reverse(p.as_os_str().len()));
        PathMap(v)
    }

    pub fn normalize(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (p, placeholder) in &self.0 {
            t = t.replace(p.to_string_lossy().as_ref(), placeholder);
        }
        t
    }

    pub fn restore(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (p, placeholder) in &self.0 {
            t = t.replace(placeholder, p.to_string_lossy().as_ref());
        }
        t
    }
}

/// The base folder of this process, set once at start; `None` keys absolute paths.
static BASE_DIR: OnceLock<Option<String>> = OnceLock::new();

/// What a path under the base folder is written as in keys and stored records.
pub const BASE_MARK: &str = "\u{0}BASE";

/// Set the base folder (absolute). `/` turns relocation off: every path would be "relative".
/// Only the first call counts; a process has one base.
pub fn set_base_dir(dir: &Path) {
    let text = dir.to_string_lossy().trim_end_matches('/').to_string();
    let _ = BASE_DIR.set(if text.is_empty() || !dir.is_absolute() { None } else { Some(text) });
}

pub fn base_dir() -> Option<&'static str> {
    BASE_DIR.get().and_then(|b| b.as_deref())
}

/// A byte that may continue a file name: a match of the base followed by one is another
/// folder (`/w/a` in `/w/ab`), not the base.
fn continues_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~' | b'@')
}

/// Every occurrence of `base` that ends a path component replaced by `mark`.
fn replace_at_boundaries(text: &[u8], base: &[u8], mark: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut from = 0;
    let mut i = 0;
    while i + base.len() <= text.len() {
        if text[i] == base[0] && &text[i..i + base.len()] == base && !text.get(i + base.len()).is_some_and(|&b| continues_name(b)) {
            let o = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
            o.extend_from_slice(&text[from..i]);
            o.extend_from_slice(mark);
            i += base.len();
            from = i;
        } else {
            i += 1;
        }
    }
    out.map(|mut o| {
        o.extend_from_slice(&text[from..]);
        o
    })
}

/// Bytes as keys see them: the base folder written as `BASE_MARK`.
pub fn relative_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match base_dir().and_then(|b| replace_at_boundaries(bytes, b.as_bytes(), BASE_MARK.as_bytes())) {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(bytes),
    }
}

/// Text (an argument, a path, a stored record) as keys and the store see it.
pub fn relative_text(text: &str) -> Cow<'_, str> {
    match relative_bytes(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(v) => Cow::Owned(String::from_utf8(v).expect("a str with a str replaced")),
    }
}

/// A stored record read back: the current base folder put in for `BASE_MARK`.
pub fn absolute_text(text: &str) -> Cow<'_, str> {
    match base_dir() {
        Some(b) if text.contains(BASE_MARK) => Cow::Owned(text.replace(BASE_MARK, b)),
        _ => Cow::Borrowed(text),
    }
}

/// `relative_text` for stored bytes (UTF-8 records; anything else is kept as it is).
pub fn relative_record(bytes: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(bytes) {
        Ok(_) => relative_bytes(bytes),
        Err(_) => Cow::Borrowed(bytes),
    }
}

/// `absolute_text` for stored bytes.
pub fn absolute_record(bytes: Vec<u8>) -> Vec<u8> {
    match String::from_utf8(bytes) {
        Ok(s) => match absolute_text(&s) {
            Cow::Owned(o) => o.into_bytes(),
            Cow::Borrowed(_) => s.into_bytes(),
        },
        Err(e) => e.into_bytes(),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_replaced_only_where_a_path_component_ends() {
        let m = |t: &str| replace_at_boundaries(t.as_bytes(), b"/w/a", b"@").map(|v| String::from_utf8(v).unwrap());
        assert_eq!(m("-I/w/a/lib").as_deref(), Some("-I@/lib"));
        assert_eq!(m("/w/a").as_deref(), Some("@"));
        assert_eq!(m("#line 1 \"/w/a/x.ino\" and /w/a/y").as_deref(), Some("#line 1 \"@/x.ino\" and @/y"));
        assert_eq!(m("/w/ab/x"), None, "another folder that starts alike");
        assert_eq!(m("/w/a.old"), None);
    }
}
