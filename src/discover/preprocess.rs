//! One preprocessor run of library discovery, remembered like an object.
//!
//! The answer of a run (it went through, or it stopped at the first header it could
//! not find) depends on the compiler, the command (the include path is part of it),
//! the source's bytes and the bytes of every header the run read. The key covers the
//! first three; the record lists the headers (GCC's `-H` trace, which unlike `-MMD`
//! is printed even when the run stops on a missing header) with their hashes, and a
//! lookup only counts when every one of them is unchanged and a header that was
//! missing is still missing. Headers in the compiler's own folders belong to the
//! compiler's identity, as for objects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::exec::Runner;
use crate::hash::{hex, Hash, Hasher};
use crate::objcache::{normalize_args, ObjectCache};
use crate::store::Store;
use crate::toolchain::Compiler;

/// What one preprocessor run found.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// The header the preprocessor stopped at because no include folder has it.
    pub missing: Option<String>,
    /// What the preprocessor said besides its header trace (for error messages).
    pub message: String,
    /// Every header the run opened, in order (system headers included).
    pub headers: Vec<PathBuf>,
    /// A file the run read (source or non-system header) uses `__has_include`, whose
    /// answer depends on the include path itself, not only on the headers found.
    pub has_include: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    outcome: Outcome,
    /// Hashes of the non-system headers in `outcome.headers`, hex, in the same order.
    hashes: Vec<(PathBuf, String)>,
}

/// Runs (or remembers) discovery preprocessor runs; shared by every sketch of a build.
pub struct Preprocessor<'a> {
    store: Option<&'a Store>,
    files: &'a ObjectCache<'a>,
    compiler: Compiler,
    /// This process's answers, so sketches sharing a library file share its runs.
    memo: Mutex<HashMap<Hash, Arc<Outcome>>>,
    /// Runs started, and answers taken from the memo or the store.
    pub runs: AtomicUsize,
    pub reused: AtomicUsize,
}

impl<'a> Preprocessor<'a> {
    pub fn new(store: Option<&'a Store>, files: &'a ObjectCache<'a>, compiler: Compiler) -> Preprocessor<'a> {
        Preprocessor { store, files, compiler, memo: Mutex::default(), runs: AtomicUsize::new(0), reused: AtomicUsize::new(0) }
    }

    fn is_system(&self, p: &Path) -> bool {
        self.compiler.system_dirs.iter().any(|d| p.starts_with(d))
    }

    fn key(&self, args: &[String], source: &Path) -> Option<Hash> {
        let bytes = self.files.file_hash(source)?;
        let mut h = Hasher::new("discover-preprocess-v1");
        h.bytes(&self.compiler.identity).bytes(&bytes);
        for a in normalize_args(args, &[(source, "\u{0}SRC")]) {
            h.str(&a);
        }
        Some(h.finish())
    }

    /// Preprocess `source` with `args` (a full command line from
    /// `plan::Context::preprocess`), or take the remembered answer. The flag says
    /// whether a process ran.
    pub fn run(&self, runner: &Runner, args: &[String], source: &Path) -> (Arc<Outcome>, bool) {
        let key = self.key(args, source);
        if let Some(k) = key {
            if let Some(o) = self.memo.lock().unwrap().get(&k) {
                self.reused.fetch_add(1, Ordering::Relaxed);
                return (o.clone(), false);
            }
            if let Some(o) = self.lookup(&k, args, source) {
                self.reused.fetch_add(1, Ordering::Relaxed);
                let o = Arc::new(o);
                self.memo.lock().unwrap().insert(k, o.clone());
                return (o, false);
            }
        }
        let mut cmd = args.to_vec();
        // -H lists every header opened, on stderr, even when the run stops early.
        cmd.insert(1, "-H".to_string());
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = runner.run(&cmd, None);
        let mut outcome = parse_output(&out.text);
        if out.success {
            outcome.missing = None;
        }
        outcome.has_include = std::iter::once(source.to_path_buf())
            .chain(outcome.headers.iter().filter(|h| !self.is_system(h)).cloned())
            .any(|p| std::fs::read(&p).map(|b| contains(&b, b"__has_include")).unwrap_or(false));
        let outcome = Arc::new(outcome);
        // Only an answer the preprocessor actually gave is worth keeping: not an
        // interruption or a crash.
        let answered = out.success || outcome.missing.is_some();
        if let (Some(k), true) = (key, answered && out.signal.is_none() && !runner.interrupted()) {
            self.memo.lock().unwrap().insert(k, outcome.clone());
            self.remember(&k, &outcome);
        }
        (outcome, true)
    }

    fn lookup(&self, key: &Hash, args: &[String], source: &Path) -> Option<Outcome> {
        let bytes = self.store?.get_record("discover", key)?;
        let rec: Record = serde_json::from_slice(&bytes).ok()?;
        for (path, hash) in &rec.hashes {
            if self.files.file_hash(path).map(|h| hex(&h)) != Some(hash.clone()) {
                return None;
            }
        }
        if let Some(missing) = &rec.outcome.missing {
            // A header that was missing and has appeared since changes the answer.
            let here = source.parent().map(Path::to_path_buf).unwrap_or_default();
            let dirs = args.iter().filter_map(|a| a.strip_prefix("-I")).map(PathBuf::from);
            if std::iter::once(here).chain(dirs).any(|d| d.join(missing).exists()) {
                return None;
            }
        }
        Some(rec.outcome)
    }

    fn remember(&self, key: &Hash, outcome: &Outcome) {
        let Some(store) = self.store else { return };
        let mut hashes = Vec::new();
        for h in outcome.headers.iter().filter(|h| !self.is_system(h)) {
            // Hash afresh: the header may have changed since an earlier lookup hashed it.
            self.files.invalidate(h);
            match self.files.file_hash(h) {
                Some(x) => hashes.push((h.clone(), hex(&x))),
                None => return,
            }
        }
        let rec = Record { outcome: outcome.clone(), hashes };
        if let Ok(bytes) = serde_json::to_vec(&rec) {
            let _ = store.put_record("discover", key, &bytes);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Split the preprocessor's stderr into its `-H` trace (". /path/header.h", one dot
/// per nesting level), the header it could not find, and everything else.
pub fn parse_output(text: &str) -> Outcome {
    let mut o = Outcome::default();
    let mut in_guard_list = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('.') {
            let path = rest.trim_start_matches('.');
            if let Some(path) = path.strip_prefix(' ') {
                o.headers.push(PathBuf::from(path));
                continue;
            }
        }
        // After the trace, -H lists headers that could use include guards: not an error.
        if line.starts_with("Multiple include guards may be useful for:") {
            in_guard_list = true;
            continue;
        }
        if in_guard_list && !line.contains(": ") {
            continue;
        }
        in_guard_list = false;
        if o.missing.is_none() {
            if let Some(pos) = line.find(" fatal error: ") {
                let rest = &line[pos + " fatal error: ".len()..];
                if let Some(name) = rest.strip_suffix(": No such file or directory") {
                    o.missing = Some(name.trim().to_string());
                }
            }
        }
        o.message.push_str(line);
        o.message.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_missing_header_and_message_are_told_apart() {
        let text = ". /core/Arduino.h\n.. /usr/lib/avr/include/stdlib.h\n... /usr/lib/gcc/avr/5.4.0/include/stddef.h\n\
/s/S.ino.cpp:3:21: fatal error: OneWire.h: No such file or directory\n #include <OneWire.h>\n                     ^\ncompilation terminated.\n\
Multiple include guards may be useful for:\n/usr/lib/avr/include/avr/portpins.h\n";
        let o = parse_output(text);
        assert_eq!(o.headers, vec![PathBuf::from("/core/Arduino.h"), PathBuf::from("/usr/lib/avr/include/stdlib.h"), PathBuf::from("/usr/lib/gcc/avr/5.4.0/include/stddef.h")]);
        assert_eq!(o.missing.as_deref(), Some("OneWire.h"));
        assert!(o.message.starts_with("/s/S.ino.cpp:3:21: fatal error: OneWire.h"));
        assert!(!o.message.contains("portpins"));
    }

    #[test]
    fn other_errors_are_not_a_missing_header() {
        let o = parse_output("/s/x.cpp:1:2: error: #error \"nope\"\n");
        assert_eq!(o.missing, None);
        assert!(o.message.contains("#error"));
    }
}
