//! Where libsimavr is, for build.rs (the emulator's C layer links it) and for
//! tests/emulator_build.rs. No mtimes: the library is looked for on every run of
//! the build script, and a build with the `emulator` feature (the default) and no
//! library fails, so cargo runs the script again next time however the library
//! was installed (dpkg keeps the 2019 mtime of sim_avr.h).

use std::path::{Path, PathBuf};

/// The headers and static archive the emulator is built from.
pub struct Simavr {
    /// Holds `sim_avr.h`.
    pub include: PathBuf,
    /// Holds `libsimavr.a`.
    pub lib_dir: PathBuf,
}

/// For the running build script: `None` when the `emulator` feature is off, and
/// when the library is missing, after the one line cargo then reports as the
/// build's error (`cargo::error` fails the build once the script ends, and a
/// failed script runs again on the next build).
pub fn for_this_build() -> Option<Simavr> {
    std::env::var_os("CARGO_FEATURE_EMULATOR")?;
    println!("cargo:rerun-if-env-changed=FBUILD_SIMAVR_INCLUDE");
    println!("cargo:rerun-if-env-changed=FBUILD_SIMAVR_LIB");
    let (includes, libs) = search_dirs(std::env::var_os("FBUILD_SIMAVR_INCLUDE").map(PathBuf::from), std::env::var_os("FBUILD_SIMAVR_LIB").map(PathBuf::from));
    match find(&includes, &libs) {
        Ok(simavr) => {
            // A newer library (an upgrade that touches the files) rebuilds too.
            println!("cargo:rerun-if-changed={}", simavr.include.join("sim_avr.h").display());
            println!("cargo:rerun-if-changed={}", simavr.lib_dir.join("libsimavr.a").display());
            Some(simavr)
        }
        Err(line) => {
            println!("cargo::error={line}");
            None
        }
    }
}

/// The folders to look in, in order: the one given by FBUILD_SIMAVR_INCLUDE /
/// FBUILD_SIMAVR_LIB alone when set, else Debian's (any multiarch folder) and a
/// local install's.
pub fn search_dirs(include: Option<PathBuf>, lib: Option<PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let includes = match include {
        Some(dir) => vec![dir],
        None => vec!["/usr/include/simavr".into(), "/usr/local/include/simavr".into()],
    };
    let libs = match lib {
        Some(dir) => vec![dir],
        None => ["/usr/lib", "/usr/local/lib"].iter().flat_map(|d| with_subfolders(Path::new(d))).collect(),
    };
    (includes, libs)
}

/// `dir`'s sub-folders (sorted: the multiarch ones), then `dir` itself.
fn with_subfolders(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs.push(dir.to_path_buf());
    dirs
}

/// The first folder with the header and the first with the archive, or the one
/// line that says what is missing and what to do.
pub fn find(includes: &[PathBuf], libs: &[PathBuf]) -> Result<Simavr, String> {
    let shown = |dirs: &[PathBuf]| dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    let advice = "run scripts/setup.sh (it installs libsimavr-dev), or build without the emulator: cargo build --no-default-features";
    let Some(include) = includes.iter().find(|d| d.join("sim_avr.h").is_file()) else {
        return Err(format!("the emulator needs libsimavr-dev: no sim_avr.h in {}; {advice}", shown(includes)));
    };
    let Some(lib_dir) = libs.iter().find(|d| d.join("libsimavr.a").is_file()) else {
        return Err(format!("the emulator needs libsimavr-dev: no libsimavr.a in {}; {advice}", shown(libs)));
    };
    Ok(Simavr { include: include.clone(), lib_dir: lib_dir.clone() })
}
