//! Builds the thin C layer over libsimavr (src/emulator/simavr_shim.c) when
//! Debian's libsimavr-dev is installed; without it fbuild still builds, and
//! `fbuild run` / `--smoke-run` say how to get the emulator.

use std::path::Path;

const SIMAVR_INCLUDE: &str = "/usr/include/simavr";

fn main() {
    println!("cargo:rerun-if-changed=src/emulator/simavr_shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(fbuild_simavr)");
    let include = std::env::var("FBUILD_SIMAVR_INCLUDE").unwrap_or_else(|_| SIMAVR_INCLUDE.to_string());
    println!("cargo:rerun-if-env-changed=FBUILD_SIMAVR_INCLUDE");
    // Installing libsimavr-dev later adds this header: rebuild then.
    let header = Path::new(&include).join("sim_avr.h");
    println!("cargo:rerun-if-changed={}", header.display());
    if !header.is_file() {
        println!(
            "cargo:warning=libsimavr-dev is not installed ({} missing): fbuild builds without the emulator; run scripts/setup.sh and rebuild for `fbuild run`",
            header.display()
        );
        return;
    }
    let Some(lib_dir) = simavr_archive_dir() else {
        println!("cargo:warning=libsimavr.a not found: fbuild builds without the emulator; run scripts/setup.sh and rebuild for `fbuild run`");
        return;
    };
    cc::Build::new()
        .file("src/emulator/simavr_shim.c")
        .include(&include)
        .flag_if_supported("-std=gnu99")
        .warnings(true)
        .compile("fbuild_simavr_shim");
    // The static archive: fbuild then needs no libsimavr at run time, and only
    // the simulator objects are linked in (not its ELF loader, so no libelf).
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=simavr");
    println!("cargo:rustc-cfg=fbuild_simavr");
}

/// Where Debian put libsimavr.a (its multiarch folder), or a local install.
fn simavr_archive_dir() -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        dirs.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()));
    }
    dirs.sort();
    dirs.push("/usr/lib".into());
    dirs.push("/usr/local/lib".into());
    dirs.into_iter().find(|d| d.join("libsimavr.a").is_file())
}
