//! Installed Arduino platforms (`<hardware>/<vendor>/<arch>/{boards,platform}.txt`)
//! and resolving a board name (short id or FQBN with menu options) into the
//! property set every recipe is expanded against.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::arduino::properties::Properties;
use crate::arduino::runtime_tools;

/// The value arduino-builder defines as `ARDUINO=`; firmware must match it.
pub const DEFAULT_IDE_VERSION: &str = "10600";

#[derive(Debug, Clone)]
pub struct Platform {
    pub vendor: String,
    pub arch: String,
    pub path: PathBuf,
    /// `platform.txt` merged with `platform.local.txt`.
    pub properties: Properties,
    /// `boards.txt` merged with `boards.local.txt`.
    pub boards: Properties,
    /// Menu option ids per (board, menu) in file order: the first is the default.
    menu_order: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BoardInfo {
    pub id: String,
    pub fqbn: String,
    pub name: String,
    pub mcu: String,
    pub max_flash: Option<u64>,
    pub max_ram: Option<u64>,
    /// The memory class `// @filter` sees on this board (`tiny`, `low`, `large`, `huge`).
    pub memory: &'static str,
}

/// A fully resolved board: the platform it lives in and its merged properties.
#[derive(Debug, Clone)]
pub struct Board {
    pub platform: Platform,
    pub id: String,
    /// Canonical FQBN including every menu choice (`arduino:avr:nano:cpu=atmega328`).
    pub fqbn: String,
    pub name: String,
    /// Menu choices that were defaulted because the user gave none (for --verbose).
    pub defaulted_menus: Vec<(String, String)>,
    /// Platform + board + menu properties and runtime.* values, before per-build keys.
    pub properties: Properties,
}

/// A place platforms are found: a hardware folder holding `<vendor>/<arch>/`,
/// or one platform installed by arduino-cli (`packages/<vendor>/hardware/<arch>/<version>`).
#[derive(Debug, Clone)]
enum Root {
    Hardware(PathBuf),
    Installed { vendor: String, arch: String, path: PathBuf },
}

/// Where platforms are searched, by priority (first match of a vendor/arch wins).
fn roots(explicit: &[PathBuf]) -> Vec<Root> {
    let mut roots: Vec<Root> = explicit.iter().cloned().map(Root::Hardware).collect();
    if let Some(env) = std::env::var_os("FBUILD_HARDWARE") {
        roots.extend(std::env::split_paths(&env).map(Root::Hardware));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let packages = Path::new(&home).join(".arduino15/packages");
        for vendor in sorted_dirs(&packages) {
            for arch in sorted_dirs(&vendor.join("hardware")) {
                // Prefer the newest installed version (1.8.14 over 1.8.9).
                let newest = sorted_dirs(&arch).into_iter().max_by(|a, b| runtime_tools::compare_versions(&file_name(a), &file_name(b)));
                if let Some(path) = newest {
                    roots.push(Root::Installed { vendor: file_name(&vendor), arch: file_name(&arch), path });
                }
            }
        }
    }
    roots.push(Root::Hardware(PathBuf::from("/usr/share/arduino/hardware")));
    roots
}

/// The folders in `dir`, by name (none when it cannot be read).
pub(crate) fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Load every platform found under the roots. A default root that does not exist
/// is skipped; an explicit `--hardware` folder that does not exist is an error.
pub fn discover(explicit: &[PathBuf]) -> Result<Vec<Platform>> {
    for root in explicit {
        if !root.is_dir() {
            return Err(Error::usage(format!(
                "hardware folder {} does not exist; pass a folder holding <vendor>/<arch>/boards.txt",
                root.display()
            )));
        }
    }
    let mut platforms: Vec<Platform> = Vec::new();
    for root in roots(explicit) {
        let candidates: Vec<(String, String, PathBuf)> = match root {
            Root::Installed { vendor, arch, path } => vec![(vendor, arch, path)],
            Root::Hardware(dir) => sorted_dirs(&dir)
                .iter()
                .flat_map(|vendor| {
                    sorted_dirs(vendor).into_iter().map(move |arch| (file_name(vendor), file_name(&arch), arch))
                })
                .collect(),
        };
        for (vendor, arch, path) in candidates {
            if !path.join("boards.txt").is_file() {
                continue;
            }
            if platforms.iter().any(|p| p.vendor == vendor && p.arch == arch) {
                continue; // an earlier root has priority
            }
            platforms.push(Platform::load(&vendor, &arch, &path)?);
        }
    }
    Ok(platforms)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Platform {
    pub fn load(vendor: &str, arch: &str, path: &Path) -> Result<Platform> {
        let mut boards = Properties::load(&path.join("boards.txt"))?;
        let local = path.join("boards.local.txt");
        if local.is_file() {
            boards.merge(&Properties::load(&local)?);
        }
        let mut properties = Properties::new();
        let platform_txt = path.join("platform.txt");
        if platform_txt.is_file() {
            properties = Properties::load(&platform_txt)?;
        }
        let local = path.join("platform.local.txt");
        if local.is_file() {
            properties.merge(&Properties::load(&local)?);
        }
        let menu_order = read_menu_order(&path.join("boards.txt"));
        Ok(Platform {
            vendor: vendor.to_string(),
            arch: arch.to_string(),
            path: path.to_path_buf(),
            properties,
            boards,
            menu_order,
        })
    }

    /// Board ids in this platform (first-level keys that have a `.name`).
    pub fn board_ids(&self) -> Vec<String> {
        self.boards
            .first_level_keys()
            .into_iter()
            .filter(|id| id != "menu" && self.boards.contains(&format!("{id}.name")))
            .collect()
    }

    pub fn board_info(&self, id: &str) -> BoardInfo {
        let props = self.boards.subtree(id);
        // Limits and MCU may only be set by the default menu choice (mega, nano).
        let mut effective = props.clone();
        for (menu, option) in self.default_menu_choices(id) {
            effective.merge(&props.subtree(&format!("menu.{menu}.{option}")));
        }
        let max_ram = ram_of(&effective);
        BoardInfo {
            id: id.to_string(),
            fqbn: format!("{}:{}:{}", self.vendor, self.arch, id),
            name: props.get_or_empty("name").to_string(),
            mcu: mcu_of(&effective).to_string(),
            max_flash: effective.get("upload.maximum_size").and_then(|v| v.trim().parse().ok()),
            max_ram,
            memory: crate::filter::MemoryClass::of(&self.arch, max_ram).name(),
        }
    }

    fn menus_of(&self, board: &str) -> Vec<String> {
        let mut menus: Vec<String> = Vec::new();
        for (b, m, _) in &self.menu_order {
            if b == board && !menus.contains(m) {
                menus.push(m.clone());
            }
        }
        menus
    }

    fn options_of(&self, board: &str, menu: &str) -> Vec<String> {
        self.menu_order
            .iter()
            .filter(|(b, m, _)| b == board && m == menu)
            .map(|(_, _, o)| o.clone())
            .collect()
    }

    fn default_menu_choices(&self, board: &str) -> Vec<(String, String)> {
        self.menus_of(board)
            .into_iter()
            .filter_map(|m| self.options_of(board, &m).into_iter().next().map(|o| (m, o)))
            .collect()
    }
}

/// A board's MCU: `build.mcu`, or `build.chip` where the platform names its chip only
/// there (arduino-pico: `rp2040`, `rp2350`).
pub fn mcu_of(board: &Properties) -> &str {
    match board.get_or_empty("build.mcu").trim() {
        "" => board.get_or_empty("build.chip").trim(),
        mcu => mcu,
    }
}

/// A board's RAM in bytes, from `upload.maximum_data_size` (what arduino-builder checks
/// global variables against); None when unset or 0 (STM32's generic boards set 0 until
/// a part is chosen).
pub fn ram_of(board: &Properties) -> Option<u64> {
    board.get("upload.maximum_data_size").and_then(|v| v.trim().parse().ok()).filter(|&n| n > 0)
}

/// `<board>.menu.<menu>.<option>=Label` lines in file order (BTreeMap loses it).
fn read_menu_order(boards_txt: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read(boards_txt).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let parts: Vec<&str> = key.trim().split('.').collect();
        if parts.len() == 4 && parts[1] == "menu" {
            let entry = (parts[0].to_string(), parts[2].to_string(), parts[3].to_string());
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

/// A parsed board name: optional (vendor, arch), board id, menu choices.
type BoardSpec = (Option<(String, String)>, String, Vec<(String, String)>);

/// Parse `id`, `vendor:arch:id` or `vendor:arch:id:menu=opt,menu2=opt2`.
fn parse_board_spec(spec: &str) -> Result<BoardSpec> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = || {
        Error::usage(format!(
            "board '{spec}' is not a board id or FQBN; use an id like 'uno' or 'vendor:arch:board[:menu=option,...]' (see `fbuild boards`)"
        ))
    };
    match parts.as_slice() {
        [id] if !id.is_empty() => Ok((None, id.to_string(), vec![])),
        [v, a, id] if !v.is_empty() && !a.is_empty() && !id.is_empty() => {
            Ok((Some((v.to_string(), a.to_string())), id.to_string(), vec![]))
        }
        [v, a, id, opts] if !v.is_empty() && !a.is_empty() && !id.is_empty() => {
            let mut options = Vec::new();
            for pair in opts.split(',').filter(|s| !s.is_empty()) {
                let (k, val) = pair.split_once('=').ok_or_else(bad)?;
                options.push((k.to_string(), val.to_string()));
            }
            Ok((Some((v.to_string(), a.to_string())), id.to_string(), options))
        }
        _ => Err(bad()),
    }
}

/// Resolve a board name against the installed platforms.
pub fn resolve_board(platforms: &[Platform], spec: &str) -> Result<Board> {
    let (vendor_arch, id, options) = parse_board_spec(spec)?;
    if platforms.is_empty() {
        return Err(Error::usage(
            "no Arduino platform is installed; install Debian's arduino-core-avr (run scripts/setup.sh) or pass --hardware DIR",
        ));
    }
    let matches: Vec<&Platform> = platforms
        .iter()
        .filter(|p| vendor_arch.as_ref().is_none_or(|(v, a)| &p.vendor == v && &p.arch == a))
        .filter(|p| p.board_ids().contains(&id))
        .collect();
    let platform = match matches.as_slice() {
        [one] => *one,
        [] => {
            let all: Vec<String> = platforms
                .iter()
                .flat_map(|p| p.board_ids().into_iter().map(move |b| format!("{}:{}:{}", p.vendor, p.arch, b)))
                .collect();
            let mut scored: Vec<(usize, &String)> = all
                .iter()
                .map(|fqbn| {
                    let short = fqbn.rsplit(':').next().unwrap_or(fqbn);
                    (strsim::levenshtein(&id, short).min(strsim::levenshtein(spec, fqbn)), fqbn)
                })
                .collect();
            scored.sort();
            let close: Vec<String> = scored.iter().take(3).map(|(_, f)| f.to_string()).collect();
            return Err(Error::usage(format!(
                "unknown board '{spec}'; closest: {} (list all with `fbuild boards`)",
                close.join(", ")
            )));
        }
        many => {
            let fqbns: Vec<String> = many.iter().map(|p| format!("{}:{}:{}", p.vendor, p.arch, id)).collect();
            return Err(Error::usage(format!(
                "board id '{id}' is ambiguous; it matches {}; pass one of these FQBNs",
                fqbns.join(", ")
            )));
        }
    };
    let board_props = platform.boards.subtree(&id);
    let menus = platform.menus_of(&id);
    for (menu, value) in &options {
        if !menus.contains(menu) {
            return Err(Error::usage(format!(
                "board {id} has no menu '{menu}'; its menus are: {}",
                if menus.is_empty() { "(none)".to_string() } else { menus.join(", ") }
            )));
        }
        let valid = platform.options_of(&id, menu);
        if !valid.contains(value) {
            return Err(Error::usage(format!(
                "board {id} menu '{menu}' has no option '{value}'; valid options: {}",
                valid.join(", ")
            )));
        }
    }
    let mut properties = platform.properties.clone();
    let mut effective_board = board_props.clone();
    let mut chosen: Vec<(String, String)> = Vec::new();
    let mut defaulted = Vec::new();
    for menu in &menus {
        let option = match options.iter().find(|(m, _)| m == menu) {
            Some((_, v)) => v.clone(),
            None => {
                let first = platform.options_of(&id, menu).into_iter().next().unwrap_or_default();
                defaulted.push((menu.clone(), first.clone()));
                first
            }
        };
        effective_board.merge(&board_props.subtree(&format!("menu.{menu}.{option}")));
        chosen.push((menu.clone(), option));
    }
    properties.merge(&effective_board);

    let fqbn_base = format!("{}:{}:{}", platform.vendor, platform.arch, id);
    let fqbn = if chosen.is_empty() {
        fqbn_base
    } else {
        let opts: Vec<String> = chosen.iter().map(|(m, o)| format!("{m}={o}")).collect();
        format!("{fqbn_base}:{}", opts.join(","))
    };
    let hardware_path = platform.path.parent().unwrap_or(&platform.path).to_path_buf();
    properties.set("runtime.platform.path", platform.path.display().to_string());
    properties.set("runtime.hardware.path", hardware_path.display().to_string());
    properties.set("runtime.ide.path", "/usr/share/arduino");
    properties.set("runtime.ide.version", DEFAULT_IDE_VERSION);
    properties.set("runtime.os", "linux");
    properties.set("ide_version", DEFAULT_IDE_VERSION);
    properties.set("software", "ARDUINO");
    properties.set("build.arch", platform.arch.to_uppercase());
    properties.set("build.fqbn", fqbn.clone());
    properties.set("build.system.path", platform.path.join("system").display().to_string());

    // As arduino-cli: tools installed under ~/.arduino15/packages, the core's packager
    // second to the board's when two offer the same tool.
    let core_packager = properties.get_or_empty("build.core").split_once(':').map(|(v, _)| v.to_string());
    let tools = runtime_tools::packages_dir().map(|p| runtime_tools::installed(&p)).unwrap_or_default();
    for (key, path) in runtime_tools::properties(&tools, &platform.vendor, core_packager.as_deref().unwrap_or(&platform.vendor)) {
        properties.set(key, path);
    }

    let core_path = resolve_referenced(platforms, platform, properties.get_or_empty("build.core"), "cores")
        .ok_or_else(|| {
            Error::usage(format!(
                "board {fqbn}: core '{}' not found under {}/cores; the platform is incomplete",
                properties.get_or_empty("build.core"),
                platform.path.display()
            ))
        })?;
    properties.set("build.core.path", core_path.display().to_string());
    let variant = properties.get_or_empty("build.variant").to_string();
    if !variant.is_empty() {
        let variant_path = resolve_referenced(platforms, platform, &variant, "variants").ok_or_else(|| {
            Error::usage(format!(
                "board {fqbn}: variant '{variant}' not found under {}/variants; the platform is incomplete",
                platform.path.display()
            ))
        })?;
        properties.set("build.variant.path", variant_path.display().to_string());
    }
    Ok(Board {
        name: board_props.get_or_empty("name").to_string(),
        platform: platform.clone(),
        id,
        fqbn,
        defaulted_menus: defaulted,
        properties,
    })
}

/// The build profile arduino-cli picks: `compiler.optimization_flags` set from
/// `compiler.optimization_flags.release` (or `.debug` with `--optimize-for-debug`) when
/// the platform has that variant; a platform without it keeps its own value. Applied
/// before `--build-property`, so a property given by the user wins.
pub fn apply_build_profile(props: &mut Properties, debug: bool) {
    let variant = if debug { "compiler.optimization_flags.debug" } else { "compiler.optimization_flags.release" };
    if let Some(flags) = props.get(variant).map(str::to_string) {
        props.set("compiler.optimization_flags", flags);
    }
}

/// `build.core=arduino` or `build.core=vendor:arduino` (a core of another platform
/// of the same architecture), likewise for variants.
fn resolve_referenced(platforms: &[Platform], own: &Platform, name: &str, kind: &str) -> Option<PathBuf> {
    let (platform_path, short) = match name.split_once(':') {
        Some((vendor, short)) => {
            let p = platforms.iter().find(|p| p.vendor == vendor && p.arch == own.arch)?;
            (p.path.clone(), short)
        }
        None => (own.path.clone(), name),
    };
    let path = platform_path.join(kind).join(short);
    path.is_dir().then_some(path)
}

/// Every board of every installed platform, for `fbuild boards`.
pub fn list_boards(platforms: &[Platform]) -> Vec<BoardInfo> {
    platforms
        .iter()
        .flat_map(|p| p.board_ids().into_iter().map(move |id| p.board_info(&id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_platform(dir: &Path, vendor: &str, boards: &str) -> PathBuf {
        let p = dir.join(vendor).join("avr");
        std::fs::create_dir_all(p.join("cores/arduino")).unwrap();
        std::fs::create_dir_all(p.join("variants/standard")).unwrap();
        std::fs::write(p.join("boards.txt"), boards).unwrap();
        std::fs::write(p.join("platform.txt"), "name=Test\ncompiler.path=/usr/bin/\n").unwrap();
        p
    }

    const BOARDS: &str = "menu.cpu=Processor\n\
        uno.name=Uno\nuno.build.mcu=atmega328p\nuno.build.core=arduino\nuno.build.variant=standard\nuno.upload.maximum_size=32256\n\
        nano.name=Nano\nnano.build.core=arduino\nnano.build.variant=standard\n\
        nano.menu.cpu.zeta=Z\nnano.menu.cpu.zeta.build.mcu=zmcu\nnano.menu.cpu.alpha=A\nnano.menu.cpu.alpha.build.mcu=amcu\n";

    fn load(dir: &Path) -> Vec<Platform> {
        vec![Platform::load("test", "avr", &fake_platform(dir, "test", BOARDS)).unwrap()]
    }

    #[test]
    fn menu_default_is_first_listed_not_alphabetical() {
        let tmp = tempfile::tempdir().unwrap();
        let b = resolve_board(&load(tmp.path()), "nano").unwrap();
        assert_eq!(b.properties.get("build.mcu"), Some("zmcu"));
        assert_eq!(b.fqbn, "test:avr:nano:cpu=zeta");
        assert_eq!(b.defaulted_menus, vec![("cpu".to_string(), "zeta".to_string())]);
    }

    #[test]
    fn explicit_menu_option() {
        let tmp = tempfile::tempdir().unwrap();
        let b = resolve_board(&load(tmp.path()), "test:avr:nano:cpu=alpha").unwrap();
        assert_eq!(b.properties.get("build.mcu"), Some("amcu"));
        assert!(b.defaulted_menus.is_empty());
    }

    #[test]
    fn unknown_menu_value_lists_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let e = resolve_board(&load(tmp.path()), "test:avr:nano:cpu=beta").unwrap_err();
        assert_eq!(e.to_string(), "board nano menu 'cpu' has no option 'beta'; valid options: zeta, alpha");
        let e = resolve_board(&load(tmp.path()), "test:avr:nano:speed=1").unwrap_err();
        assert!(e.to_string().contains("has no menu 'speed'"), "{e}");
    }

    #[test]
    fn unknown_board_suggests_closest() {
        let tmp = tempfile::tempdir().unwrap();
        let e = resolve_board(&load(tmp.path()), "unoo").unwrap_err();
        assert!(e.to_string().starts_with("unknown board 'unoo'; closest: test:avr:uno"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn ambiguous_short_id_names_fqbns() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Platform::load("a", "avr", &fake_platform(tmp.path(), "a", BOARDS)).unwrap();
        let b = Platform::load("b", "avr", &fake_platform(tmp.path(), "b", BOARDS)).unwrap();
        let e = resolve_board(&[a, b], "uno").unwrap_err();
        assert_eq!(e.to_string(), "board id 'uno' is ambiguous; it matches a:avr:uno, b:avr:uno; pass one of these FQBNs");
    }

    #[test]
    fn runtime_and_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let b = resolve_board(&load(tmp.path()), "uno").unwrap();
        assert_eq!(b.properties.get("build.arch"), Some("AVR"));
        assert_eq!(b.properties.get("runtime.ide.version"), Some(DEFAULT_IDE_VERSION));
        assert!(b.properties.get_or_empty("build.core.path").ends_with("cores/arduino"));
        let info = b.platform.board_info("uno");
        assert_eq!(info.max_flash, Some(32256));
    }

    #[test]
    fn build_profile_resolves_optimization_flags_as_arduino_cli() {
        // STM32duino's platform.txt: the key refers to itself until a profile sets it.
        let text = "compiler.optimization_flags={compiler.optimization_flags}\n\
            compiler.optimization_flags.release={build.flags.optimize} {build.flags.debug}\n\
            compiler.optimization_flags.debug=-Og -g\n\
            build.flags.optimize=-Os\nbuild.flags.debug=\n\
            compiler.c.flags=-c {compiler.optimization_flags} -MMD\n";
        let base = Properties::parse(text, "t").unwrap();
        assert_eq!(base.expanded("compiler.c.flags"), "-c {compiler.optimization_flags} -MMD");
        let mut release = base.clone();
        apply_build_profile(&mut release, false);
        assert_eq!(release.expanded("compiler.c.flags"), "-c -Os  -MMD");
        let mut debug = base.clone();
        apply_build_profile(&mut debug, true);
        assert_eq!(debug.expanded("compiler.c.flags"), "-c -Og -g -MMD");
        // A platform without the variants keeps its value.
        let mut plain = Properties::parse("compiler.optimization_flags=-O2\n", "t").unwrap();
        apply_build_profile(&mut plain, true);
        assert_eq!(plain.get("compiler.optimization_flags"), Some("-O2"));
    }

    #[test]
    fn malformed_boards_txt_names_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = fake_platform(tmp.path(), "x", "uno.name=Uno\nnot a property\n");
        let e = Platform::load("x", "avr", &p).unwrap_err();
        assert!(e.to_string().contains("boards.txt:2: malformed line"), "{e}");
    }
}
