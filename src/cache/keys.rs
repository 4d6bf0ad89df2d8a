//! The key rules, in one place. A key is a BLAKE3 hash under a versioned domain of
//! everything that shapes an output; bump a domain's version when its rule changes.
//! Every domain is a const in `domain` and a row of `DOMAINS` (the table below is
//! that table); a unit test fails when a domain string appears anywhere else in src/.
//!
//! | key | domain | inputs |
//! |---|---|---|
//! | compiler version record | `compiler-version-v1` | driver path, size, mtime |
//! | compiler binary | `compiler-binary-v1` | driver path, size, mtime, `--version` |
//! | system include list record | `system-includes-v2` | compiler binary |
//! | compiler identity | `compiler-identity-v2` | compiler binary, system folders' file stamps |
//! | predefined macros record | `predefined-macros-v1` | compiler identity, machine flags |
//! | PCH probe record | `pch-probe-v1` | compiler identity, a compile's flags without folders and files |
//! | precompiled header | `pch-v1` | compiler, normalised `.gch` command, every header its depfile names |
//! | object, base | `object-base-v1` | compiler, normalised command, source bytes |
//! | object, full | `object-full-v1` | base + every header the depfile names |
//! | object, timed | `object-time-v1` | full + the clock its time macros read (`time_words`) |
//! | compile failure | `compile-failure-v1` | base + headers the include scan finds |
//! | discovery answer | `discover-preprocess-v3` | compiler, command, source bytes |
//! | discovery shape | `discover-shape-v1` | the same without `-I` folders |
//! | discovery guess | `discover-guess-v1` | compiler, command, source bytes |
//! | discovery defined names | `discover-defined-v1` | compiler, command without `-I` and source |
//! | discovery header set | `discover-header-set-v2` | headers read and their hashes (v2: a binary record) |
//! | unit | `unit-v1` | its objects' keys, archive commands |
//! | link | `link-v2` | objects', units' and bootloader keys, link/size/objcopy commands |
//! | stage 1 | `stage1-v1` | every unit's key |
//!
//! Not cache keys, but hashes under a domain all the same (names of folders and
//! files, a shard's owner, in-memory interning): `framework-props-v1`,
//! `library-unit-dir-v1`, `sketch-dir-v1`, `sketch-properties-v1`, `precompiled-v1`,
//! `prebuild-hooks-v1`, `stand-in-v1`, `discover-header-list-v1`, `shard-v1`; and one
//! file name that is not a hash at all, the kept stat -> hash table `file-hashes-v1`.
//!
//! Commands in keys have this build's folders replaced by placeholders (`cache::paths`),
//! so two output folders or two machines share entries.
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
//! holds its own path (`__FILE__`) keys the absolute base too (cache/objects.rs).

use std::path::{Path, PathBuf};

use super::paths::{base_dir, relative_text};
use crate::cache::hash::{Framed, Hash, Hasher};

/// Declares each domain once: a const in `domain` and a row of `DOMAINS`.
macro_rules! domains {
    ($( $(#[doc = $doc:expr])* $name:ident = $text:literal; )*) => {
        /// Every hash domain of fbuild, with its version in its name.
        pub mod domain {
            $( $(#[doc = $doc])* pub const $name: &str = $text; )*
        }
        /// The table of every domain (the unit test checks src/ against it).
        pub const DOMAINS: &[&str] = &[$($text),*];
    };
}

domains! {
    /// A compiler driver's `--version`, remembered by its file stamp.
    COMPILER_VERSION = "compiler-version-v1";
    /// The driver binary: stamp and version.
    COMPILER_BINARY = "compiler-binary-v1";
    /// The compiler's include search list, remembered by its binary.
    SYSTEM_INCLUDES = "system-includes-v2";
    /// The compiler as keys see it: binary and its system folders.
    COMPILER_IDENTITY = "compiler-identity-v2";
    /// The compiler's predefined macros for a set of machine flags.
    PREDEFINED_MACROS = "predefined-macros-v1";
    /// Whether a compiler uses a `.gch` built with a set of flags.
    PCH_PROBE = "pch-probe-v1";
    /// A precompiled header: its command and every header it read.
    PCH = "pch-v1";
    /// An object before its headers are known.
    OBJECT_BASE = "object-base-v1";
    /// An object with every header it read.
    OBJECT_FULL = "object-full-v1";
    /// An object whose files name time macros.
    OBJECT_TIME = "object-time-v1";
    /// A remembered compile failure.
    COMPILE_FAILURE = "compile-failure-v1";
    /// A discovery preprocessor answer.
    DISCOVER_PREPROCESS = "discover-preprocess-v3";
    /// A discovery command without its include folders.
    DISCOVER_SHAPE = "discover-shape-v1";
    /// A stored guess of a source's includes.
    DISCOVER_GUESS = "discover-guess-v1";
    /// The names a discovery command defines on an empty input.
    DISCOVER_DEFINED = "discover-defined-v1";
    /// A stored set of headers a discovery answer read.
    DISCOVER_HEADER_SET = "discover-header-set-v2";
    /// In memory only: one copy of each list of header paths.
    DISCOVER_HEADER_LIST = "discover-header-list-v1";
    /// A stage-1 unit (an archive of objects).
    UNIT = "unit-v1";
    /// A link and its size and objcopy steps.
    LINK = "link-v2";
    /// The whole stage 1 of a board, for the report.
    STAGE1 = "stage1-v1";
    /// Folder name: a framework build per set of board properties.
    FRAMEWORK_PROPS = "framework-props-v1";
    /// Folder name: a library unit per include path.
    LIBRARY_UNIT_DIR = "library-unit-dir-v1";
    /// Folder name: a sketch per source folder.
    SKETCH_DIR = "sketch-dir-v1";
    /// A sketch's own property overlay.
    SKETCH_PROPERTIES = "sketch-properties-v1";
    /// A library's precompiled folder.
    PRECOMPILED = "precompiled-v1";
    /// Pre-build hook commands and the files they read.
    PREBUILD_HOOKS = "prebuild-hooks-v1";
    /// File name: a discovery stand-in source.
    STAND_IN = "stand-in-v1";
    /// Which shard owns a sketch.
    SHARD = "shard-v1";
    /// File name, not hashed: the object cache's kept stat -> hash table at the
    /// cache root (versioned here with the rest so a bump is made in one place).
    FILE_HASHES = "file-hashes-v1";
}

/// An object before its headers are known: the compiler, its source's bytes and its
/// command with this job's paths already replaced (`paths::object_args`).
pub fn object_base(compiler: &Hash, source: &Hash, args: &[String]) -> Hash {
    let mut h = Hasher::new(domain::OBJECT_BASE);
    h.bytes(compiler).bytes(source);
    for a in args {
        h.str(&relative_text(a));
    }
    h.finish()
}

/// What a compile failure's key reads of one header its include scan reached.
pub enum FailureInput<'a> {
    /// A header found, with its content hash (`None`: in a compiler folder, by path only).
    Header(&'a Path, Option<Hash>),
    /// An `#include` found nowhere on the search path.
    Missing(&'a str),
}

/// A remembered compile failure: its base key and every header its include scan reaches.
pub fn compile_failure<'a>(base: &Hash, reached: impl IntoIterator<Item = FailureInput<'a>>) -> Hash {
    let mut h = Hasher::new(domain::COMPILE_FAILURE);
    h.bytes(base);
    for r in reached {
        match r {
            FailureInput::Header(path, hash) => {
                h.str(&relative_text(&path.to_string_lossy()));
                if let Some(hash) = hash {
                    h.bytes(&hash);
                }
            }
            FailureInput::Missing(name) => {
                h.str("missing").str(name);
            }
        }
    }
    h.finish()
}

/// A discovery record (`domain`: one of the `DISCOVER_*` command keys): compiler, source
/// bytes and the command with its source written as a placeholder.
pub fn discovery(domain: &str, compiler: &Hash, source: &Hash, args: impl IntoIterator<Item = impl AsRef<str>>) -> Hash {
    let mut h = Hasher::new(domain);
    h.bytes(compiler).bytes(source);
    for a in args {
        h.str(&relative_text(a.as_ref()));
    }
    h.finish()
}

/// The names a discovery command defines: compiler and the command's other arguments.
pub fn discover_defined<'s>(compiler: &Hash, args: impl IntoIterator<Item = &'s String>) -> Hash {
    let mut h = Hasher::new(domain::DISCOVER_DEFINED);
    h.bytes(compiler);
    for a in args {
        h.str(&relative_text(a));
    }
    h.finish()
}

/// A file's stamp: path, size and modification time in nanoseconds.
pub type Stamp = (PathBuf, u64, i128);

/// A compiler driver's `--version` record, by the driver's stamp.
pub fn compiler_version(stamp: &Stamp) -> Hash {
    Hasher::new(domain::COMPILER_VERSION).path(&stamp.0).u64(stamp.1).bytes(&stamp.2.to_le_bytes()).finish()
}

/// The driver binary: its stamp and what `--version` says.
pub fn compiler_binary(stamp: &Stamp, version: &str) -> Hash {
    Hasher::new(domain::COMPILER_BINARY).path(&stamp.0).u64(stamp.1).bytes(&stamp.2.to_le_bytes()).str(version).finish()
}

/// The include search list record of a compiler binary.
pub fn system_includes(binary: &Hash) -> Hash {
    Hasher::new(domain::SYSTEM_INCLUDES).bytes(binary).finish()
}

/// The compiler identity: its binary and, per system folder, the folder and each
/// file's stamp in path order (`folders` as `toolchain::fingerprint_tree` lists them).
pub fn compiler_identity(binary: &Hash, folders: &[(PathBuf, Vec<Stamp>)]) -> Hash {
    let mut h = Hasher::new(domain::COMPILER_IDENTITY);
    h.bytes(binary);
    for (dir, files) in folders {
        h.path(dir);
        for (p, len, mtime) in files {
            h.path(p).u64(*len).bytes(&mtime.to_le_bytes());
        }
    }
    h.finish()
}

/// The predefined macros record of a compiler for a set of machine flags.
pub fn predefined_macros(compiler: &Hash, flags: &[String]) -> Hash {
    let mut h = Hasher::new(domain::PREDEFINED_MACROS);
    h.bytes(compiler);
    for f in flags {
        h.str(f);
    }
    h.finish()
}

/// The record of whether a compiler uses a precompiled header built with `flags`.
pub fn pch_probe(compiler: &Hash, flags: &[String]) -> Hash {
    let mut h = Hasher::new(domain::PCH_PROBE);
    h.bytes(compiler);
    for f in flags {
        h.str(f);
    }
    h.finish()
}

/// A precompiled header's key: the compiler, its command (paths relative, as in
/// `object_base`), and each header its depfile names with its content hash.
pub fn pch<'p>(compiler: &Hash, args: &[String], headers: impl IntoIterator<Item = (&'p Path, Hash)>) -> Hash {
    let mut h = Hasher::new(domain::PCH);
    h.bytes(compiler);
    for a in args {
        h.str(&relative_text(a));
    }
    for (path, hash) in headers {
        h.str(&relative_text(&path.to_string_lossy())).bytes(&hash);
    }
    h.finish()
}

/// The object's full key: its base key and every header the depfile names, each
/// with its path and content hash.
///
/// Header paths enter relative to the base folder (`relative_text`); an object that
/// may hold its own path (`own_path`, `__FILE__`) also keys the absolute base, so a
/// relocated tree compiles it again.
pub fn object_full<'p>(base: &Hash, headers: impl IntoIterator<Item = (&'p Path, Hash)>, own_path: bool) -> Hash {
    object_full_from(base, &object_full_headers(headers), own_path)
}

/// The headers' part of `object_full`, framed once for every object that lists the
/// same headers (the examples of a library all read its umbrella header's thousands).
pub fn object_full_headers<'p>(headers: impl IntoIterator<Item = (&'p Path, Hash)>) -> Framed {
    let mut f = Framed::default();
    for (path, hash) in headers {
        f.bytes(relative_text(&path.to_string_lossy()).as_bytes()).bytes(&hash);
    }
    f
}

/// `object_full` from its headers' part (`object_full_headers`): the same value.
pub fn object_full_from(base: &Hash, headers: &Framed, own_path: bool) -> Hash {
    let mut h = Hasher::new(domain::OBJECT_FULL);
    h.bytes(base).framed(headers);
    if own_path {
        h.str("own-path").str(base_dir().unwrap_or(""));
    }
    h.finish()
}

/// The key of an object whose files name time macros: its full key and `time_words`.
pub fn object_timed(full: &Hash, words: &[String]) -> Hash {
    combine(domain::OBJECT_TIME, &[*full], &[words.to_vec()])
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

/// A stage-1 unit: its objects' keys and its (normalised) archive commands.
pub fn unit(object_keys: &[Hash], archive_commands: &[Vec<String>]) -> Hash {
    combine(domain::UNIT, object_keys, archive_commands)
}

/// A link: every input's key (objects, units, bootloader) and the normalised link,
/// size and objcopy commands. The same key names a remembered link failure.
pub fn link(inputs: &[Hash], commands: &[Vec<String>]) -> Hash {
    combine(domain::LINK, inputs, commands)
}

/// The whole stage 1 of a board, for the report: every unit's key, or its failure.
pub fn stage1(unit_keys: impl Iterator<Item = Option<Hash>>) -> Hash {
    let mut h = Hasher::new(domain::STAGE1);
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
    let mut h = Hasher::new(domain::FRAMEWORK_PROPS);
    for (k, v) in props {
        h.str(k).str(v);
    }
    h.finish()
}

/// Relative to the base folder like keys, so a relocated tree builds into folders of
/// the same names: a sketch's own headers are copied into its folder, and their paths
/// are in its object's key.
pub fn library_unit_folder(include_dirs: &[PathBuf]) -> Hash {
    let mut h = Hasher::new(domain::LIBRARY_UNIT_DIR);
    for d in include_dirs {
        h.str(&relative_text(&d.to_string_lossy()));
    }
    h.finish()
}

pub fn sketch_folder(sketch_dir: &Path) -> Hash {
    Hasher::new(domain::SKETCH_DIR).str(&relative_text(&sketch_dir.to_string_lossy())).finish()
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
        // An object key (the one cache::objects' test pins), and values computed by the
        // code before timed keys existed.
        let hex = "2ff44bc218ad85fe20950b48f77df6154465c245427203771d1bbc1205d39100";
        let input: Hash = std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
        assert_eq!(crate::cache::hash::hex(&unit(&[input], &[vec!["ar".into()]])), "9d8fdbb458cec64b91d6c548288a54b582a6302ca7b2f83a0290a88447c17c61");
        assert_eq!(crate::cache::hash::hex(&link(&[input], &[vec!["ld".into()]])), "7717d8986e5a171f5aea7c1f64b24565d2574264b4b1225b7e1854fe95b8a50e");
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


    /// Keys computed by the code before the rules moved here (the same inputs hashed by
    /// the old call sites in objcache.rs, discover/preprocess.rs and toolchain.rs):
    /// existing caches must stay warm, so these values never change without a new domain.
    #[test]
    fn keys_keep_the_values_they_had_before_the_move() {
        use crate::cache::hash::hex;
        let compiler: Hash = [1; 32];
        let source: Hash = [2; 32];
        let args: Vec<String> = vec!["-c".into(), "\u{0}SRC".into(), "-o".into(), "\u{0}OBJ".into()];
        let base = object_base(&compiler, &source, &args);
        assert_eq!(hex(&base), "e6c0ff4fa8b3c13e286d81179eb0ff879d506eea96af4b39a669131151f6f571");
        assert_eq!(hex(&object_full(&base, [(Path::new("/x/a.h"), source)], false)), "12ff361ab569cf71e824da825254a892886efcba6eb0ae3a369c9a4882f2cd4b");
        let reached = [FailureInput::Header(Path::new("/x/a.h"), Some(source)), FailureInput::Header(Path::new("/usr/avr.h"), None), FailureInput::Missing("b.h")];
        assert_eq!(hex(&compile_failure(&base, reached)), "ae11f2ff45a5460b907ab2646da999f4c2722afc2e712183dce27240e58f6fe4");
        assert_eq!(hex(&discovery(domain::DISCOVER_PREPROCESS, &compiler, &source, &args)), "4873912f611b5855810453fa320000f895d6f2e99f6dcac421d4b1f87730822b");
        assert_eq!(hex(&discover_defined(&compiler, &args)), "f34319f66700be79771cde3280acb00421adf138eba061e17f7f88dbeef71951");
        let stamp: Stamp = (PathBuf::from("/opt/avr-gcc"), 1234, 1_700_000_000_123_456_789);
        assert_eq!(hex(&compiler_version(&stamp)), "6ea767aa983797b962df93080752b4273f2152d3ca440f90c10230a6994e6f98");
        let binary = compiler_binary(&stamp, "avr-gcc 7.3.0");
        assert_eq!(hex(&binary), "370da59ea520959e659bcd4d64981f55a4d51889c0acbd13e925822fea562603");
        assert_eq!(hex(&system_includes(&binary)), "06dad51f66c9edebe642bc5900191e72ed9ac80082cc7045cc3aa6e189b0ebdc");
        let folders = vec![(PathBuf::from("/opt/inc"), vec![(PathBuf::from("/opt/inc/a.h"), 10, 5)])];
        assert_eq!(hex(&compiler_identity(&binary, &folders)), "07584abc393b8d81e36ccd8612b6604b1175ab9153938c064f19e00a8f5de8fd");
        assert_eq!(hex(&predefined_macros(&compiler, &args)), "92bed0bf50c3e75dff04eefe0bf68f427e7264f6823b8e50c0507307ce80d8c6");
    }

    /// Every string shaped like a domain (`name-vN` in quotes) anywhere in src/ is in
    /// `DOMAINS`, and appears only here: a new rule elsewhere, or a domain written out
    /// twice, fails this test.
    #[test]
    fn every_domain_in_src_is_in_the_table() {
        let re = regex::Regex::new(r#""([a-z][a-z0-9]*(?:-[a-z0-9]+)*-v[0-9]+)""#).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                        for m in re.captures_iter(line) {
                            found.push((path.clone(), m[1].to_string()));
                        }
                    }
                }
            }
        }
        let here = Path::new(file!()).file_name().unwrap();
        for (path, d) in &found {
            assert!(DOMAINS.contains(&d.as_str()), "{}: domain {d:?} is not in cache::keys::DOMAINS", path.display());
            assert!(path.file_name() == Some(here), "{}: domain {d:?} written out; use cache::keys::domain", path.display());
        }
        let mut sorted = DOMAINS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), DOMAINS.len(), "a domain is declared twice");
        // The module doc's table names every domain too.
        let doc = include_str!("keys.rs");
        for d in DOMAINS {
            assert!(doc.contains(&format!("`{d}`")), "{d} is missing from the table in keys.rs's doc");
        }
    }
}
