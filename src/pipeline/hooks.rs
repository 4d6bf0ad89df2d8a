//! The hooks that prepare a build folder before anything compiles there
//! (`recipe.hooks.prebuild`, `sketch.prebuild`, ...), run once per folder and content,
//! and the sources they leave in its `sketch/` folder, which the reference compiles
//! as the sketch's own (STM32duino's prebuild writes `sketch/SrcWrapper.cpp`).

use std::path::{Path, PathBuf};

use crate::exec::Runner;
use crate::cache::hash::{hex, Hasher};
use crate::plan::{Context, Lang};

/// Where a folder remembers the hooks that last ran in it: the key on the first line,
/// the sources they left (relative to `sketch/`) on the others.
const STAMP: &str = ".fbuild-hooks";

/// What preparing a build folder left for the build.
#[derive(Debug, Default, Clone)]
pub struct Prepared {
    /// Sources the hooks made in the folder's `sketch/`, relative to it.
    pub sources: Vec<PathBuf>,
    /// Whether the hooks ran now (a stamp said nothing of this content).
    pub ran: bool,
}

/// Run the hooks of `stages` in `ctx`'s build folder unless the same commands already
/// ran there for the same files of `source_dir` (the sketch, if any: STM32duino's hook reads
/// its `build_opt.h`, arduino-pico's its `public.key`). `own` are the sources the sketch
/// itself puts in `sketch/` (relative to it): any other source found there before the
/// hooks is a leftover and is removed, so what is there after them is theirs.
/// `Err` holds the failing command and its output.
pub fn prepare(runner: &Runner, ctx: &Context, stages: &[&str], source_dir: Option<&Path>, own: &[PathBuf]) -> Result<Prepared, String> {
    let mut commands = Vec::new();
    for stage in stages {
        commands.extend(ctx.hooks(stage).map_err(|e| e.to_string())?);
    }
    if commands.is_empty() {
        return Ok(Prepared::default());
    }
    let mut h = Hasher::new(crate::cache::keys::domain::PREBUILD_HOOKS);
    for c in &commands {
        h.str(&c.len().to_string());
        for a in c {
            h.str(a);
        }
    }
    for f in source_dir.map(top_level_files).unwrap_or_default() {
        h.str(&f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        h.bytes(&std::fs::read(&f).unwrap_or_default());
    }
    let key = hex(&h.finish());
    let sketch_build = ctx.build_path.join("sketch");
    let stamp = ctx.build_path.join(STAMP);
    if let Some(sources) = read_stamp(&stamp, &key) {
        if sources.iter().all(|s| sketch_build.join(s).is_file()) {
            return Ok(Prepared { sources, ran: false });
        }
    }
    let _ = std::fs::remove_file(&stamp);
    for stale in sources_below(&sketch_build).into_iter().filter(|s| !own.contains(s)) {
        let _ = std::fs::remove_file(sketch_build.join(stale));
    }
    for c in &commands {
        let out = runner.run(c, None);
        if !out.success {
            return Err(format!("{}\n{}", c.join(" "), out.text));
        }
    }
    let sources: Vec<PathBuf> = sources_below(&sketch_build).into_iter().filter(|s| !own.contains(s)).collect();
    let mut text = format!("{key}\n");
    for s in &sources {
        text.push_str(&format!("{}\n", s.display()));
    }
    let _ = std::fs::write(&stamp, text);
    Ok(Prepared { sources, ran: true })
}

fn read_stamp(stamp: &Path, key: &str) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string(stamp).ok()?;
    let mut lines = text.lines();
    (lines.next()? == key).then(|| lines.map(PathBuf::from).collect())
}

fn top_level_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The C, C++ and `.S` sources the reference would queue from a sketch build folder:
/// its own files and everything below `src/`, relative to it, sorted.
fn sources_below(sketch_build: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = top_level_files(sketch_build).into_iter().filter(|p| Lang::of(p).is_some()).collect();
    let mut stack = vec![sketch_build.join("src")];
    while let Some(d) = stack.pop() {
        for p in std::fs::read_dir(&d).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default() {
            if p.is_dir() {
                stack.push(p);
            } else if Lang::of(&p).is_some() {
                out.push(p);
            }
        }
    }
    let mut rel: Vec<PathBuf> = out.iter().filter_map(|p| p.strip_prefix(sketch_build).ok().map(Path::to_path_buf)).collect();
    rel.sort();
    rel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arduino::properties::Properties;

    #[test]
    fn hooks_run_once_per_content_and_their_sources_are_found() {
        let t = tempfile::tempdir().unwrap();
        let (build, source) = (t.path().join("b"), t.path().join("s"));
        std::fs::create_dir_all(build.join("sketch")).unwrap();
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(build.join("sketch/Old.cpp"), "").unwrap();
        std::fs::write(build.join("sketch/Own.cpp"), "").unwrap();
        let count = t.path().join("count");
        // A real shell stands for the platform's script: it writes a source into
        // sketch/ (as STM32duino's prebuild.sh) and counts its runs.
        let props = Properties::parse(
            &format!(
                "recipe.hooks.prebuild.1.pattern=/bin/sh -c \"echo x >> {c}; echo '#include <W.h>' > {{build.path}}/sketch/SrcWrapper.cpp\"\n",
                c = count.display()
            ),
            "t",
        )
        .unwrap();
        let ctx = Context::new(&props, &build, "S.ino", &source);
        let runner = Runner::new(false);
        let own = vec![PathBuf::from("Own.cpp")];
        let first = prepare(&runner, &ctx, &["prebuild", "sketch.prebuild"], Some(&source), &own).unwrap();
        assert!(first.ran);
        assert_eq!(first.sources, vec![PathBuf::from("SrcWrapper.cpp")]);
        assert!(!build.join("sketch/Old.cpp").exists(), "a leftover source is removed");
        assert!(build.join("sketch/Own.cpp").exists());
        let again = prepare(&runner, &ctx, &["prebuild"], Some(&source), &own).unwrap();
        assert!(!again.ran);
        assert_eq!(again.sources, first.sources);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
        // A new file in the sketch folder (build_opt.h) runs them again.
        std::fs::write(source.join("build_opt.h"), "-DX").unwrap();
        assert!(prepare(&runner, &ctx, &["prebuild"], Some(&source), &own).unwrap().ran);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_failing_hook_names_its_command() {
        let t = tempfile::tempdir().unwrap();
        let props = Properties::parse("recipe.hooks.prebuild.1.pattern=/bin/false hook\n", "t").unwrap();
        let ctx = Context::new(&props, t.path(), "S.ino", t.path());
        let e = prepare(&Runner::new(false), &ctx, &["prebuild"], None, &[]).unwrap_err();
        assert!(e.starts_with("/bin/false hook"), "{e}");
    }
}
