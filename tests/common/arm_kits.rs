//! The ARM kits of the shared test data, arduino-pico 4.0.3 (RP2040, RP2350) and
//! STM32duino 2.7.1 (F1, F4): each board's fbuild arguments and arduino-builder spec as
//! the kits' READMEs give them, and arduino-pico's picotool, built once from the kit's
//! source into a cache outside the clone.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{shared, ReferenceSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kit {
    Rp2040,
    Stm32,
}

/// One board of a kit: the FQBN fbuild is given (menus left to their defaults) and the
/// one arduino-builder is given (every menu spelled out, as it needs).
#[derive(Debug, Clone, Copy)]
pub struct ArmBoard {
    pub kit: Kit,
    pub fqbn: &'static str,
    pub reference_fqbn: &'static str,
}

const PICO_MENUS: &str = "freq=133,opt=Small,rtti=Disabled,stackprotect=Disabled,exceptions=Disabled,dbgport=Disabled,dbglvl=None,usbstack=picosdk,ipbtstack=ipv4only,uploadmethod=default";
const STM32_MENUS: &str = "upload_method=swdMethod,xserial=generic,usb=none,xusb=FS,opt=osstd,dbg=none,rtlib=nano";

pub fn rpipico() -> ArmBoard {
    ArmBoard { kit: Kit::Rp2040, fqbn: "rp2040:rp2040:rpipico", reference_fqbn: leak(format!("rp2040:rp2040:rpipico:flash=2097152_0,{PICO_MENUS}")) }
}

pub fn rpipico2() -> ArmBoard {
    let menus = PICO_MENUS.replace("freq=133", "freq=150");
    ArmBoard { kit: Kit::Rp2040, fqbn: "rp2040:rp2040:rpipico2", reference_fqbn: leak(format!("rp2040:rp2040:rpipico2:flash=4194304_0,{menus}")) }
}

pub fn bluepill() -> ArmBoard {
    ArmBoard {
        kit: Kit::Stm32,
        fqbn: "STMicroelectronics:stm32:GenF1:pnum=BLUEPILL_F103C8",
        reference_fqbn: leak(format!("STMicroelectronics:stm32:GenF1:pnum=BLUEPILL_F103C8,{STM32_MENUS}")),
    }
}

pub fn blackpill() -> ArmBoard {
    ArmBoard {
        kit: Kit::Stm32,
        fqbn: "STMicroelectronics:stm32:GenF4:pnum=BLACKPILL_F411CE",
        reference_fqbn: leak(format!("STMicroelectronics:stm32:GenF4:pnum=BLACKPILL_F411CE,{STM32_MENUS}")),
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

pub fn kit_dir(kit: Kit) -> PathBuf {
    let (var, rel, marker) = match kit {
        Kit::Rp2040 => ("FBUILD_RP2040_KIT", "platforms/rp2040", "hardware/rp2040/rp2040/boards.txt"),
        Kit::Stm32 => ("FBUILD_STM32_KIT", "platforms/stm32", "hardware/STMicroelectronics/stm32/boards.txt"),
    };
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| shared(rel));
    assert!(p.join(marker).is_file(), "{rel} kit missing at {}", p.display());
    p
}

/// The `runtime.tools.*` properties of the kit's README, for fbuild and the reference.
pub fn tool_properties(kit: Kit) -> Vec<String> {
    let k = kit_dir(kit);
    match kit {
        Kit::Rp2040 => vec![
            "runtime.tools.pqt-gcc.path=/usr".into(),
            "runtime.tools.pqt-python3.path=/usr/bin".into(),
            format!("runtime.tools.pqt-picotool.path={}", picotool_dir().display()),
        ],
        Kit::Stm32 => vec![
            "runtime.tools.xpack-arm-none-eabi-gcc-12.2.1-1.2.path=/usr".into(),
            format!("runtime.tools.CMSIS-5.9.0.path={}", k.join("tools/CMSIS-5.9.0").display()),
        ],
    }
}

/// fbuild's arguments for a board's kit: `--hardware` and the tool properties.
pub fn fbuild_args(kit: Kit) -> Vec<String> {
    let mut args = vec!["--hardware".to_string(), kit_dir(kit).join("hardware").display().to_string()];
    for p in tool_properties(kit) {
        args.push("--build-property".into());
        args.push(p);
    }
    args
}

/// arduino-builder's spec for a board, as its kit's README gives it. STM32duino gets the
/// build profile arduino-cli picks by default, which arduino-builder 1.3 predates.
pub fn reference_spec(board: &ArmBoard) -> ReferenceSpec {
    let mut prefs = tool_properties(board.kit);
    if board.kit == Kit::Stm32 {
        prefs.push("compiler.optimization_flags={compiler.optimization_flags.release}".into());
    }
    ReferenceSpec {
        fqbn: board.reference_fqbn.to_string(),
        hardware: vec![kit_dir(board.kit).join("hardware"), "/usr/share/arduino-builder".into()],
        tools: vec!["/usr/bin".into()],
        libraries: Vec::new(),
        prefs,
        compilers: vec!["/usr/bin/arm-none-eabi-gcc".into(), "/usr/bin/arm-none-eabi-g++".into()],
    }
}

/// The built-in examples 01.Basics to 05.Control (39 sketches).
pub fn basics_to_control() -> Vec<PathBuf> {
    let corpus = super::corpus();
    let mut out = Vec::new();
    for group in ["01.Basics", "02.Digital", "03.Analog", "04.Communication", "05.Control"] {
        out.extend(super::sketch_dirs(&corpus.join(group)));
    }
    out
}

/// The examples of ../shared/libraries whose library runs on `arch` (its
/// `architectures` lists `*` or `arch`): 83 of the 86 on `rp2040` and `stm32`. The others
/// (Keyboard's, Servo's) would build against the platform's own library of that name,
/// which wins for its architecture: a reference pass that proves nothing of the shared one.
pub fn library_examples_for(arch: &str) -> Vec<PathBuf> {
    let libraries = super::shared_libraries();
    let runs_on = |lib: &Path| {
        let props = std::fs::read_to_string(lib.join("library.properties")).unwrap_or_default();
        let archs = props.lines().find_map(|l| l.strip_prefix("architectures=")).unwrap_or("*");
        archs.split(',').map(str::trim).any(|a| a == "*" || a == arch)
    };
    let mut out = Vec::new();
    for lib in super::sketch_dirs(&libraries) {
        let library = lib.strip_prefix(&libraries).unwrap().components().next().unwrap();
        if runs_on(&libraries.join(library)) {
            out.push(lib);
        }
    }
    out
}

/// The first example (by path) of each library in `library_examples_for(arch)`.
pub fn one_example_per_library(arch: &str) -> Vec<PathBuf> {
    let libraries = super::shared_libraries();
    let mut seen = std::collections::BTreeSet::new();
    library_examples_for(arch).into_iter().filter(|e| seen.insert(e.strip_prefix(&libraries).unwrap().components().next().unwrap().as_os_str().to_owned())).collect()
}

/// The folder holding arduino-pico's `picotool`, built by the kit's own
/// `tools/build-picotool.sh` once per picotool source into
/// `~/.cache/fbuild-tools/picotool-<key>` (or `$FBUILD_TOOLS_CACHE`): about half a
/// minute of cmake and g++, then reused by every run and every clone.
pub fn picotool_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let kit = kit_dir(Kit::Rp2040);
        let script = kit.join("tools/build-picotool.sh");
        let mut h = blake3::Hasher::new();
        h.update(b"picotool-v1\0");
        h.update(&std::fs::read(&script).expect("the kit's build-picotool.sh"));
        super::hash_tree(&mut h, &kit.join("tools/picotool-src"));
        let key = &h.finalize().to_hex()[..16];
        let root = tools_cache().join(format!("picotool-{key}"));
        if root.join("picotool").is_file() {
            return root;
        }
        // Built aside and renamed into place: a concurrent or interrupted build leaves
        // no half tool behind the final name.
        let tmp = tools_cache().join(format!(".tmp-picotool-{key}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let o = Command::new("bash").arg(&script).arg(&tmp).output().expect("run build-picotool.sh");
        assert!(
            o.status.success() && tmp.join("picotool").is_file(),
            "building picotool failed (needs cmake, make, g++: scripts/setup.sh): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let _ = std::fs::remove_dir_all(tmp.join("build"));
        if std::fs::rename(&tmp, &root).is_err() {
            let _ = std::fs::remove_dir_all(&tmp); // another process put it there first
        }
        root
    })
    .clone()
}

fn tools_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("FBUILD_TOOLS_CACHE") {
        return PathBuf::from(d);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| super::repo().join("target"))
        .join("fbuild-tools")
}

/// The firmware files a platform makes for a sketch, by extension after `NAME.ino.`
/// (`bin`, `hex`, `uf2`, `eep`, `with_bootloader.hex`, ...), in `dir`.
pub fn firmware_in(dir: &Path, name: &str) -> Vec<String> {
    let prefix = format!("{name}.ino.");
    let mut exts: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.strip_prefix(&prefix).map(str::to_string))
        .filter(|ext| is_firmware(ext))
        .collect();
    exts.sort();
    exts
}

pub fn is_firmware(ext: &str) -> bool {
    ["bin", "hex", "uf2", "eep"].contains(&ext) || ext.starts_with("with_bootloader.")
}
