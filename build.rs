//! Builds the thin C layer over libsimavr (src/emulator/simavr_shim.c) for the
//! `emulator` feature (the default). Without libsimavr-dev that build fails with
//! one line saying what to do (build/find_simavr.rs); fbuild without the emulator
//! is only ever built on purpose, with --no-default-features.

#[path = "build/find_simavr.rs"]
mod find_simavr;

fn main() {
    println!("cargo:rerun-if-changed=src/emulator/simavr_shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/find_simavr.rs");
    let Some(simavr) = find_simavr::for_this_build() else { return };
    cc::Build::new()
        .file("src/emulator/simavr_shim.c")
        .include(&simavr.include)
        .flag_if_supported("-std=gnu99")
        .warnings(true)
        .compile("fbuild_simavr_shim");
    // The static archive: fbuild then needs no libsimavr at run time, and only
    // the simulator objects are linked in (not its ELF loader, so no libelf).
    println!("cargo:rustc-link-search=native={}", simavr.lib_dir.display());
    println!("cargo:rustc-link-lib=static=simavr");
}
