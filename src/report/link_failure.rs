//! Failed links remembered like successful ones.
//!
//! A link that fails deterministically — the program or its data overflow the
//! chip (caught by the linker or by the size check), an undefined reference, a
//! multiple definition — fails again with the same inputs, so its outcome is
//! stored under the link's key (namespace `link-failure`) with the log of the link
//! step, the sizes measured and the error. A warm run with nothing changed reports
//! the same error and sizes without starting the linker or the size tool; any
//! change to a link input changes the key and links again. Crashes, interruptions
//! and tools that could not start are never remembered.
//!
//! Paths of the sketch's output folder, its source folder and the framework
//! folder are stored as placeholders (the link key normalises them the same way),
//! so a hit from another output folder names this run's paths.

use crate::cache::paths::PathMap;
use crate::cache::Namespace;

use crate::exec::Output;
use crate::cache::hash::Hash;
use crate::plan::Sizes;
use crate::cache::store::Store;

const NAMESPACE: Namespace = Namespace::LinkFailure;

/// What a failed link reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkFailure {
    /// The build log from the link command on.
    pub log: String,
    /// The linker's output; empty when the link succeeded and the size check failed.
    pub error: String,
    /// Flash and RAM use, when they could be measured.
    pub sizes: Option<Sizes>,
}

/// Linker messages that depend only on the link's inputs.
const DETERMINISTIC: &[&str] = &[
    "undefined reference to",
    "multiple definition of",
    "overflowed by",
    "will not fit in region",
    "not within region",
    "relocation truncated to fit",
];

/// Whether a failed link would fail again with the same inputs.
pub fn is_deterministic(link: &Output, interrupted: bool) -> bool {
    !link.success && link.signal.is_none() && !interrupted && DETERMINISTIC.iter().any(|m| link.text.contains(m))
}

pub fn remember(store: &Store, key: &Hash, failure: &LinkFailure, paths: &PathMap) {
    let stored = LinkFailure { log: paths.normalize(&failure.log), error: paths.normalize(&failure.error), sizes: failure.sizes.clone() };
    if let Ok(bytes) = serde_json::to_vec(&stored) {
        let _ = store.put_record(NAMESPACE, key, &bytes);
    }
}

pub fn recall(store: &Store, key: &Hash, paths: &PathMap) -> Option<LinkFailure> {
    let f: LinkFailure = serde_json::from_slice(&store.get_record(NAMESPACE, key)?).ok()?;
    Some(LinkFailure { log: paths.restore(&f.log), error: paths.restore(&f.error), sizes: f.sizes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::paths::PathMap;
    use std::path::Path;

    fn out(success: bool, text: &str, signal: Option<&str>) -> Output {
        Output { success, text: text.to_string(), stdout: String::new(), signal: signal.map(String::from) }
    }

    #[test]
    fn only_input_determined_failures_count() {
        let undefined = "/s/x.ino:3: undefined reference to `f()'\ncollect2: error: ld returned 1 exit status\n";
        assert!(is_deterministic(&out(false, undefined, None), false));
        assert!(is_deterministic(&out(false, "a.cpp:1: multiple definition of `g'", None), false));
        assert!(is_deterministic(&out(false, "region `text' overflowed by 12 bytes", None), false));
        assert!(is_deterministic(&out(false, "section `.bss' is not within region `data'", None), false));
        assert!(!is_deterministic(&out(false, undefined, None), true), "interrupted");
        assert!(!is_deterministic(&out(false, undefined, Some("killed by signal 9 (SIGKILL)")), false), "crashed");
        assert!(!is_deterministic(&out(false, "cannot run avr-gcc: No such file", None), false), "could not start");
        assert!(!is_deterministic(&out(false, "ld: cannot open output file x.elf: Permission denied", None), false), "I/O");
        assert!(!is_deterministic(&out(true, "", None), false));
    }

    #[test]
    fn paths_round_trip_through_placeholders() {
        let (out_a, src, fw) = (Path::new("/src/Blink/.fbuild/Blink-1"), Path::new("/src/Blink"), Path::new("/src/Blink/.fbuild/framework/x"));
        let a = PathMap::new(out_a, src, fw);
        let text = "/src/Blink/Blink.ino:3: undefined reference\n/src/Blink/.fbuild/Blink-1/Blink.ino.elf /src/Blink/.fbuild/framework/x/core/core.a";
        let stored = a.normalize(text);
        assert!(!stored.contains("/src/Blink"), "{stored:?}");
        assert_eq!(a.restore(&stored), text);
        let b = PathMap::new(Path::new("/o2/Blink-1"), src, Path::new("/o2/framework/x"));
        assert_eq!(b.restore(&stored), "/src/Blink/Blink.ino:3: undefined reference\n/o2/Blink-1/Blink.ino.elf /o2/framework/x/core/core.a");
    }

    #[test]
    fn stored_and_recalled_under_the_link_key() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path(), 1 << 30).unwrap();
        let paths = PathMap::new(Path::new("/o/S-1"), Path::new("/s/S"), Path::new("/o/fw"));
        let f = LinkFailure { log: "/o/S-1/S.ino.elf: error".into(), error: "/s/S/S.ino:1: undefined reference to `x'".into(), sizes: Some(Sizes { flash: 1, ram: 2, eeprom: 0 }) };
        let key = [3u8; 32];
        assert_eq!(recall(&store, &key, &paths), None);
        remember(&store, &key, &f, &paths);
        assert_eq!(recall(&store, &key, &paths), Some(f));
        assert_eq!(recall(&store, &[4u8; 32], &paths), None, "another key is another link");
    }
}
