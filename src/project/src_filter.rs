//! `build_src_filter`: which files of `src_dir` PlatformIO compiles.
//!
//! A filter is a list of `+<PATTERN>` (add) and `-<PATTERN>` (remove), applied in order.
//! A pattern is a glob relative to `src_dir` (`*` stays within a folder, `**` crosses
//! folders); a pattern naming a folder takes every file below it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use globset::GlobBuilder;

use crate::error::{Error, Result};

/// PlatformIO's default: everything but version-control folders.
pub const DEFAULT: &str = "+<*> -<.git/> -<.svn/>";

/// The files under `src_dir` (relative paths) that `filter` selects.
pub fn select(src_dir: &Path, filter: &str, what: &str) -> Result<BTreeSet<PathBuf>> {
    let mut files = Vec::new();
    walk(src_dir, Path::new(""), &mut files);
    let mut selected = BTreeSet::new();
    let rules = parse(filter).ok_or_else(|| {
        Error::usage(format!("{what} `{filter}`: write it as +<PATTERN> and -<PATTERN> items, e.g. +<*> -<skip/>"))
    })?;
    for (add, pattern) in rules {
        let glob = GlobBuilder::new(pattern.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| Error::usage(format!("{what} pattern <{pattern}>: {e}")))?
            .compile_matcher();
        // As Python's glob, wildcards do not reach hidden files and folders; a pattern must name them.
        let names_hidden = pattern.starts_with('.') || pattern.contains("/.");
        let hidden = |f: &Path| f.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        let hits = files
            .iter()
            .filter(|f| names_hidden || !hidden(f))
            .filter(|f| f.ancestors().filter(|a| !a.as_os_str().is_empty()).any(|a| glob.is_match(a)));
        for f in hits {
            if add {
                selected.insert(f.clone());
            } else {
                selected.remove(f);
            }
        }
    }
    Ok(selected)
}

/// `+<a> -<b/>` as (add, pattern) pairs; None when something else is in the text.
fn parse(filter: &str) -> Option<Vec<(bool, String)>> {
    let mut rules = Vec::new();
    let mut rest = filter.trim();
    while !rest.is_empty() {
        let add = match rest.as_bytes()[0] {
            b'+' => true,
            b'-' => false,
            _ => return None,
        };
        let body = rest[1..].strip_prefix('<')?;
        let end = body.find('>')?;
        rules.push((add, body[..end].to_string()));
        rest = body[end + 1..].trim_start();
    }
    Some(rules)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root.join(rel)) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        if e.path().is_dir() {
            walk(root, &r, out);
        } else {
            out.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_removes_files_and_folders_in_order() {
        let t = tempfile::tempdir().unwrap();
        for f in ["main.cpp", "extra.cpp", "skip/a.cpp", "deep/x/y.c", "deep/z.cpp", ".git/hook.c"] {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let names = |filter: &str| -> Vec<String> {
            select(t.path(), filter, "build_src_filter").unwrap().iter().map(|p| p.display().to_string()).collect()
        };
        assert_eq!(names(DEFAULT), ["deep/x/y.c", "deep/z.cpp", "extra.cpp", "main.cpp", "skip/a.cpp"]);
        assert_eq!(names("+<*> -<.git/> -<skip/> -<extra.cpp>"), ["deep/x/y.c", "deep/z.cpp", "main.cpp"]);
        assert_eq!(names("-<*> +<main.cpp> +<**/*.c>"), ["deep/x/y.c", "main.cpp"]);
        assert_eq!(names("+<deep/*.cpp>"), ["deep/z.cpp"]);
        let e = select(t.path(), "main.cpp", "build_src_filter").unwrap_err().to_string();
        assert!(e.contains("+<PATTERN>"), "{e}");
    }
}
