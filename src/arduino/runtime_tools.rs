//! Tools installed the way arduino-cli installs them
//! (`~/.arduino15/packages/<packager>/tools/<name>/<version>`), offered to a platform's
//! recipes as `runtime.tools.<name>.path` and `runtime.tools.<name>-<version>.path`;
//! and the check that every such property a recipe uses has a value.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::arduino::platform::sorted_dirs;
use crate::arduino::properties::Properties;

/// One installed tool release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRelease {
    pub packager: String,
    pub name: String,
    pub version: String,
    pub path: PathBuf,
}

/// Where arduino-cli installs packages: `$HOME/.arduino15/packages`.
pub fn packages_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".arduino15/packages"))
}

/// Every tool release under `packages/*/tools/*/*`, in path order.
pub fn installed(packages: &Path) -> Vec<ToolRelease> {
    let mut out = Vec::new();
    for packager in sorted_dirs(packages) {
        for tool in sorted_dirs(&packager.join("tools")) {
            for release in sorted_dirs(&tool) {
                out.push(ToolRelease { packager: name_of(&packager), name: name_of(&tool), version: name_of(&release), path: release });
            }
        }
    }
    out
}

/// The `runtime.tools.*` properties arduino-cli gives a build: every release sets
/// `<name>-<version>.path`; `<name>.path` goes to the best release of that name, preferring
/// the board platform's packager, then the core platform's, then the greatest version,
/// then the packager first in name order. (Package indexes, which can pin a platform's
/// tool versions, are not read: fbuild installs nothing.)
pub fn properties(tools: &[ToolRelease], board_packager: &str, core_packager: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        tools.iter().map(|t| (format!("runtime.tools.{}-{}.path", t.name, t.version), t.path.display().to_string())).collect();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    names.dedup();
    let rank = |t: &ToolRelease| {
        if t.packager == board_packager {
            2
        } else if t.packager == core_packager {
            1
        } else {
            0
        }
    };
    for name in names {
        let best = tools
            .iter()
            .filter(|t| t.name == name)
            .max_by(|a, b| {
                rank(a)
                    .cmp(&rank(b))
                    .then_with(|| compare_versions(&a.version, &b.version))
                    .then_with(|| b.packager.cmp(&a.packager))
            })
            .expect("a name comes from a release");
        out.push((format!("runtime.tools.{name}.path"), best.path.display().to_string()));
    }
    out
}

/// Compare versions as relaxed semver: dot-separated release numbers, then a release
/// above any of its pre-releases (`1.7.0` > `1.7.0-arduino3`), pre-release identifiers
/// numerically where both are numbers. `7-2017q4` is release 7, pre-release `2017q4`.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (&str, Option<&str>) {
        let v = v.split('+').next().unwrap_or(v);
        match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        }
    }
    fn ident(a: &str, b: &str) -> Ordering {
        match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        }
    }
    fn dotted(a: &str, b: &str) -> Ordering {
        let (mut x, mut y) = (a.split('.'), b.split('.'));
        loop {
            match (x.next(), y.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(p), Some(q)) => match ident(p, q) {
                    Ordering::Equal => continue,
                    o => return o,
                },
            }
        }
    }
    let ((core_a, pre_a), (core_b, pre_b)) = (split(a), split(b));
    dotted(core_a, core_b).then_with(|| match (pre_a, pre_b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(p), Some(q)) => dotted(p, q),
    })
}

/// Recipes a build runs: a `runtime.tools.*` property one of them uses must be set.
const BUILD_RECIPE_PREFIXES: &[&str] = &["recipe.c.o.", "recipe.cpp.o.", "recipe.S.o.", "recipe.ar.", "recipe.c.combine.", "recipe.objcopy.", "recipe.size.", "recipe.hooks."];

/// Fail with one line naming the first `runtime.tools.*.path` property a build recipe
/// uses but nothing set, where fbuild looked for the tool, and how to give it.
pub fn check_referenced(props: &Properties, platform: &str, packages: Option<&Path>) -> Result<()> {
    let mut missing: Vec<(String, String)> = Vec::new();
    for (key, value) in props.iter() {
        if !(BUILD_RECIPE_PREFIXES.iter().any(|p| key.starts_with(p)) && key.ends_with(".pattern")) {
            continue;
        }
        for property in unset_tool_references(&props.expand(value)) {
            if !missing.iter().any(|(p, _)| *p == property) {
                missing.push((property, key.clone()));
            }
        }
    }
    let Some((property, recipe)) = missing.first() else { return Ok(()) };
    let tool = property.trim_start_matches("runtime.tools.").trim_end_matches(".path");
    let looked = match packages {
        Some(dir) => {
            let (name, version) = split_tool_id(tool);
            let release = match version {
                Some(v) => format!("{name}/{v}"),
                None => format!("{name}/<version>"),
            };
            format!("no {}", dir.join("*/tools").join(release).display())
        }
        None => "HOME is not set, so ~/.arduino15/packages was not searched".to_string(),
    };
    let also = if missing.len() > 1 {
        let rest: Vec<&str> = missing[1..].iter().map(|(p, _)| p.as_str()).collect();
        format!(" (also unset: {})", rest.join(", "))
    } else {
        String::new()
    };
    Err(Error::usage(format!(
        "platform {platform}: {recipe} uses {{{property}}}, which is not set ({looked}); install the tool there or pass --build-property {property}=DIR{also}"
    )))
}

/// The compiler a recipe names is missing. When the recipe reaches it through a
/// `runtime.tools.*.path` property (`compiler.path={runtime.tools.avr-gcc.path}/bin/`),
/// say which property, its value and the file looked for there, in one line; otherwise
/// the plain "not installed" error. (Other tools: `missing_tool`.)
pub fn missing_compiler(props: &Properties, recipe: &str, tool: &Path) -> Error {
    let mut seen = Vec::new();
    let through = tool_properties_used(props, recipe, &mut seen).into_iter().find_map(|property| {
        let value = props.expanded(&property);
        let rest = tool.strip_prefix(value.trim()).ok().filter(|_| !value.trim().is_empty())?;
        Some((property, value, rest.to_path_buf()))
    });
    let Some((property, value, rest)) = through else { return crate::arduino::toolchain::not_installed(tool) };
    Error::usage(format!(
        "compiler {} is not installed: {recipe} finds it through {property}={}, which has no {}; pass --build-property {property}=DIR with DIR holding {}",
        tool.display(),
        value.trim(),
        rest.display(),
        rest.display()
    ))
}

/// The `runtime.tools.*.path` properties `key`'s value reaches through `{...}` references,
/// in the order they appear (each property followed once).
fn tool_properties_used(props: &Properties, key: &str, seen: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    if seen.iter().any(|k| k == key) {
        return out;
    }
    seen.push(key.to_string());
    let Some(value) = props.get(key) else { return out };
    let mut rest = value;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if name.starts_with("runtime.tools.") && name.ends_with(".path") {
            out.push(name.to_string());
        } else {
            out.extend(tool_properties_used(props, name, seen));
        }
        rest = &after[end + 1..];
    }
    out
}

/// A recipe's program is missing and lies under a `runtime.tools.*.path` folder (set by
/// platform.txt's default, as arduino-pico's `{runtime.platform.path}/system/picotool`, or
/// by the user): one line naming the recipe, the property, where fbuild looked and how
/// to give the tool. `None` when no such property explains the program's path.
pub fn missing_tool(props: &Properties, platform: &str, recipe: &str, program: &Path, packages: Option<&Path>) -> Option<Error> {
    let (property, dir) = props
        .iter()
        .filter(|(k, _)| k.starts_with("runtime.tools.") && k.ends_with(".path"))
        .map(|(k, _)| (k.clone(), PathBuf::from(props.expanded(k))))
        .filter(|(_, dir)| !dir.as_os_str().is_empty() && program.starts_with(dir))
        .max_by_key(|(k, dir)| (dir.components().count(), std::cmp::Reverse(k.len())))?;
    let tool = property.trim_start_matches("runtime.tools.").trim_end_matches(".path");
    let (name, version) = split_tool_id(tool);
    let installed = match packages {
        Some(dir) => format!(" nor {}", dir.join("*/tools").join(name).join(version.unwrap_or("<version>")).display()),
        None => String::new(),
    };
    Some(Error::usage(format!(
        "platform {platform}: {recipe} runs {}, which does not exist ({{{property}}} is {}; no {name} there{installed}); install the tool or pass --build-property {property}=DIR",
        program.display(),
        dir.display()
    )))
}

/// `{runtime.tools.X.path}` references left in an expanded recipe.
fn unset_tool_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{runtime.tools.") {
        let after = &rest[i + 1..];
        let Some(end) = after.find('}') else { break };
        let key = &after[..end];
        if key.ends_with(".path") && !key.contains('{') {
            out.push(key.to_string());
        }
        rest = &after[end..];
    }
    out
}

/// `arm-none-eabi-gcc-7-2017q4` -> (`arm-none-eabi-gcc`, `7-2017q4`): the version starts
/// at the first `-` followed by a digit (tool names hold dashes, versions start with one).
fn split_tool_id(id: &str) -> (&str, Option<&str>) {
    let bytes = id.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return (&id[..i], Some(&id[i + 1..]));
        }
    }
    (id, None)
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(packager: &str, name: &str, version: &str) -> ToolRelease {
        ToolRelease { packager: packager.into(), name: name.into(), version: version.into(), path: format!("/p/{packager}/tools/{name}/{version}").into() }
    }

    fn get<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
        props.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn versions_compare_as_relaxed_semver() {
        assert_eq!(compare_versions("10.3.1", "9.2.1"), Ordering::Greater);
        assert_eq!(compare_versions("1.7.0", "1.7.0-arduino3"), Ordering::Greater);
        assert_eq!(compare_versions("7-2017q4", "4.8.3-2014q1"), Ordering::Greater);
        assert_eq!(compare_versions("4.5.0", "4.5.0"), Ordering::Equal);
    }

    #[test]
    fn every_release_by_version_and_the_best_by_name() {
        let tools = vec![
            release("arduino", "bossac", "1.7.0-arduino3"),
            release("arduino", "bossac", "1.9.1-arduino2"),
            release("adafruit", "CMSIS", "5.4.0"),
            release("arduino", "CMSIS", "4.5.0"),
        ];
        let props = properties(&tools, "arduino", "arduino");
        assert_eq!(get(&props, "runtime.tools.bossac-1.7.0-arduino3.path"), Some("/p/arduino/tools/bossac/1.7.0-arduino3"));
        assert_eq!(get(&props, "runtime.tools.bossac.path"), Some("/p/arduino/tools/bossac/1.9.1-arduino2"));
        // The board's packager wins over a greater version from another packager...
        assert_eq!(get(&props, "runtime.tools.CMSIS.path"), Some("/p/arduino/tools/CMSIS/4.5.0"));
        // ...and without a packager preference the greatest version wins.
        let props = properties(&tools, "other", "other");
        assert_eq!(get(&props, "runtime.tools.CMSIS.path"), Some("/p/adafruit/tools/CMSIS/5.4.0"));
    }

    #[test]
    fn installed_reads_packages_tools_name_version() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("arduino/tools/arm-none-eabi-gcc/7-2017q4/bin")).unwrap();
        std::fs::create_dir_all(t.path().join("arduino/hardware/samd/1.8.14")).unwrap();
        let got = installed(t.path());
        assert_eq!(got, vec![release("arduino", "arm-none-eabi-gcc", "7-2017q4").with_path(t.path().join("arduino/tools/arm-none-eabi-gcc/7-2017q4"))]);
    }

    impl ToolRelease {
        fn with_path(mut self, p: PathBuf) -> ToolRelease {
            self.path = p;
            self
        }
    }

    #[test]
    fn an_unset_tool_property_is_named_with_where_it_was_looked_for() {
        let props = Properties::parse(
            "compiler.path={runtime.tools.arm-none-eabi-gcc-7-2017q4.path}/bin/\n\
             recipe.cpp.o.pattern=\"{compiler.path}g++\" \"-I{runtime.tools.CMSIS-4.5.0.path}/CMSIS\"\n\
             tools.bossac.path={runtime.tools.bossac-1.7.0.path}\n",
            "t",
        )
        .unwrap();
        let e = check_referenced(&props, "arduino:samd", Some(Path::new("/h/.arduino15/packages"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "platform arduino:samd: recipe.cpp.o.pattern uses {runtime.tools.arm-none-eabi-gcc-7-2017q4.path}, which is not set \
             (no /h/.arduino15/packages/*/tools/arm-none-eabi-gcc/7-2017q4); install the tool there or pass \
             --build-property runtime.tools.arm-none-eabi-gcc-7-2017q4.path=DIR (also unset: runtime.tools.CMSIS-4.5.0.path)"
        );
        assert_eq!(e.exit_code(), 2);
        // Upload tools are not needed to build; set properties pass.
        let mut props = props;
        props.set("runtime.tools.arm-none-eabi-gcc-7-2017q4.path", "/usr");
        props.set("runtime.tools.CMSIS-4.5.0.path", "/k");
        assert!(check_referenced(&props, "arduino:samd", None).is_ok());
    }

    #[test]
    fn a_tool_missing_from_a_given_folder_names_the_property() {
        let mut props = Properties::new();
        props.set("compiler.path", "{runtime.tools.avr-gcc.path}/bin/");
        props.set("compiler.cpp.cmd", "avr-g++");
        props.set("recipe.cpp.o.pattern", "\"{compiler.path}{compiler.cpp.cmd}\" -c");
        props.set("runtime.tools.avr-gcc.path", "/empty");
        let e = missing_compiler(&props, "recipe.cpp.o.pattern", Path::new("/empty/bin/avr-g++"));
        assert_eq!(
            e.to_string(),
            "compiler /empty/bin/avr-g++ is not installed: recipe.cpp.o.pattern finds it through runtime.tools.avr-gcc.path=/empty, \
             which has no bin/avr-g++; pass --build-property runtime.tools.avr-gcc.path=DIR with DIR holding bin/avr-g++"
        );
        assert_eq!(e.exit_code(), 2);
        // A compiler named without a tool property keeps the plain error.
        props.set("compiler.path", "/opt/x/bin/");
        let e = missing_compiler(&props, "recipe.cpp.o.pattern", Path::new("/opt/x/bin/avr-g++"));
        assert!(e.to_string().starts_with("compiler /opt/x/bin/avr-g++ is not installed; install Debian package gcc-avr"), "{e}");
    }

    #[test]
    fn a_missing_program_names_the_tool_property_that_placed_it() {
        // arduino-pico's platform.txt places picotool below the platform by default.
        let props = Properties::parse(
            "runtime.platform.path=/k/rp2040\n\
             runtime.tools.pqt-picotool.path={runtime.platform.path}/system/picotool\n\
             runtime.tools.pqt-gcc.path=/usr\n",
            "t",
        )
        .unwrap();
        let e = missing_tool(&props, "rp2040:rp2040", "recipe.objcopy.uf2.pattern", Path::new("/k/rp2040/system/picotool/picotool"), Some(Path::new("/h/.arduino15/packages"))).unwrap();
        assert_eq!(
            e.to_string(),
            "platform rp2040:rp2040: recipe.objcopy.uf2.pattern runs /k/rp2040/system/picotool/picotool, which does not exist \
             ({runtime.tools.pqt-picotool.path} is /k/rp2040/system/picotool; no pqt-picotool there nor /h/.arduino15/packages/*/tools/pqt-picotool/<version>); \
             install the tool or pass --build-property runtime.tools.pqt-picotool.path=DIR"
        );
        assert_eq!(e.exit_code(), 2);
        assert!(missing_tool(&props, "p", "r", Path::new("/opt/x/picotool"), None).is_none());
    }

    #[test]
    fn tool_ids_split_at_the_version() {
        assert_eq!(split_tool_id("arm-none-eabi-gcc-7-2017q4"), ("arm-none-eabi-gcc", Some("7-2017q4")));
        assert_eq!(split_tool_id("CMSIS-Atmel-1.2.0"), ("CMSIS-Atmel", Some("1.2.0")));
        assert_eq!(split_tool_id("avrdude"), ("avrdude", None));
    }
}
