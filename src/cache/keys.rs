//! The key rules, in one place. A key is a BLAKE3 hash under a versioned domain of
//! everything that shapes an output; bump a domain's version when its rule changes.
//!
//! | key | domain | inputs | owner |
//! |---|---|---|---|
//! | compiler identity | `compiler-identity-v2` | driver bytes, `-v` output | toolchain.rs |
//! | object, base | `object-base-v1` | compiler, normalised command, source bytes | objcache.rs |
//! | object, full | `object-full-v1` | base + every header the depfile names | objcache.rs |
//! | compile failure | `compile-failure-v1` | base + headers the include scan finds | objcache.rs |
//! | discovery record | `preprocess-*` | compiler, command, source bytes (+ `-H` trace check) | discover/preprocess.rs |
//! | unit | `unit-v1` | its objects' keys, archive commands | here |
//! | link | `link-v2` | objects', units' and bootloader keys, link/size/objcopy commands | here |
//! | stage 1 | `stage1-v1` | every unit's key | here |
//!
//! Commands in keys have this build's folders replaced by placeholders (`normalize`
//! in objcache.rs), so two output folders or two machines share entries.

use std::path::{Path, PathBuf};

use crate::hash::{Hash, Hasher};

/// A key over input keys and command lines, each argument length-delimited.
pub fn combine(domain: &str, inputs: &[Hash], commands: &[Vec<String>]) -> Hash {
    let mut h = Hasher::new(domain);
    for i in inputs {
        h.bytes(i);
    }
    for c in commands {
        h.u64(c.len() as u64);
        for a in c {
            h.str(a);
        }
    }
    h.finish()
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

pub fn library_unit_folder(include_dirs: &[PathBuf]) -> Hash {
    let mut h = Hasher::new("library-unit-dir-v1");
    for d in include_dirs {
        h.path(d);
    }
    h.finish()
}

pub fn sketch_folder(sketch_dir: &Path) -> Hash {
    Hasher::new("sketch-dir-v1").path(sketch_dir).finish()
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
}
