//! The AVR platform kits of ../shared/platforms (ATTinyCore 1.5.2 with Debian's avr-gcc,
//! Arduino megaAVR 1.8.8 with avr-gcc 7.3 from PyPI): fbuild's arguments and the
//! reference builder's spec for each board, as each kit's README gives them, and a
//! differential comparison of every firmware file against arduino-builder.

use std::path::{Path, PathBuf};

use super::{reference_builds_with, shared, Reference, ReferenceSpec};

/// ATTinyCore's folder (`FBUILD_ATTINY_KIT` points elsewhere).
pub fn attiny_kit() -> PathBuf {
    kit("FBUILD_ATTINY_KIT", "platforms/attiny", "hardware/ATTinyCore/avr/boards.txt")
}

/// The megaAVR kit's folder (`FBUILD_MEGAAVR_KIT` points elsewhere).
pub fn megaavr_kit() -> PathBuf {
    kit("FBUILD_MEGAAVR_KIT", "platforms/megaavr", "hardware/arduino/megaavr/boards.txt")
}

fn kit(var: &str, rel: &str, boards_txt: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| shared(rel));
    assert!(p.join(boards_txt).is_file(), "kit missing at {} ({var})", p.display());
    p
}

/// The folder setup.sh installs avr-gcc 7.3 into (scripts/setup.sh: one venv per version
/// under ~/.cache/fbuild-tools), holding `bin/avr-gcc`; None before setup.sh ran.
pub fn avr_gcc_73() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let marker = base.join("fbuild-tools/pymcu-avr-7.3.0.post3/.complete");
    let root = PathBuf::from(std::fs::read_to_string(marker).ok()?.trim());
    root.join("bin/avr-gcc").is_file().then_some(root)
}

/// One board of an AVR kit: what fbuild is given, and what arduino-builder is given.
pub struct AvrBoard {
    /// For fbuild: every menu left to its first option.
    pub fqbn: &'static str,
    /// For arduino-builder 1.3.25, which needs every menu spelled out.
    pub reference_fqbn: &'static str,
    pub kit: PathBuf,
    /// `runtime.tools.avr-gcc.path`: the folder holding `bin/avr-gcc`.
    pub compiler_root: PathBuf,
    /// Firmware files the platform makes besides the ELF, as results.json names them.
    pub firmware: &'static [&'static str],
}

pub fn attiny85() -> AvrBoard {
    AvrBoard {
        fqbn: "ATTinyCore:avr:attinyx5",
        reference_fqbn: "ATTinyCore:avr:attinyx5:LTO=enable,TimerClockSource=default,chip=85,clock=8internal,eesave=aenable,bod=disable,millis=enabled",
        kit: attiny_kit(),
        compiler_root: "/usr".into(),
        firmware: &["hex", "eep", "with_bootloader.hex"],
    }
}

pub fn attiny88() -> AvrBoard {
    AvrBoard {
        fqbn: "ATTinyCore:avr:attinyx8",
        reference_fqbn: "ATTinyCore:avr:attinyx8:LTO=enable,chip=88,clock=8internal,pinmapping=normal,eesave=aenable,bod=disable,millis=enabled,neopixelport=porta",
        kit: attiny_kit(),
        compiler_root: "/usr".into(),
        firmware: &["hex", "eep", "with_bootloader.hex"],
    }
}

/// None when avr-gcc 7.3 is not installed (run scripts/setup.sh).
pub fn nano_every() -> Option<AvrBoard> {
    Some(AvrBoard {
        fqbn: "arduino:megaavr:nona4809",
        reference_fqbn: "arduino:megaavr:nona4809:mode=on",
        kit: megaavr_kit(),
        compiler_root: avr_gcc_73()?,
        firmware: &["hex", "bin", "eep", "with_bootloader.hex"],
    })
}

impl AvrBoard {
    /// fbuild's arguments for the kit given by hand (the README's flags).
    pub fn fbuild_args(&self) -> Vec<String> {
        vec![
            "--hardware".into(),
            self.kit.join("hardware").display().to_string(),
            "--build-property".into(),
            format!("runtime.tools.avr-gcc.path={}", self.compiler_root.display()),
        ]
    }

    /// arduino-builder's: the kit beside arduino-builder's own hardware folder, and for
    /// a compiler outside /usr also `compiler.path`, which Debian's
    /// platform.keys.rewrite.txt would otherwise turn into /usr/bin/.
    pub fn reference_spec(&self) -> ReferenceSpec {
        let mut prefs = vec![format!("runtime.tools.avr-gcc.path={}", self.compiler_root.display())];
        if self.compiler_root != Path::new("/usr") {
            prefs.push(format!("compiler.path={}/bin/", self.compiler_root.display()));
        }
        let bin = self.compiler_root.join("bin");
        ReferenceSpec {
            fqbn: self.reference_fqbn.to_string(),
            hardware: vec![self.kit.join("hardware"), "/usr/share/arduino-builder".into()],
            tools: vec!["/usr/bin".into()],
            libraries: Vec::new(),
            prefs,
            compilers: vec![bin.join("avr-gcc"), bin.join("avr-g++")],
        }
    }
}

/// Every GCC error of a build log as (file name, line, message), in order: the
/// reference builds in its own folder, but the user's sources are the same files.
pub fn error_sites(log: &str) -> Vec<(String, String, String)> {
    let re = regex::Regex::new(r"^(.+?):(\d+):(?:\d+:)? (?:fatal )?error: (.*)$").unwrap();
    log.lines()
        .filter_map(|l| {
            let c = re.captures(l.trim())?;
            let name = Path::new(&c[1]).file_name()?.to_string_lossy().into_owned();
            Some((name, c[2].to_string(), c[3].to_string()))
        })
        .collect()
}

/// What one differential run found.
#[derive(Debug, Default)]
pub struct Comparison {
    pub built: usize,
    pub failed: usize,
    /// Firmware files compared byte for byte.
    pub files_compared: usize,
    pub mismatches: Vec<String>,
}

/// Compare fbuild's sketch results (one board's) with arduino-builder's builds of the
/// same sketches under `spec`: the same ones build, the same ones fail at the same first
/// compiler error (file, line, message), every firmware file either side makes
/// (`firmware`: what the platform makes) is byte-identical, flash and RAM use agree with
/// what the reference printed, and the same libraries are used in the same order.
pub fn compare_with_reference(spec: &ReferenceSpec, firmware: &[&str], results: &[serde_json::Value], sketches: &[PathBuf]) -> Comparison {
    let references = reference_builds_with(spec, sketches);
    let by_path: std::collections::BTreeMap<&str, &serde_json::Value> = results.iter().map(|r| (r["path"].as_str().unwrap(), r)).collect();
    let mut c = Comparison::default();
    for (sketch, reference) in sketches.iter().zip(&references) {
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let Some(r) = by_path.get(sketch.display().to_string().as_str()) else {
            c.mismatches.push(format!("{name}: no result from fbuild"));
            continue;
        };
        if r["status"] == "ok" {
            c.built += 1;
        } else {
            c.failed += 1;
        }
        one_sketch(firmware, &name, r, reference, &mut c);
    }
    c
}

fn one_sketch(firmware: &[&str], name: &str, r: &serde_json::Value, reference: &Reference, c: &mut Comparison) {
    let ours_ok = r["status"] == "ok";
    let first = r["first_error"].as_str().unwrap_or("");
    if ours_ok != reference.ok {
        c.mismatches.push(format!(
            "{name}: fbuild {} / arduino-builder {}\n  fbuild: {first}\n  reference: {}",
            r["status"],
            if reference.ok { "ok" } else { "failed" },
            reference.log.lines().find(|l| l.contains("error")).unwrap_or("")
        ));
        return;
    }
    if !ours_ok {
        // fbuild's first error must be one the reference hit too (same file, line and
        // message). Not necessarily its first: fbuild compiles libraries before the
        // sketch, arduino-builder the sketch first (ArduinoJson's JsonConfigFile on a
        // tiny fails in both ArduinoJson's headers and SD's pin map).
        let theirs = error_sites(&reference.log);
        let ours = error_sites(first).into_iter().next();
        match &ours {
            Some((f, l, m)) if theirs.iter().any(|(file, line, msg)| f == file && l == line && m.starts_with(msg.as_str())) => {}
            // No compiler error in the reference (a link error, a size over the limit):
            // both failed, which is all that can be compared.
            _ if theirs.is_empty() => {}
            _ => c.mismatches.push(format!("{name}: fbuild fails with {ours:?}, arduino-builder with {:?}", theirs.first())),
        }
        return;
    }
    // Every firmware file either side made, by kind: the same set, the same bytes.
    let theirs: Vec<String> = std::fs::read_dir(&reference.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix(&format!("{name}.ino.")).map(str::to_string))
        .filter(|kind| kind != "elf" && kind != "map")
        .collect();
    let ours: Vec<String> = r["firmware"].as_object().unwrap().keys().filter(|k| *k != "elf" && *k != "map").cloned().collect();
    let mut kinds = theirs.clone();
    kinds.sort();
    let mut our_kinds = ours.clone();
    our_kinds.sort();
    if kinds != our_kinds {
        c.mismatches.push(format!("{name}: firmware files {our_kinds:?}, arduino-builder made {kinds:?}"));
    }
    let mut expected: Vec<&str> = firmware.to_vec();
    expected.sort();
    if our_kinds != expected {
        c.mismatches.push(format!("{name}: firmware files {our_kinds:?}, the platform makes {expected:?}"));
    }
    for kind in kinds.iter().filter(|k| our_kinds.contains(k)) {
        let a = std::fs::read(r["firmware"][kind.as_str()].as_str().unwrap()).unwrap();
        let b = std::fs::read(reference.dir.join(format!("{name}.ino.{kind}"))).unwrap();
        if a != b {
            c.mismatches.push(format!("{name}: .{kind} differs from arduino-builder's"));
        }
        c.files_compared += 1;
    }
    let reported = |prefix: &str| -> Option<u64> {
        reference.log.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok())
    };
    let sizes = (r["flash_used"].as_u64(), r["ram_used"].as_u64());
    let expected = (reported("Sketch uses "), reported("Global variables use "));
    if sizes != expected {
        c.mismatches.push(format!("{name}: flash and RAM used {sizes:?}, arduino-builder printed {expected:?}"));
    }
    let our_libs: Vec<PathBuf> = r["libraries"].as_array().unwrap().iter().map(|l| PathBuf::from(l["folder"].as_str().unwrap())).collect();
    let their_libs: Vec<PathBuf> = reference.libraries().into_iter().map(|(_, dir)| dir).collect();
    if our_libs != their_libs {
        c.mismatches.push(format!("{name}: libraries {our_libs:?}, arduino-builder used {their_libs:?}"));
    }
}
