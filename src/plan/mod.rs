//! Planning is data: every compile, archive, link, objcopy and size step as a full
//! command line, built from the platform's recipes. Nothing here runs anything.

pub mod graph;
pub mod compiledb;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::arduino::properties::{split_command_line, Properties};

/// Recipes fbuild cannot build without.
pub const REQUIRED_RECIPES: &[&str] = &[
    "recipe.c.o.pattern",
    "recipe.cpp.o.pattern",
    "recipe.ar.pattern",
    "recipe.c.combine.pattern",
    "recipe.size.pattern",
];

/// Fail early, with the file and key, when a platform lacks a recipe we need.
pub fn check_recipes(props: &Properties, platform_txt: &Path) -> Result<()> {
    for key in REQUIRED_RECIPES {
        if props.get(key).map(str::trim).unwrap_or("").is_empty() {
            return Err(Error::usage(format!(
                "{} has no {key}; the platform is incomplete (add the recipe to platform.txt or platform.local.txt)",
                platform_txt.display()
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Cpp,
    Asm,
}

impl Lang {
    pub fn of(path: &Path) -> Option<Lang> {
        match path.extension()?.to_str()? {
            "c" => Some(Lang::C),
            "cpp" | "cc" | "cxx" => Some(Lang::Cpp),
            "S" => Some(Lang::Asm),
            _ => None,
        }
    }

    fn recipe(self) -> &'static str {
        match self {
            Lang::C => "recipe.c.o.pattern",
            Lang::Cpp => "recipe.cpp.o.pattern",
            Lang::Asm => "recipe.S.o.pattern",
        }
    }

    /// The reference builder compiles (and so links) `.S`, then `.c`, then `.cpp`.
    pub fn link_rank(self) -> u8 {
        match self {
            Lang::Asm => 0,
            Lang::C => 1,
            Lang::Cpp => 2,
        }
    }
}

/// Sort sources the way the reference builder compiles and links them: a folder's
/// own files first (`.S`, then `.c`, then `.cpp`, each by name), then each subfolder
/// in name order, recursively. Object order on the link line shapes the firmware.
pub fn reference_order(sources: &mut [PathBuf]) {
    sources.sort_by(|a, b| compare_reference(a, b));
}

fn compare_reference(a: &Path, b: &Path) -> std::cmp::Ordering {
    let ca: Vec<_> = a.components().collect();
    let cb: Vec<_> = b.components().collect();
    let common = ca.iter().zip(&cb).take_while(|(x, y)| x == y).count();
    let a_is_file_here = common + 1 == ca.len();
    let b_is_file_here = common + 1 == cb.len();
    match (a_is_file_here, b_is_file_here) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (true, true) => {
            let rank = |p: &Path| Lang::of(p).map(Lang::link_rank).unwrap_or(9);
            rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
        }
        (false, false) => ca[common..].cmp(&cb[common..]),
    }
}

/// The sources of a core or variant folder in the order the reference builder compiles
/// and archives them: one language at a time over the whole tree (every `.S`, then
/// every `.c`, then every `.cpp`), each walked with a folder's own files by name before
/// its subfolders, by name, recursively. So ArduinoCore-API's `api/*.cpp` come after
/// the top folder's `.cpp`, but a nested `.c` (`compact/dtostrf.c`) before them all:
/// the member order of `core.a` decides where the linker places each function.
/// Other extensions (`.cc`, `.s`) are not compiled, as in the reference.
pub fn core_sources(dir: &Path) -> Vec<PathBuf> {
    let mut by_lang: [Vec<PathBuf>; 3] = Default::default();
    walk_files_then_folders(dir, &mut |p| {
        let rank = match p.extension().and_then(|e| e.to_str()) {
            Some("S") => 0,
            Some("c") => 1,
            Some("cpp") => 2,
            _ => return,
        };
        by_lang[rank].push(p.to_path_buf());
    });
    by_lang.concat()
}

/// Sort a sketch's sources (in its build folder `root`) the way the reference compiles
/// and links them: the root folder's own files (`.S`, `.c`, `.cpp`, each by name),
/// then everything below (`src/`) one language at a time over that tree, as a core.
pub fn sketch_order(sources: &mut [PathBuf], root: &Path) {
    let rank = |p: &Path| Lang::of(p).map(Lang::link_rank).unwrap_or(9);
    sources.sort_by(|a, b| {
        let (a_top, b_top) = (a.parent() == Some(root), b.parent() == Some(root));
        b_top.cmp(&a_top).then_with(|| rank(a).cmp(&rank(b))).then_with(|| files_then_folders(a, b))
    });
}

/// Tree-walk order: at the first differing level a file comes before a subfolder;
/// otherwise by name.
fn files_then_folders(a: &Path, b: &Path) -> std::cmp::Ordering {
    let ca: Vec<_> = a.components().collect();
    let cb: Vec<_> = b.components().collect();
    let common = ca.iter().zip(&cb).take_while(|(x, y)| x == y).count();
    let a_file = common + 1 == ca.len();
    let b_file = common + 1 == cb.len();
    b_file.cmp(&a_file).then_with(|| ca[common..].cmp(&cb[common..]))
}

/// Visit a folder's files (by name), then each subfolder (by name), recursively.
fn walk_files_then_folders(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => return,
    };
    entries.sort();
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_dir());
    for f in &files {
        visit(f);
    }
    for d in &dirs {
        walk_files_then_folders(d, visit);
    }
}

#[derive(Debug, Clone)]
pub struct CompileJob {
    pub source: PathBuf,
    pub object: PathBuf,
    pub args: Vec<String>,
}

/// The properties of one build folder (`build.path`), with recipes expanded once
/// and per-file values substituted per job.
pub struct Context {
    pub props: Properties,
    pub build_path: PathBuf,
}

fn quote_paths(prefix: &str, paths: &[PathBuf]) -> String {
    paths.iter().map(|p| format!("\"{prefix}{}\"", p.display())).collect::<Vec<_>>().join(" ")
}

impl Context {
    pub fn new(base: &Properties, build_path: &Path, project_name: &str, source_path: &Path) -> Context {
        let mut props = base.clone();
        props.set("build.path", build_path.display().to_string());
        props.set("build.project_name", project_name);
        props.set("build.source.path", source_path.display().to_string());
        props.set("archive_file", "core/core.a");
        Context { props, build_path: build_path.to_path_buf() }
    }

    /// Expand `recipe` with `extra` values and split it into arguments.
    pub fn command(&self, recipe: &str, extra: &[(&str, String)]) -> Result<Vec<String>> {
        let pattern = self.props.get(recipe).ok_or_else(|| Error::usage(format!("the platform has no {recipe}")))?;
        Ok(split_command_line(&self.props.expand_with(pattern, extra)))
    }

    pub fn compile(&self, source: &Path, object: &Path, includes: &[PathBuf]) -> Result<CompileJob> {
        let lang = Lang::of(source).ok_or_else(|| Error::usage(format!("{} is not a C, C++ or .S source", source.display())))?;
        let args = self.command(
            lang.recipe(),
            &[
                ("includes", quote_paths("-I", includes)),
                ("source_file", source.display().to_string()),
                ("object_file", object.display().to_string()),
            ],
        )?;
        Ok(CompileJob { source: source.to_path_buf(), object: object.to_path_buf(), args })
    }

    /// The preprocessor run library discovery makes, as the reference builder makes
    /// it: `recipe.preproc.macros` with its output thrown away, or, for platforms
    /// without that recipe, the C++ compile recipe turned into a preprocessor run
    /// (`preproc.macros.flags`, default `-w -x c++ -E -CC`, after the C++ flags).
    /// `-MMD` is dropped: it would make GCC write `/dev/null.d`.
    pub fn preprocess(&self, source: &Path, includes: &[PathBuf]) -> Result<Vec<String>> {
        let extra = [
            ("includes", quote_paths("-I", includes)),
            ("source_file", source.display().to_string()),
            ("preprocessed_file_path", "/dev/null".to_string()),
            ("object_file", "/dev/null".to_string()),
        ];
        let mut args = if self.props.contains("recipe.preproc.macros") {
            self.command("recipe.preproc.macros", &extra)?
        } else {
            let cpp = self.props.get("recipe.cpp.o.pattern").ok_or_else(|| Error::usage("the platform has no recipe.cpp.o.pattern"))?;
            let flags = self.props.get("preproc.macros.flags").unwrap_or("-w -x c++ -E -CC");
            let pattern = cpp.replacen("{compiler.cpp.flags}", &format!("{{compiler.cpp.flags}} {flags}"), 1);
            split_command_line(&self.props.expand_with(&pattern, &extra))
        };
        args.retain(|a| a != "-MMD");
        Ok(args)
    }

    /// One `ar` command per object, as `recipe.ar.pattern` is written.
    pub fn archive(&self, archive: &Path, object: &Path) -> Result<Vec<String>> {
        self.command(
            "recipe.ar.pattern",
            &[
                ("archive_file_path", archive.display().to_string()),
                ("object_file", object.display().to_string()),
            ],
        )
    }

    /// The link command. Like the reference builders, the link of an atmega2560
    /// gets `,--relax` appended to `compiler.c.elf.flags` (the ATmega2560 needs
    /// linker relaxation for calls across its large flash); no platform file says so.
    pub fn link(&self, objects: &[PathBuf]) -> Result<Vec<String>> {
        let objects = ("object_files", quote_paths("", objects));
        if self.props.get_or_empty("build.mcu").contains("atmega2560") {
            let mut relaxed = Context { props: self.props.clone(), build_path: self.build_path.clone() };
            let flags = format!("{},--relax", relaxed.props.get_or_empty("compiler.c.elf.flags"));
            relaxed.props.set("compiler.c.elf.flags", flags);
            return relaxed.command("recipe.c.combine.pattern", &[objects]);
        }
        self.command("recipe.c.combine.pattern", &[objects])
    }

    /// `recipe.objcopy.*.pattern` commands (eep, hex, bin, uf2, ...).
    pub fn objcopies(&self) -> Result<Vec<Vec<String>>> {
        self.recipes_like("recipe.objcopy.", ".pattern")
    }

    pub fn size(&self) -> Result<Vec<String>> {
        self.command("recipe.size.pattern", &[])
    }

    /// The hooks of a stage (`prebuild`, `linking.prelink`, ...): `recipe.hooks.<stage>*.pattern`,
    /// numbered (`.1.pattern`) or not (`recipe.hooks.sketch.prebuild.pattern`).
    pub fn hooks(&self, stage: &str) -> Result<Vec<Vec<String>>> {
        self.recipes_like(&format!("recipe.hooks.{stage}"), ".pattern")
    }

    /// Every recipe whose key has `prefix` and `suffix`, as arduino-cli finds them: an
    /// empty one (`recipe.objcopy.eep.pattern=`, the mbed cores' way to turn a step off)
    /// is skipped, and the rest run in the keys' string order (so `.10.` before `.2.`).
    fn recipes_like(&self, prefix: &str, suffix: &str) -> Result<Vec<Vec<String>>> {
        recipe_keys(&self.props, prefix, suffix).iter().map(|k| self.command(k, &[])).collect()
    }
}

/// The non-empty recipes with `prefix` and `suffix`, in string order (arduino-cli's
/// `findRecipes`).
pub fn recipe_keys(props: &Properties, prefix: &str, suffix: &str) -> Vec<String> {
    props
        .iter()
        .filter(|(k, v)| k.starts_with(prefix) && k.ends_with(suffix) && !v.is_empty())
        .map(|(k, _)| k.clone())
        .collect()
}

/// Flash, RAM and EEPROM use parsed from the size recipe's output with its regexes.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Sizes {
    pub flash: u64,
    pub ram: u64,
    pub eeprom: u64,
}

pub fn parse_sizes(props: &Properties, output: &str) -> Sizes {
    let sum = |key: &str| -> u64 {
        let Some(pattern) = props.get(key) else { return 0 };
        let Some(re) = size_regex(pattern) else { return 0 };
        output
            .lines()
            .filter_map(|line| re.captures(line.trim_end()))
            .filter_map(|c| c.get(1)?.as_str().parse::<u64>().ok())
            .sum()
    };
    Sizes {
        flash: sum("recipe.size.regex"),
        ram: sum("recipe.size.regex.data"),
        eeprom: sum("recipe.size.regex.eeprom"),
    }
}

/// A size recipe's regex, compiled once per run: every sketch's size step uses the
/// same few patterns, and compiling them costs more than matching.
fn size_regex(pattern: &str) -> Option<regex::Regex> {
    static COMPILED: std::sync::Mutex<std::collections::BTreeMap<String, Option<regex::Regex>>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut memo = COMPILED.lock().unwrap();
    memo.entry(pattern.to_string()).or_insert_with(|| regex::Regex::new(&format!("(?m){pattern}")).ok()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_order_groups_languages_per_folder_then_subfolders() {
        let mut v: Vec<PathBuf> = ["/l/utility/twi.c", "/l/b.cpp", "/l/a.cpp", "/l/z.c", "/l/w.S", "/l/A.c", "/l/a/x.S", "/l/utility/a.cpp"]
            .iter()
            .map(PathBuf::from)
            .collect();
        reference_order(&mut v);
        let s: Vec<String> = v.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            s,
            vec!["/l/w.S", "/l/A.c", "/l/z.c", "/l/a.cpp", "/l/b.cpp", "/l/a/x.S", "/l/utility/twi.c", "/l/utility/a.cpp"]
        );
    }

    #[test]
    fn core_sources_take_one_language_at_a_time_over_the_tree() {
        // The SAMD core's shape: nested ArduinoCore-API folders and a nested .c file.
        let t = tempfile::tempdir().unwrap();
        for f in ["main.cpp", "wiring.c", "WInterrupts.c", "pulse_asm.S", "USB/CDC.cpp", "USB/samd21_host.c", "api/String.cpp", "api/deprecated-avr-comp/avr/dtostrf.c.impl", "compact/dtostrf.c", "notes.txt", "x.cc"] {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let got: Vec<String> = core_sources(t.path())
            .iter()
            .map(|p| p.strip_prefix(t.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            got,
            vec!["pulse_asm.S", "WInterrupts.c", "wiring.c", "USB/samd21_host.c", "compact/dtostrf.c", "main.cpp", "USB/CDC.cpp", "api/String.cpp"]
        );
    }

    #[test]
    fn sketch_order_takes_the_root_then_src_one_language_at_a_time() {
        let mut v: Vec<PathBuf> = ["/b/S.ino.cpp", "/b/src/inner/inner.cpp", "/b/src/inner/c/inner_c.c", "/b/a.c", "/b/src/z.S", "/b/src/inner/x.c", "/b/B.cpp"]
            .iter()
            .map(PathBuf::from)
            .collect();
        sketch_order(&mut v, Path::new("/b"));
        let s: Vec<String> = v.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            s,
            vec!["/b/a.c", "/b/B.cpp", "/b/S.ino.cpp", "/b/src/z.S", "/b/src/inner/x.c", "/b/src/inner/c/inner_c.c", "/b/src/inner/inner.cpp"]
        );
    }

    #[test]
    fn size_regexes_sum_sections() {
        let props = Properties::parse(
            "recipe.size.regex=^(?:\\.text|\\.data|\\.bootloader)\\s+([0-9]+).*\nrecipe.size.regex.data=^(?:\\.data|\\.bss|\\.noinit)\\s+([0-9]+).*\n",
            "t",
        )
        .unwrap();
        let out = "x.elf  :\nsection  size  addr\n.data  10  0\n.text  920  0\n.bss  9  0\n.comment 17 0\n";
        assert_eq!(parse_sizes(&props, out), Sizes { flash: 930, ram: 19, eeprom: 0 });
    }

    #[test]
    fn compile_command_substitutes_and_quotes() {
        let props = Properties::parse(
            "compiler.path=/usr/bin/\nrecipe.cpp.o.pattern=\"{compiler.path}avr-g++\" -c {includes} \"{source_file}\" -o \"{object_file}\"\n",
            "t",
        )
        .unwrap();
        let ctx = Context::new(&props, Path::new("/b"), "S.ino", Path::new("/s"));
        let job = ctx.compile(Path::new("/s p/a.cpp"), Path::new("/b/a.cpp.o"), &[PathBuf::from("/core dir")]).unwrap();
        assert_eq!(job.args, vec!["/usr/bin/avr-g++", "-c", "-I/core dir", "/s p/a.cpp", "-o", "/b/a.cpp.o"]);
    }

    #[test]
    fn hooks_and_objcopies_as_arduino_cli_finds_them() {
        // arduino-pico's un-numbered sketch.prebuild hook and numbered objcopy steps,
        // an empty recipe as the mbed cores write it, and more than nine hooks.
        let props = Properties::parse(
            "recipe.hooks.sketch.prebuild.pattern=sign header\n\
             recipe.hooks.prebuild.2.pattern=two\nrecipe.hooks.prebuild.10.pattern=ten\nrecipe.hooks.prebuild.1.pattern=one\n\
             recipe.hooks.prebuild.3.pattern=\n\
             recipe.objcopy.eep.pattern=\n\
             recipe.objcopy.uf2.pattern=\"/t/picotool\" uf2 convert \"{build.path}/{build.project_name}.elf\"\n\
             recipe.objcopy.bin.1.pattern=objcopy -Obinary\nrecipe.objcopy.bin.2.pattern=sign bin\n",
            "t",
        )
        .unwrap();
        let ctx = Context::new(&props, Path::new("/b"), "S.ino", Path::new("/s"));
        let words = |v: Vec<Vec<String>>| v.into_iter().map(|c| c.join(" ")).collect::<Vec<_>>();
        assert_eq!(words(ctx.hooks("sketch.prebuild").unwrap()), vec!["sign header"]);
        assert_eq!(words(ctx.hooks("prebuild").unwrap()), vec!["one", "ten", "two"]);
        assert_eq!(words(ctx.objcopies().unwrap()), vec!["objcopy -Obinary", "sign bin", "/t/picotool uf2 convert /b/S.ino.elf"]);
    }

    #[test]
    fn missing_recipe_is_reported_with_file() {
        let props = Properties::parse("recipe.c.o.pattern=x\n", "t").unwrap();
        let e = check_recipes(&props, Path::new("/p/platform.txt")).unwrap_err();
        assert!(e.to_string().starts_with("/p/platform.txt has no recipe.cpp.o.pattern"), "{e}");
    }
}
