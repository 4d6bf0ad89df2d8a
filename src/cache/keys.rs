//! The key rules, in one place. A key is a BLAKE3 hash under a versioned domain of
//! everything that shapes an output; bump a domain's version when its rule changes.
//!
//! | key | domain | inputs | owner |
//! |---|---|---|---|
//! | compiler identity | `compiler-identity-v2` | driver bytes, `-v` output | toolchain.rs |
//! | object, base | `object-base-v1` | compiler, normalised command, source bytes | objcache.rs |
//! | object, full | `object-full-v1` | base + every header the depfile names | here |
//! | object, timed | `object-time-v1` | full + the clock its time macros read (`time_words`) | here |
//! | compile failure | `compile-failure-v1` | base + headers the include scan finds | objcache.rs |
//! | discovery record | `preprocess-*` | compiler, command, source bytes (+ `-H` trace check) | discover/preprocess.rs |
//! | unit | `unit-v1` | its objects' keys, archive commands | here |
//! | link | `link-v2` | objects', units' and bootloader keys, link/size/objcopy commands | here |
//! | stage 1 | `stage1-v1` | every unit's key | here |
//!
//! Commands in keys have this build's folders replaced by placeholders (`normalize`
//! in objcache.rs), so two output folders or two machines share entries.
//!
//! An object whose source or headers name `__DATE__`, `__TIME__` or `__TIMESTAMP__`
//! (as ccache scans for them) is keyed by the timed key instead of the full one;
//! every other object keeps its full key, so their cache entries stay valid. Units
//! and links combine their objects' keys, so a timed object makes them timed too.
//!
//! Relocation (`--base-dir`, like ccache's `base_dir`): every path under the base
//! folder enters a key, and every stored record that names paths (object manifests,
//! discovery answers), as `\0BASE` plus the rest, and file contents are hashed with
//! the base written the same way (the sketch's generated `.ino.cpp` names the sketch in
//! its `#line` directives). A record is read back with the current base put in. So
//! the same tree at another path hits every entry. A translation unit whose output
//! holds its own path (`__FILE__`) keys the absolute base too (objcache.rs).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::hash::{Hash, Hasher};

/// The object's full key: its base key and every header the depfile names, each
/// with its path and content hash.
///
/// Header paths enter relative to the base folder (`relative_text`); an object that
/// may hold its own path (`own_path`, `__FILE__`) also keys the absolute base, so a
/// relocated tree compiles it again.
pub fn object_full<'p>(base: &Hash, headers: impl IntoIterator<Item = (&'p Path, Hash)>, own_path: bool) -> Hash {
    let mut h = Hasher::new("object-full-v1");
    h.bytes(base);
    for (path, hash) in headers {
        h.str(&relative_text(&path.to_string_lossy())).bytes(&hash);
    }
    if own_path {
        h.str("own-path").str(base_dir().unwrap_or(""));
    }
    h.finish()
}

/// The key of an object whose files name time macros: its full key and `time_words`.
pub fn object_timed(full: &Hash, words: &[String]) -> Hash {
    combine("object-time-v1", &[*full], &[words.to_vec()])
}

/// The time macros a file's bytes name, found by a plain scan (comments and
/// strings included, as ccache does: a false alarm only costs reuse).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeMacros {
    pub date: bool,
    pub time: bool,
    pub timestamp: bool,
}

impl TimeMacros {
    pub fn scan(bytes: &[u8]) -> TimeMacros {
        static RE: std::sync::OnceLock<regex::bytes::Regex> = std::sync::OnceLock::new();
        // `\b`: `X__DATE__` or `__DATE__X` is another identifier.
        let re = RE.get_or_init(|| regex::bytes::Regex::new(r"(?-u)\b__(DATE|TIME|TIMESTAMP)__\b").expect("valid regex"));
        let mut found = TimeMacros::default();
        for m in re.captures_iter(bytes) {
            match &m[1] {
                b"DATE" => found.date = true,
                b"TIME" => found.time = true,
                _ => found.timestamp = true,
            }
            if found.date && found.time && found.timestamp {
                break;
            }
        }
        found
    }

    pub fn any(self) -> bool {
        self.date || self.time || self.timestamp
    }

    /// `__DATE__` or `__TIME__`: the ones that read the clock (or SOURCE_DATE_EPOCH).
    pub fn read_clock(self) -> bool {
        self.date || self.time
    }
}

impl std::ops::BitOr for TimeMacros {
    type Output = TimeMacros;
    fn bitor(self, o: TimeMacros) -> TimeMacros {
        TimeMacros { date: self.date || o.date, time: self.time || o.time, timestamp: self.timestamp || o.timestamp }
    }
}

impl std::ops::BitOrAssign for TimeMacros {
    fn bitor_assign(&mut self, o: TimeMacros) {
        *self = *self | o;
    }
}

/// What a timed object's key holds for its time macros, as the compiler expands them:
/// * `__TIME__`: the local date and time to the second (`now`);
/// * `__DATE__` (without `__TIME__`): the local date;
/// * both, when the compiler takes them from SOURCE_DATE_EPOCH (`epoch`, given only
///   for a compiler that honours it): the variable's value instead of the clock;
/// * `__TIMESTAMP__`: the local modification time of each file that names it
///   (`timestamp_mtimes`, source first), as ccache keys it; GCC expands it from the
///   file's mtime, never from SOURCE_DATE_EPOCH.
///
/// Local time, as GCC's: two machines sharing a remote cache in other time zones
/// expand the same instant differently. `None` when the local time is unknown.
pub fn time_words(macros: TimeMacros, epoch: Option<&str>, now: i64, timestamp_mtimes: &[i64]) -> Option<Vec<String>> {
    let mut words = Vec::new();
    if macros.read_clock() {
        words.push(match epoch {
            Some(e) => format!("SOURCE_DATE_EPOCH={e}"),
            None if macros.time => format!("second {}", local_time(now)?),
            None => format!("date {}", &local_time(now)?[..10]),
        });
    }
    for &mtime in timestamp_mtimes {
        words.push(format!("timestamp {}", local_time(mtime)?));
    }
    Some(words)
}

/// `YYYY-MM-DD hh:mm:ss` in the local time zone (TZ), as the compiler's clock reads it.
pub fn local_time(secs: i64) -> Option<String> {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, and returns null on failure.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some(format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", tm.tm_year as i64 + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec))
}

/// A key over input keys and command lines, each argument length-delimited.
pub fn combine(domain: &str, inputs: &[Hash], commands: &[Vec<String>]) -> Hash {
    let mut h = Hasher::new(domain);
    for i in inputs {
        h.bytes(i);
    }
    for c in commands {
        h.u64(c.len() as u64);
        for a in c {
            h.str(&relative_text(a));
        }
    }
    h.finish()
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

/// A stage-1 unit: its objects' keys and its (normalised) archive commands.
pub fn unit(object_keys: &[Hash], archive_commands: &[Vec<String>]) -> Hash {
    combine("unit-v1", object_keys, archive_commands)
}

/// A link: every input's key (objects, units, bootloader) and the normalised link,
/// size and objcopy commands. The same key names a remembered link failure.
pub fn link(inputs: &[Hash], commands: &[Vec<String>]) -> Hash {
    combine("link-v2", inputs, commands)
}

/// The whole stage 1 of a board, for the report: every unit's key, or its failure.
pub fn stage1(unit_keys: impl Iterator<Item = Option<Hash>>) -> Hash {
    let mut h = Hasher::new("stage1-v1");
    for k in unit_keys {
        match k {
            Some(k) => h.bytes(&k),
            None => h.str("failed"),
        };
    }
    h.finish()
}

/// Names of output folders (not cache keys): a framework folder per set of board
/// properties, a library unit folder per include path, a sketch folder per source path.
pub fn framework_folder<'a>(props: impl Iterator<Item = (&'a String, &'a String)>) -> Hash {
    let mut h = Hasher::new("framework-props-v1");
    for (k, v) in props {
        h.str(k).str(v);
    }
    h.finish()
}

/// Relative to the base folder like keys, so a relocated tree builds into folders of
/// the same names: a sketch's own headers are copied into its folder, and their paths
/// are in its object's key.
pub fn library_unit_folder(include_dirs: &[PathBuf]) -> Hash {
    let mut h = Hasher::new("library-unit-dir-v1");
    for d in include_dirs {
        h.str(&relative_text(&d.to_string_lossy()));
    }
    h.finish()
}

pub fn sketch_folder(sketch_dir: &Path) -> Hash {
    Hasher::new("sketch-dir-v1").str(&relative_text(&sketch_dir.to_string_lossy())).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_delimited_and_domains_differ() {
        let a = combine("d", &[], &[vec!["ab".into(), "c".into()]]);
        let b = combine("d", &[], &[vec!["a".into(), "bc".into()]]);
        assert_ne!(a, b);
        assert_ne!(unit(&[a], &[]), link(&[a], &[]));
        assert_ne!(stage1([Some(a)].into_iter()), stage1([None].into_iter()));
    }

    /// Units and links of objects without time macros keep the keys they had.
    #[test]
    fn unit_and_link_keys_are_unchanged() {
        // An object key (the one objcache's test pins), and values computed by the
        // code before timed keys existed.
        let hex = "2ff44bc218ad85fe20950b48f77df6154465c245427203771d1bbc1205d39100";
        let input: Hash = std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
        assert_eq!(crate::hash::hex(&unit(&[input], &[vec!["ar".into()]])), "9d8fdbb458cec64b91d6c548288a54b582a6302ca7b2f83a0290a88447c17c61");
        assert_eq!(crate::hash::hex(&link(&[input], &[vec!["ld".into()]])), "7717d8986e5a171f5aea7c1f64b24565d2574264b4b1225b7e1854fe95b8a50e");
    }

    #[test]
    fn time_macros_are_found_as_whole_identifiers() {
        let scan = |s: &str| TimeMacros::scan(s.as_bytes());
        assert_eq!(scan("int x;"), TimeMacros::default());
        assert_eq!(scan("Serial.println(__DATE__);"), TimeMacros { date: true, ..Default::default() });
        assert_eq!(scan("x(__TIME__)\n// __TIMESTAMP__"), TimeMacros { time: true, timestamp: true, ..Default::default() });
        assert_eq!(scan("MY__DATE__ __TIME__S ___DATE__ __DATE___"), TimeMacros::default(), "other identifiers");
        assert!(scan("__DATE__").date && scan("\"__TIME__\"").time, "at the ends, in a string (ccache counts these too)");
        assert!(!TimeMacros { timestamp: true, ..Default::default() }.read_clock());
    }

    #[test]
    fn time_words_follow_what_the_compiler_reads() {
        let date = TimeMacros { date: true, ..Default::default() };
        let time = TimeMacros { time: true, ..Default::default() };
        let stamp = TimeMacros { timestamp: true, ..Default::default() };
        let t = 1_700_000_000;
        let local = local_time(t).unwrap();
        assert_eq!(time_words(date, None, t, &[]).unwrap(), vec![format!("date {}", &local[..10])]);
        assert_eq!(time_words(time, None, t, &[]).unwrap(), vec![format!("second {local}")]);
        assert_ne!(time_words(time, None, t, &[]), time_words(time, None, t + 1, &[]));
        assert_eq!(time_words(date | time, Some("5"), t, &[]), time_words(date | time, Some("5"), t + 99_999, &[]));
        assert_eq!(time_words(stamp, Some("5"), t, &[t - 60]).unwrap(), vec![format!("timestamp {}", local_time(t - 60).unwrap())]);
        assert_eq!(time_words(stamp, None, t, &[t - 60]), time_words(stamp, None, t + 86_400, &[t - 60]), "not the clock");
        assert_eq!(local.len(), "2023-11-14 22:13:20".len());
    }

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
