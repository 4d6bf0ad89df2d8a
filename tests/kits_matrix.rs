//! A board matrix over one board of each platform kit in one compile-many call (issue 30):
//! ATtiny85 (ATTinyCore, Debian's avr-gcc 5.4), Nano Every (megaAVR, avr-gcc 7.3) and the
//! Zero (SAMD, arm-none-eabi-gcc 12). Both AVR kits read `runtime.tools.avr-gcc.path`,
//! each for a different compiler, so they are installed as arduino-cli lays them out and
//! each board gets its own packager's avr-gcc; every board's firmware must equal
//! arduino-builder's. (Pico and Blue Pill join by adding a `KitBoard`.)

mod common;

use common::avr_kits::*;
use common::*;
use std::os::unix::fs::symlink;
use std::path::Path;

/// One board of the matrix and how the reference builds it.
struct KitBoard {
    /// As given to fbuild's `--board`.
    board: String,
    spec: ReferenceSpec,
    firmware: &'static [&'static str],
}

/// `packages/<packager>/hardware/<arch>/<version>` holding links to the kit platform's
/// entries, and `packages/<packager>/tools/avr-gcc/<version>` linked to `compiler_root`.
fn install_like_arduino_cli(packages: &Path, packager: &str, arch: &str, version: &str, platform: &Path, gcc_version: &str, compiler_root: &Path) {
    let dir = packages.join(packager).join("hardware").join(arch).join(version);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(platform).unwrap() {
        let e = e.unwrap();
        symlink(e.path(), dir.join(e.file_name())).unwrap();
    }
    let tool = packages.join(packager).join("tools/avr-gcc");
    std::fs::create_dir_all(&tool).unwrap();
    symlink(compiler_root, tool.join(gcc_version)).unwrap();
}

#[test]
fn one_matrix_over_the_kits_matches_arduino_builder_per_board() {
    let Some(every) = nano_every() else {
        report_skipped("one_matrix_over_the_kits_matches_arduino_builder_per_board", "avr-gcc 7.3 is not installed: run scripts/setup.sh");
        return;
    };
    let tiny = attiny85();
    let home = tempfile::tempdir().unwrap();
    let packages = home.path().join(".arduino15/packages");
    install_like_arduino_cli(&packages, "ATTinyCore", "avr", "1.5.2", &tiny.kit.join("hardware/ATTinyCore/avr"), "5.4.0", &tiny.compiler_root);
    install_like_arduino_cli(&packages, "arduino", "megaavr", "1.8.8", &every.kit.join("hardware/arduino/megaavr"), "7.3.0-atmel3.6.1-arduino7", &every.compiler_root);
    let libraries = shared_libraries();
    let zero = "arduino:samd:arduino_zero_native";
    let boards = [
        KitBoard { board: tiny.fqbn.into(), spec: tiny.reference_spec().with_libraries(&libraries), firmware: tiny.firmware },
        KitBoard { board: every.fqbn.into(), spec: every.reference_spec().with_libraries(&libraries), firmware: every.firmware },
        KitBoard { board: zero.into(), spec: ReferenceSpec::samd(zero).with_libraries(&libraries), firmware: &["bin", "hex", "with_bootloader.hex"] },
    ];
    // Blink and friends, and a library example that builds on every board.
    let mut sketches = sketch_dirs(&corpus().join("01.Basics"));
    sketches.push(libraries.join("Adafruit_NeoPixel/examples/simple"));

    let out = home.path().join("out");
    let mut args: Vec<String> = vec!["compile-many".into(), "-q".into(), "--out".into(), out.display().to_string()];
    for b in &boards {
        args.extend(["--board".into(), b.board.clone()]);
    }
    // SAMD given by hand, as its README says; its properties mean nothing to the AVR kits.
    args.extend(["--hardware".into(), samd_kit().join("hardware").display().to_string()]);
    for p in samd_tool_properties() {
        args.extend(["--build-property".into(), p]);
    }
    args.extend(["--libraries".into(), libraries.display().to_string()]);
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let o = std::process::Command::new(fbuild_bin())
        .args(&args)
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("FBUILD_CACHE_DIR", home.path().join("cache"))
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["boards"].as_array().unwrap().len(), boards.len());
    let all = results["sketches"].as_array().unwrap();
    assert_eq!(all.len(), sketches.len() * boards.len());
    for (b, listed) in boards.iter().zip(results["boards"].as_array().unwrap()) {
        // results.json names each board as it lists it in `boards[]`, in the order given.
        assert!(listed["fqbn"].as_str().unwrap().starts_with(&b.board), "{listed}");
        let of_board: Vec<serde_json::Value> = all.iter().filter(|s| s["board"] == listed["board"]).cloned().collect();
        assert_eq!(of_board.len(), sketches.len(), "{}: every sketch once", b.board);
        let c = compare_with_reference(&b.spec, b.firmware, &of_board, &sketches);
        assert!(c.mismatches.is_empty(), "{}: {} mismatches:\n{}", b.board, c.mismatches.len(), c.mismatches.join("\n"));
        assert_eq!((c.built, c.failed), (sketches.len(), 0), "{}", b.board);
        assert_eq!(c.files_compared, sketches.len() * b.firmware.len(), "{}", b.board);
    }
    // Each AVR board was compiled by its own packager's avr-gcc.
    let commands = std::fs::read_to_string(out.join("compile_commands.json")).unwrap();
    let tiny_gcc = packages.join("ATTinyCore/tools/avr-gcc/5.4.0/bin/avr-g++");
    let every_gcc = packages.join("arduino/tools/avr-gcc/7.3.0-atmel3.6.1-arduino7/bin/avr-g++");
    assert!(commands.contains(tiny_gcc.to_str().unwrap()) && commands.contains(every_gcc.to_str().unwrap()), "{}", &commands[..commands.len().min(2000)]);
}
