//! PlatformIO projects (`platformio.ini`, `src/`, `include/`, `lib/`) built on the
//! installed Arduino AVR core, the way PlatformIO's atmelavr/arduino builder builds them.
//!
//! Each env becomes an ordinary fbuild build: the env's `src_dir` staged as a sketch
//! folder, the board as an FQBN, and PlatformIO's differences from arduino-builder as
//! build properties (`-DPLATFORMIO=60200`, `ARDUINO=10808`, `-I` for `src/` and
//! `include/`, the env's `build_flags`).

pub mod boards;
pub mod ci;
pub mod ldf;
pub mod libraries;
pub mod platformio;
pub mod src_filter;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::pipeline::{CORE_ORDER_BY_NAME, CORE_ORDER_PROPERTY, PROJECT_INCLUDE_FLAGS_PROPERTY};
use platformio::Config;

/// The `PLATFORMIO` define of PlatformIO Core 6.2, the reference we match.
pub const PLATFORMIO_VERSION_DEFINE: &str = "-DPLATFORMIO=60200";
/// The `ARDUINO` version PlatformIO's arduino builder defines.
pub const ARDUINO_VERSION: &str = "10808";
pub const INI: &str = "platformio.ini";
/// PlatformIO's link: the C++ driver, its flags, and the objects, libraries' archives,
/// core and `-lm` inside one `--start-group`, which places libc/libgcc helpers
/// differently from Arduino's recipe and lets an archived library use a later one.
/// The variant's archive comes first: empty for every board of the Arduino AVR core, but
/// one more input to the linker, and without it the ATmega2560's trampolines come out in
/// another order (measured: dropping it from `pio run`'s own link changes the firmware).
const LINK_RECIPE: &str = "\"{compiler.path}{compiler.cpp.cmd}\" -mmcu={build.mcu} -Os -Wl,--gc-sections -flto -fuse-linker-plugin {compiler.c.elf.extra_flags} -o \"{build.path}/{build.project_name}.elf\" \"-L{build.path}\" -Wl,--start-group {object_files} \"{fbuild.pio.variant_archive}\" \"{build.path}/{archive_file}\" -lm -Wl,--end-group";
/// The property naming that archive; `prepare` writes it into the env's output folder.
const VARIANT_ARCHIVE_PROPERTY: &str = "fbuild.pio.variant_archive";
/// What `ar rc` writes for an archive with no members (the Arduino AVR core's variants
/// have headers only, so PlatformIO's `libFrameworkArduinoVariant.a` is always this).
const EMPTY_ARCHIVE: &[u8] = b"!<arch>\n";
/// PlatformIO's compile flags in place of the recipe's: above all no `-g`, whose extra
/// sections in LTO objects shift section ids and so the order of the linker's
/// trampolines on the ATmega2560; and no `-flto` for assembly. (`-MMD` stays: fbuild reads
/// the depfiles, and it changes no object.)
const COMPILE_FLAGS: [(&str, &str); 3] = [
    ("compiler.c.flags", "-c -Os -Wall -std=gnu11 -ffunction-sections -fdata-sections -MMD -flto -fno-fat-lto-objects"),
    ("compiler.cpp.flags", "-c -Os -Wall -std=gnu++11 -fpermissive -fno-exceptions -ffunction-sections -fdata-sections -fno-threadsafe-statics -MMD -flto"),
    ("compiler.S.flags", "-c -x assembler-with-cpp -MMD"),
];
/// `build_type = debug`: PlatformIO's default `debug_build_flags` take the place of `-Os`
/// in every compile and the link (assembly gets the `-g` ones), plus its define.
const DEBUG_FLAGS: &str = "-Og -g2 -ggdb2";
const DEBUG_DEFINE: &str = "-D__PLATFORMIO_BUILD_DEBUG__";

/// Is this path a PlatformIO project folder?
pub fn is_project(path: &Path) -> bool {
    path.is_dir() && path.join(INI).is_file()
}

/// One env of a project, ready for the pipeline.
#[derive(Debug)]
pub struct EnvBuild {
    pub env: String,
    /// `project:env`, the result's name.
    pub label: String,
    pub fqbn: String,
    /// The env's sources staged as a sketch folder.
    pub sketch: PathBuf,
    /// Everything the env sets, its own folders (`-I src -I include`) included.
    pub build_properties: Vec<(String, String)>,
    /// The project's own `-I` words.
    pub project_includes: Vec<String>,
    /// `build_properties` without the project's own folders: what envs of different
    /// projects can share, with `own_properties` as sketch properties on top.
    pub shared_properties: Vec<(String, String)>,
    pub own_properties: Vec<(String, String)>,
    /// The properties the env's own sources compile with: `own_properties` plus
    /// `build_src_flags` (`Request::sketch_properties` of the pipeline).
    pub src_properties: Vec<(String, String)>,
    /// `lib_deps` given as paths: single libraries, preferred first.
    pub library: Vec<PathBuf>,
    /// `lib_dir` then `lib_extra_dirs`: folders of libraries.
    pub libraries: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// `monitor_speed` and `upload_port`, kept for `fbuild run`.
    pub monitor_speed: Option<u32>,
    pub upload_port: Option<String>,
}

/// Read a project and prepare the envs asked for (or its defaults) under `out/ENV`.
/// What envs can share (the staged libraries, the variant archive) goes under `out`
/// itself, at paths named by content, so envs with the same board and flags come out
/// with equal build settings and share one stage 1 (`targets::with_projects`).
pub fn prepare(project: &Path, envs: &[String], out: &Path) -> Result<Vec<EnvBuild>> {
    prepare_in(project, envs, out, out)
}

/// `prepare`, with what envs can share (staged libraries, the variant archive) under
/// `shared_out`: one folder for every project of a `compile-many` run.
pub fn prepare_in(project: &Path, envs: &[String], out: &Path, shared_out: &Path) -> Result<Vec<EnvBuild>> {
    let project = std::path::absolute(project).map_err(|e| Error::io(project, e))?;
    let config = Config::load(&project.join(INI))?;
    let name = project.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
    config
        .select_envs(envs)?
        .into_iter()
        .map(|env| prepare_env(&config, &project, &name, &env, out, shared_out))
        .collect()
}

fn dir_option(config: &Config, project: &Path, key: &str, default: &str) -> Result<PathBuf> {
    let v = config.get("platformio", key)?.unwrap_or_else(|| default.to_string());
    Ok(project.join(v))
}

fn prepare_env(config: &Config, project: &Path, name: &str, env: &str, project_out: &Path, shared_out: &Path) -> Result<EnvBuild> {
    let out = &project_out.join(env);
    let ini = config.path().display().to_string();
    let get = |key: &str| config.env(env, key);
    let platform = get("platform")?.unwrap_or_default();
    if !platform.contains("atmelavr") {
        return Err(Error::usage(format!(
            "{ini}: [env:{env}] platform = `{platform}`; fbuild builds PlatformIO projects for atmelavr only"
        )));
    }
    if let Some(fw) = get("framework")? {
        if fw.trim() != "arduino" {
            return Err(Error::usage(format!("{ini}: [env:{env}] framework = `{fw}`; fbuild builds framework = arduino only")));
        }
    }
    let board_id = get("board")?
        .ok_or_else(|| Error::usage(format!("{ini}: [env:{env}] has no `board`; add e.g. board = uno")))?;
    let board = boards::find(board_id.trim())?;

    let src_dir = dir_option(config, project, "src_dir", "src")?;
    if !src_dir.is_dir() {
        return Err(Error::usage(format!(
            "{ini}: src_dir {} does not exist; create it with the project's sources or set [platformio] src_dir",
            src_dir.display()
        )));
    }
    let include_dir = dir_option(config, project, "include_dir", "include")?;
    let lib_dir = dir_option(config, project, "lib_dir", "lib")?;

    let monitor_speed = match get("monitor_speed")? {
        None => None,
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
            Error::usage(format!("{ini}: [env:{env}] monitor_speed = `{}`; give the baud rate as a number, e.g. 115200", v.trim()))
        })?),
    };
    let mut warnings = Vec::new();
    for script in config.list(&format!("env:{env}"), "extra_scripts")? {
        warnings.push(format!("{ini}: [env:{env}] extra_scripts {script} cannot run without PlatformIO"));
    }

    // PlatformIO's flags on top of the core's recipes: its defines, then -I src and include/,
    // then the env's build_flags (linker ones to the link only).
    let mut compile = vec![PLATFORMIO_VERSION_DEFINE.to_string()];
    let mut link = Vec::new();
    let mut project_includes = Vec::new();
    // A relative -I names a folder of the project.
    let in_project = |flag: &str| match flag.strip_prefix("-I").filter(|d| !d.is_empty() && !Path::new(d).is_absolute()) {
        Some(dir) => format!("-I{}", project.join(dir).display()),
        None => flag.to_string(),
    };
    let words = |option: &str| -> Result<Vec<String>> {
        let mut words = Vec::new();
        for line in config.lines(&format!("env:{env}"), option)? {
            // PlatformIO reads flags with Python's shlex: quotes group, and go.
            words.extend(shlex::split(&line).ok_or_else(|| {
                Error::usage(format!("{ini}: [env:{env}] {option} has an unclosed quote: {line}; close it or escape it with \\"))
            })?);
        }
        Ok(words)
    };
    for flag in words("build_flags")?.iter().map(String::as_str) {
        if flag.starts_with("-Wl,") {
            link.push(flag.to_string());
        } else {
            let converted = in_project(flag);
            if converted != flag {
                project_includes.push(converted.clone());
            }
            compile.push(converted);
        }
    }
    // build_src_flags: the project's own sources only, after everything else.
    let src_flags: Vec<String> = words("build_src_flags")?.iter().map(|f| in_project(f)).collect();
    let debug = match get("build_type")?.as_deref().map(str::trim) {
        None | Some("release" | "test") => false,
        Some("debug") => true,
        Some(other) => {
            return Err(Error::usage(format!("{ini}: [env:{env}] build_type = `{other}`; use release or debug")));
        }
    };
    if debug {
        compile.push(DEBUG_DEFINE.to_string());
    }
    let mut includes = vec![format!("-I{}", src_dir.display())];
    if include_dir.is_dir() {
        includes.push(format!("-I{}", include_dir.display()));
    }
    project_includes.extend(includes.iter().cloned());
    compile.splice(1..1, includes);
    // build_unflags: drop those words from PlatformIO's own flags and from build_flags.
    let unflags: Vec<String> = words("build_unflags")?;
    compile.retain(|f| !unflags.contains(f));
    let shared: Vec<String> = compile.iter().filter(|f| !project_includes.contains(f)).cloned().collect();
    let with_src: Vec<String> = compile.iter().chain(&src_flags).filter(|f| !unflags.contains(f)).cloned().collect();
    let mut props = vec![
        ("runtime.ide.version".to_string(), ARDUINO_VERSION.to_string()),
        (CORE_ORDER_PROPERTY.to_string(), CORE_ORDER_BY_NAME.to_string()),
        (PROJECT_INCLUDE_FLAGS_PROPERTY.to_string(), recipe_text(&project_includes)?),
    ];
    props.extend(extra_flags(&compile)?);
    if !link.is_empty() {
        props.push(("compiler.c.elf.extra_flags".to_string(), recipe_text(&link)?));
    }
    let link_recipe = if debug { LINK_RECIPE.replace(" -Os ", &format!(" {DEBUG_FLAGS} ")) } else { LINK_RECIPE.to_string() };
    props.push(("recipe.c.combine.pattern".to_string(), link_recipe));
    // Members matched by full path (`P`), so every object stays, as with PlatformIO's one
    // `ar rc` of all of them: fbuild archives one object at a time, and plain `r` would let
    // a library's second `Servo.cpp.o` (one per architecture folder) replace its first.
    props.push(("compiler.ar.flags".to_string(), "rcsP".to_string()));
    // Libraries link after the ones they use, as PlatformIO builds its dependency tree.
    props.push((crate::discover::LIBRARY_ORDER_PROPERTY.to_string(), crate::discover::DEPENDENCIES_FIRST.to_string()));
    let variant_archive = shared_out.join("libFrameworkArduinoVariant.a");
    std::fs::create_dir_all(out).at(out)?;
    if std::fs::read(&variant_archive).ok().as_deref() != Some(EMPTY_ARCHIVE) {
        std::fs::create_dir_all(shared_out).at(shared_out)?;
        std::fs::write(&variant_archive, EMPTY_ARCHIVE).at(&variant_archive)?;
    }
    props.push((VARIANT_ARCHIVE_PROPERTY.to_string(), variant_archive.display().to_string()));
    for (key, value) in COMPILE_FLAGS {
        let value = match (debug, key) {
            (false, _) => value.to_string(),
            (true, "compiler.S.flags") => value.replace("-x ", &"-g -x ").replace(" -MMD", &format!(" {DEBUG_FLAGS} -MMD")),
            (true, _) => value.replace(" -Os ", " ").replace(" -MMD", &format!(" {DEBUG_FLAGS} -MMD")),
        };
        let kept: Vec<&str> = value.split(' ').filter(|f| !unflags.iter().any(|u| u == f)).collect();
        props.push((key.to_string(), kept.join(" ")));
    }
    for (key, prop) in [("board_build.mcu", "build.mcu"), ("board_build.f_cpu", "build.f_cpu"), ("board_upload.maximum_size", "upload.maximum_size")] {
        if let Some(v) = get(key)? {
            props.push((prop.to_string(), v.trim().to_string()));
        }
    }

    let mut libraries = Vec::new();
    if lib_dir.is_dir() {
        libraries.push(lib_dir.clone());
    }
    for extra in config.list(&format!("env:{env}"), "lib_extra_dirs")? {
        libraries.push(project.join(extra));
    }
    let mut library = Vec::new();
    // Each lib_deps item as the finder needs it: a folder, or an installed library's name.
    let mut lib_deps: Vec<std::result::Result<PathBuf, String>> = Vec::new();
    for dep in config.list(&format!("env:{env}"), "lib_deps")? {
        match resolve_lib_dep(&ini, env, &dep, project, &libraries)? {
            Some(p) => {
                library.push(p.clone());
                lib_deps.push(Ok(p));
            }
            None => lib_deps.push(Err(bare_name(&dep).to_string())),
        }
    }
    // PlatformIO's storages in its order, the framework's libraries last, staged as one folder.
    libraries.extend(framework_libraries());
    let archive = !matches!(get("lib_archive")?.as_deref().map(str::trim), Some("no" | "false" | "0" | "off"));
    let ignore = config.list(&format!("env:{env}"), "lib_ignore")?;
    let compat = match get("lib_compat_mode")? {
        None => libraries::CompatMode::default(),
        Some(v) => libraries::CompatMode::parse(&v).ok_or_else(|| libraries::bad_compat_mode(&ini, env, v.trim()))?,
    };
    // Named by what shapes it, so envs asking for the same libraries share one folder.
    let staged = {
        let mut h = blake3::Hasher::new();
        h.update(format!("{library:?}{libraries:?}{archive}{ignore:?}{compat:?}").as_bytes());
        shared_out.join(format!("libraries-{}", &h.finalize().to_hex()[..12]))
    };
    let staged_libs = libraries::stage(&library, &libraries, archive, &ignore, compat, &staged)?;
    let libraries = vec![staged];
    let library = Vec::new();
    let ldf = match get("lib_ldf_mode")? {
        None => ldf::LdfMode::default(),
        Some(v) => ldf::LdfMode::parse(&v).ok_or_else(|| {
            Error::usage(format!("{ini}: [env:{env}] lib_ldf_mode = `{}`; use off, chain, deep, chain+ or deep+", v.trim()))
        })?,
    };

    let filter_text = match get("build_src_filter")? {
        Some(f) => f,
        None => get("src_filter")?.unwrap_or_else(|| src_filter::DEFAULT.to_string()),
    };
    let filter_text = filter_text.split_whitespace().collect::<Vec<_>>().join(" ");
    let selected = src_filter::select(&src_dir, &filter_text, &format!("{ini}: [env:{env}] build_src_filter"))?;
    let sketch = stage_sources(&src_dir, &out.join("src-sketch"), &selected)?;
    let mut src_properties = extra_flags(&with_src)?.to_vec();
    if !ldf.evaluates_conditionals() {
        let scan = ldf::ProjectScan {
            path: std::fs::canonicalize(project).unwrap_or_else(|_| project.to_path_buf()),
            include_dirs: [&include_dir, &src_dir].iter().map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf())).collect(),
            // The sources the filter selects (other files it matches are not read).
            sources: selected
                .iter()
                .filter(|rel| crate::arduino::sketch::is_ino(rel) || rel.extension().is_some_and(|e| crate::arduino::sketch::SOURCE_EXTENSIONS.iter().any(|x| e == *x)))
                .map(|rel| std::fs::canonicalize(src_dir.join(rel)).unwrap_or_else(|_| src_dir.join(rel)))
                .collect(),
            lib_deps: Vec::new(),
        };
        let fixed = pio_libraries(ldf, scan, &staged_libs, &lib_deps)?;
        src_properties.push((crate::discover::FIXED_LIBRARIES_PROPERTY.to_string(), fixed.join("\n")));
    }
    let shared_flags = extra_flags(&shared)?;
    let shared_properties = props
        .iter()
        .filter(|(k, _)| k != PROJECT_INCLUDE_FLAGS_PROPERTY)
        .cloned()
        .map(|(k, v)| match shared_flags.iter().find(|(e, _)| *e == k).cloned() {
            Some(e) => e,
            None => (k, v),
        })
        .collect();
    Ok(EnvBuild {
        project_includes,
        shared_properties,
        own_properties: extra_flags(&compile)?.to_vec(),
        src_properties,
        env: env.to_string(),
        label: format!("{name}:{env}"),
        fqbn: board.fqbn.to_string(),
        sketch,
        build_properties: props,
        library,
        libraries,
        warnings,
        monitor_speed,
        upload_port: get("upload_port")?.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()),
    })
}

/// `owner/Name@^1.2.3` or `Name`: the name part, compared with installed library folders.
fn bare_name(dep: &str) -> &str {
    let bare = dep.split('@').next().unwrap_or(dep).trim();
    bare.rsplit('/').next().unwrap_or(bare).trim()
}

/// The staged copies of the libraries PlatformIO's finder picks in `mode` (see ldf.rs),
/// in link order.
fn pio_libraries(mode: ldf::LdfMode, mut scan: ldf::ProjectScan, staged: &[(PathBuf, PathBuf)], lib_deps: &[std::result::Result<PathBuf, String>]) -> Result<Vec<String>> {
    // Read once a run per staged set: every env of a compile-many over many projects
    // asks for the same one.
    type Builders = (Vec<ldf::LibBuilder>, Vec<PathBuf>);
    static READ: std::sync::Mutex<Vec<(Vec<(PathBuf, PathBuf)>, std::sync::Arc<Builders>)>> = std::sync::Mutex::new(Vec::new());
    let known = READ.lock().unwrap().iter().find(|(k, _)| k == staged).map(|(_, b)| b.clone());
    let read = match known {
        Some(b) => b,
        None => {
            let (mut builders, mut copies) = (Vec::new(), Vec::new());
            for (orig, copy) in staged {
                if let Some(lib) = ldf::LibBuilder::read(orig) {
                    builders.push(lib);
                    copies.push(copy.clone());
                }
            }
            let b = std::sync::Arc::new((builders, copies));
            READ.lock().unwrap().push((staged.to_vec(), b.clone()));
            b
        }
    };
    let (builders, copies) = (&read.0, &read.1);
    let deps: Vec<usize> = lib_deps
        .iter()
        .filter_map(|d| match d {
            Ok(path) => {
                let real = std::fs::canonicalize(path).ok()?;
                builders.iter().position(|b| b.path == real)
            }
            Err(name) => builders.iter().position(|b| b.name == *name || b.path.file_name().is_some_and(|f| f == name.as_str())),
        })
        .collect();
    scan.lib_deps = deps;
    let picked = ldf::find(mode, &scan, builders);
    Ok(picked.into_iter().map(|i| copies[i].display().to_string()).collect())
}

/// The three `compiler.*.extra_flags` properties carrying `flags`. Setting
/// compiler.cpp.extra_flags turns off the pipeline's own DECIMAL_DIG fix for GCC < 6, so
/// it goes in here (PlatformIO's reference toolchain adds the same define).
fn extra_flags(flags: &[String]) -> Result<[(String, String); 3]> {
    let c = recipe_text(flags)?;
    Ok([
        ("compiler.c.extra_flags".to_string(), c.clone()),
        ("compiler.cpp.extra_flags".to_string(), format!("{c} {}", crate::pipeline::DECIMAL_DIG_FIX)),
        ("compiler.S.extra_flags".to_string(), c),
    ])
}

/// Flags as recipe text that the recipe splitter (arduino-cli's rules) gives back word
/// for word, a word with spaces included.
fn recipe_text(flags: &[String]) -> Result<String> {
    crate::arduino::properties::join_command_line(flags).ok_or_else(|| {
        Error::usage(format!("a build flag among `{}` holds both a `\"` and a `'` next to spaces; fbuild cannot pass it to the compiler as one word", flags.join(" ")))
    })
}

/// The installed Arduino AVR core's own libraries (SPI, Wire, ...), PlatformIO's
/// framework library storage. Found once a run: reading the installed platforms is
/// the costliest part of preparing an env.
fn framework_libraries() -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let platforms = crate::arduino::platform::discover(&[]).ok()?;
            platforms.iter().find(|p| p.vendor == "arduino" && p.arch == "avr").map(|p| p.path.join("libraries")).filter(|p| p.is_dir())
        })
        .clone()
}

/// A `lib_deps` item: a path (`symlink://`, `file://`, or plain) is one library; a bare
/// name must be installed already (lib/, lib_extra_dirs, or the Arduino library folders,
/// which the normal library search covers); anything else would need the registry.
fn resolve_lib_dep(ini: &str, env: &str, dep: &str, project: &Path, libraries: &[PathBuf]) -> Result<Option<PathBuf>> {
    let path = dep.strip_prefix("symlink://").or_else(|| dep.strip_prefix("file://"));
    let looks_like_path = path.is_some() || dep.starts_with('/') || dep.starts_with('.') || dep.starts_with('~');
    if looks_like_path {
        let raw = path.unwrap_or(dep);
        let p = if let Some(rest) = raw.strip_prefix("~/") {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
        } else {
            project.join(raw)
        };
        if !p.is_dir() {
            return Err(Error::usage(format!("{ini}: [env:{env}] lib_deps {dep}: {} is not a folder", p.display())));
        }
        return Ok(Some(p));
    }
    let bare = bare_name(dep);
    let mut roots: Vec<PathBuf> = libraries.to_vec();
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(home).join("Arduino/libraries"));
    }
    roots.push(PathBuf::from("/usr/share/arduino/libraries"));
    roots.push(PathBuf::from("/usr/share/arduino/hardware/arduino/avr/libraries"));
    let installed = roots.iter().any(|r| {
        r.join(bare).is_dir()
            || std::fs::read_dir(r).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(bare))).unwrap_or(false)
    });
    if installed {
        // Found by the ordinary library search from its headers.
        return Ok(None);
    }
    Err(Error::usage(format!(
        "{ini}: [env:{env}] lib_deps `{dep}` is not installed and fbuild has no network to fetch it; put the library in {} or name its folder with symlink://PATH",
        project.join("lib").display()
    )))
}

/// Copy `src_dir` into a sketch folder the pipeline can load: the first `.ino` (sorted)
/// names the folder; sub-folders go under the sketch's `src/` (compiled recursively, as
/// PlatformIO compiles `src/`). Without an `.ino`, the first top-level `.cpp` stands as the
/// main file, marked to compile as it is (an extra object, even an empty one, moves the
/// ATmega2560's linker trampolines); with no such file, an empty main `src.ino` stands in.
fn stage_sources(src_dir: &Path, stage: &Path, selected: &BTreeSet<PathBuf>) -> Result<PathBuf> {
    // Headers always (they are found, not compiled); sources only when the filter selects them.
    let wanted = |p: &Path| {
        let rel = p.strip_prefix(src_dir).unwrap_or(p);
        let compiled = crate::arduino::sketch::is_ino(p) || p.extension().is_some_and(|e| crate::arduino::sketch::SOURCE_EXTENSIONS.iter().any(|x| e == *x));
        !compiled || selected.contains(rel)
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(src_dir).at(src_dir)?.flatten().map(|e| e.path()).filter(|p| p.is_dir() || wanted(p)).collect();
    entries.sort();
    let main_ino = entries.iter().find(|p| p.is_file() && crate::arduino::sketch::is_ino(p));
    let main_cpp = entries.iter().find(|p| p.is_file() && p.extension().is_some_and(|e| e == "cpp"));
    let main = main_ino.or(main_cpp).and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned());
    let name = main.clone().unwrap_or_else(|| "src".to_string());
    // What the staged folder must hold: each file's bytes, from the project or made here.
    let mut files: Vec<(PathBuf, Staged)> = Vec::new();
    if main.is_none() {
        files.push((PathBuf::from("src.ino"), Staged::Bytes(Vec::new())));
    }
    for p in &entries {
        let file_name = PathBuf::from(p.file_name().unwrap_or_default());
        if p.is_dir() {
            list_tree(p, &Path::new("src").join(&file_name), &wanted, &mut files)?;
        } else if main_ino.is_none() && Some(p) == main_cpp {
            files.push((PathBuf::from(format!("{name}.ino")), Staged::Copy(p.clone())));
            files.push((PathBuf::from(crate::arduino::sketch::PLAIN_CPP_MAIN_MARKER), Staged::Bytes(Vec::new())));
        } else {
            files.push((file_name, Staged::Copy(p.clone())));
        }
    }
    if main_ino.is_some() {
        use std::os::unix::ffi::OsStrExt;
        files.push((PathBuf::from(crate::arduino::sketch::ORIGIN_MARKER), Staged::Bytes(src_dir.as_os_str().as_bytes().to_vec())));
    }
    let dir = stage.join(&name);
    sync_folder(stage, &dir, &files)?;
    Ok(dir)
}

/// A file of a staged folder: a copy of a project file, or bytes fbuild writes.
enum Staged {
    Copy(PathBuf),
    Bytes(Vec<u8>),
}

fn list_tree(from: &Path, rel: &Path, wanted: &dyn Fn(&Path) -> bool, out: &mut Vec<(PathBuf, Staged)>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from).at(from)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let r = rel.join(p.file_name().unwrap_or_default());
        if p.is_dir() {
            list_tree(&p, &r, wanted, out)?;
        } else if wanted(&p) {
            out.push((r, Staged::Copy(p)));
        }
    }
    Ok(())
}

/// Make `stage` hold exactly `dir` with `files`, rewriting only files whose bytes
/// changed: a warm run over many projects then writes nothing, and an unchanged file
/// keeps its timestamps.
fn sync_folder(stage: &Path, dir: &Path, files: &[(PathBuf, Staged)]) -> Result<()> {
    let keep: BTreeSet<PathBuf> = files.iter().map(|(r, _)| dir.join(r)).collect();
    prune(stage, &keep, dir)?;
    for (rel, what) in files {
        let dest = dir.join(rel);
        let bytes = match what {
            Staged::Copy(p) => std::fs::read(p).at(p)?,
            Staged::Bytes(b) => b.clone(),
        };
        if std::fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).at(parent)?;
            }
            std::fs::write(&dest, &bytes).at(&dest)?;
        }
    }
    Ok(())
}

/// Remove everything under `folder` that is neither one of `keep` nor a folder on the
/// way to one.
fn prune(folder: &Path, keep: &BTreeSet<PathBuf>, dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(folder) else { return Ok(()) };
    for e in rd.flatten() {
        let p = e.path();
        let needed = keep.iter().any(|k| k.starts_with(&p)) || p == dir;
        if !needed {
            if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p).at(&p)?;
            } else {
                std::fs::remove_file(&p).at(&p)?;
            }
        } else if p.is_dir() && !keep.contains(&p) {
            prune(&p, keep, dir)?;
        }
    }
    Ok(())
}

pub(crate) fn copy_tree(from: &Path, to: &Path, wanted: &dyn Fn(&Path) -> bool) -> Result<()> {
    std::fs::create_dir_all(to).at(to)?;
    for entry in std::fs::read_dir(from).at(from)?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(entry.file_name()), wanted)?;
        } else if wanted(&p) {
            std::fs::copy(&p, to.join(entry.file_name())).at(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(ini: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(INI), ini).unwrap();
        std::fs::create_dir_all(d.path().join("src/util")).unwrap();
        std::fs::write(d.path().join("src/Demo.ino"), "void setup(){}\nvoid loop(){}\n").unwrap();
        std::fs::write(d.path().join("src/util/u.cpp"), "int u;\n").unwrap();
        d
    }

    #[test]
    fn env_maps_board_flags_and_stages_sources() {
        let d = project("[env]\nplatform = atmelavr\nframework = arduino\n[env:m]\nboard = megaatmega2560\nbuild_flags = -DX=1 -Iinc -Wl,-Map,x.map\n");
        let out = d.path().join("out");
        let envs = prepare(d.path(), &[], &out).unwrap();
        let e = &envs[0];
        assert_eq!(e.fqbn, "arduino:avr:mega:cpu=atmega2560");
        assert!(e.label.ends_with(":m"));
        assert!(e.sketch.join("Demo.ino").is_file() && e.sketch.join("src/util/u.cpp").is_file());
        let prop = |k: &str| e.build_properties.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(prop("runtime.ide.version"), "10808");
        let c = prop("compiler.c.extra_flags");
        assert!(c.starts_with("-DPLATFORMIO=60200 -I") && c.contains("-DX=1") && c.contains(&format!("-I{}", d.path().join("inc").display())), "{c}");
        assert!(!c.contains("-Wl,"));
        assert_eq!(prop("compiler.c.elf.extra_flags"), "-Wl,-Map,x.map");

        let d = project("[env:u]\nplatform = atmelavr\nboard = uno\nbuild_flags = -std=gnu++14 -DKEEP -DDROP\nbuild_unflags = -std=gnu++11 -DDROP\n");
        let e = &prepare(d.path(), &[], &d.path().join("o")).unwrap()[0];
        let prop = |k: &str| e.build_properties.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone()).unwrap();
        assert!(!prop("compiler.cpp.flags").contains("-std=gnu++11") && prop("compiler.cpp.flags").contains("-fpermissive"));
        let cpp = prop("compiler.cpp.extra_flags");
        assert!(cpp.contains("-std=gnu++14") && cpp.contains("-DKEEP") && !cpp.contains("-DDROP"), "{cpp}");
    }

    #[test]
    fn without_an_ino_the_first_cpp_is_the_main_file_as_it_is() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(INI), "[env:u]\nplatform = atmelavr\nboard = uno\n").unwrap();
        std::fs::create_dir_all(d.path().join("src")).unwrap();
        let main = "#include <Arduino.h>\nvoid helper() {}\nvoid setup() { helper(); }\nvoid loop() {}\n";
        std::fs::write(d.path().join("src/main.cpp"), main).unwrap();
        std::fs::write(d.path().join("src/other.cpp"), "int other;\n").unwrap();
        let e = &prepare(d.path(), &[], &d.path().join("o")).unwrap()[0];
        assert!(e.sketch.ends_with("main") && e.sketch.join("other.cpp").is_file() && !e.sketch.join("main.cpp").exists());
        let sketch = crate::arduino::sketch::Sketch::load(&e.sketch).unwrap();
        assert_eq!(sketch.merged_cpp().unwrap(), main.as_bytes(), "compiled as it is: no #line, no prototypes");
    }

    #[test]
    fn bad_platform_missing_src_and_registry_deps_are_usage_errors() {
        let d = project("[env:a]\nplatform = espressif32\nboard = uno\n");
        assert!(prepare(d.path(), &[], &d.path().join("o")).unwrap_err().to_string().contains("atmelavr only"));
        let d = project("[platformio]\nsrc_dir = nowhere\n[env:a]\nplatform = atmelavr\nboard = uno\n");
        assert!(prepare(d.path(), &[], &d.path().join("o")).unwrap_err().to_string().contains("src_dir"));
        let d = project("[env:a]\nplatform = atmelavr\nboard = uno\nlib_deps = someone/NoSuchLibAnywhere@^1.0\n");
        let e = prepare(d.path(), &[], &d.path().join("o")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no network"), "{e}");
    }
}
