//! Scaling compiles out on existing engines: a compiler launcher (`distcc`, `icecc`,
//! `ccache`, `sccache`) prefixes every compile command, never the link. Cache keys
//! are computed from the command without it, and the object cache stays in front:
//! a hit never reaches the launcher.
//!
//! With a launcher the compiles run elsewhere, so the stage widths may exceed the
//! local cores; what always runs here (discovery, links, objcopy, size) is held to
//! the cores by `LocalSlots`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};

/// Split a launcher command (`distcc`, `ccache`, `sccache --some-flag`) into words,
/// and check its program is installed.
pub fn parse(cmd: &str) -> Result<Vec<String>> {
    let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    let Some(program) = words.first() else {
        return Err(Error::usage("--compiler-launcher is empty; pass a program such as distcc, icecc, ccache or sccache"));
    };
    if !on_path(program) {
        let package = match std::path::Path::new(program).file_name().and_then(|n| n.to_str()) {
            Some("distcc") => " (Debian package distcc)",
            Some("icecc") => " (Debian package icecc)",
            Some("ccache") => " (Debian package ccache)",
            Some("sccache") => " (cargo install sccache)",
            _ => "",
        };
        return Err(Error::usage(format!("compiler launcher {program} is not installed; install it{package} or fix --compiler-launcher")));
    }
    Ok(words)
}

fn on_path(program: &str) -> bool {
    let p = std::path::Path::new(program);
    if p.components().count() > 1 {
        return p.is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The command that runs a compile: the launcher's words, then the compile's own.
/// A launcher that preprocesses apart from compiling (distcc) makes GCC name an
/// `-MMD` depfile after the source, in the working directory, instead of beside the
/// object where the cache reads it; so with a launcher the depfile path is given
/// explicitly (`-MF`). The cache key is computed from the command without this.
pub fn wrap(launcher: &[String], args: &[String], depfile: &std::path::Path) -> Vec<String> {
    if launcher.is_empty() {
        return args.to_vec();
    }
    COMPILES.fetch_add(1, Ordering::Relaxed);
    let _ = LAUNCHER.set(launcher.to_vec());
    if declined_for(launcher, args).is_some() {
        DECLINED.fetch_add(1, Ordering::Relaxed);
    }
    let mut cmd: Vec<String> = launcher.iter().chain(args).cloned().collect();
    let wants_deps = args.iter().any(|a| a == "-MMD" || a == "-MD");
    if wants_deps && !args.iter().any(|a| a.starts_with("-MF")) {
        cmd.push("-MF".into());
        cmd.push(depfile.display().to_string());
    }
    cmd
}

/// Compiles handed to the launcher this run, and those it will run here instead.
static COMPILES: AtomicUsize = AtomicUsize::new(0);
static DECLINED: AtomicUsize = AtomicUsize::new(0);
static LAUNCHER: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Why the launcher will compile this command on this machine, if it will: distcc
/// (plain or pump mode) runs an `-flto` compile locally ("LTO cc invocations are not
/// worth distributing", distcc 3.4's arg.c), and the AVR platform compiles everything
/// with `-flto`. icecc distributes them (docs/reference/cache.md).
pub fn declined_for(launcher: &[String], args: &[String]) -> Option<&'static str> {
    let program = std::path::Path::new(launcher.first()?).file_name()?.to_str()?;
    let distcc = matches!(program, "distcc" | "pump" | "distcc-pump") || launcher.iter().any(|w| w.ends_with("/distcc") || w == "distcc");
    (distcc && args.iter().any(|a| a.starts_with("-flto") && !a.starts_with("-flto-"))).then_some("-flto")
}

/// The run's one line about compiles a launcher ran locally, e.g.
/// `distcc declined 22 of 22 compiles: -flto (they ran on this machine)`.
pub fn declined_summary() -> Option<String> {
    let (declined, all) = (DECLINED.load(Ordering::Relaxed), COMPILES.load(Ordering::Relaxed));
    let launcher = LAUNCHER.get()?;
    let name = launcher.iter().find(|w| w.contains("distcc")).or(launcher.first())?;
    let name = std::path::Path::new(name).file_name()?.to_string_lossy().into_owned();
    (declined > 0).then(|| format!("{name} declined {declined} of {all} compiles: -flto (they ran on this machine)"))
}

/// A counting semaphore for work that must run on this machine.
pub struct LocalSlots {
    free: Mutex<usize>,
    returned: Condvar,
}

/// Held while local work runs; dropping it frees the slot.
pub struct Slot<'a> {
    slots: &'a LocalSlots,
}

impl LocalSlots {
    pub fn new(n: usize) -> LocalSlots {
        LocalSlots { free: Mutex::new(n.max(1)), returned: Condvar::new() }
    }

    pub fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot { slots: self }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.slots.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.slots.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_words_and_missing_program() {
        assert_eq!(parse("sh -c").unwrap(), vec!["sh", "-c"]);
        let e = parse("surely-not-installed-launcher").unwrap_err().to_string();
        assert!(e.contains("surely-not-installed-launcher is not installed"), "{e}");
        assert!(parse("  ").is_err());
        let d = std::path::Path::new("/o/x.cpp.d");
        assert_eq!(wrap(&["distcc".into()], &["avr-gcc".into(), "-c".into()], d), vec!["distcc", "avr-gcc", "-c"]);
        assert_eq!(wrap(&["distcc".into()], &["gcc".into(), "-MMD".into()], d), vec!["distcc", "gcc", "-MMD", "-MF", "/o/x.cpp.d"]);
        assert_eq!(wrap(&[], &["gcc".into(), "-MMD".into()], d), vec!["gcc", "-MMD"], "no launcher: the command as planned");
        assert_eq!(wrap(&["ccache".into()], &["gcc".into(), "-MMD".into(), "-MFx.d".into()], d).len(), 4);
    }

    #[test]
    fn distcc_declines_lto_compiles_and_icecc_does_not() {
        let lto: Vec<String> = ["avr-g++", "-c", "-Os", "-flto", "x.cpp"].map(String::from).to_vec();
        let plain: Vec<String> = ["arm-none-eabi-g++", "-c", "-Os", "x.cpp"].map(String::from).to_vec();
        assert_eq!(declined_for(&["distcc".into()], &lto), Some("-flto"));
        assert_eq!(declined_for(&["pump".into(), "distcc".into()], &lto), Some("-flto"));
        assert_eq!(declined_for(&["/usr/bin/distcc".into()], &lto), Some("-flto"));
        assert_eq!(declined_for(&["distcc".into()], &plain), None);
        assert_eq!(declined_for(&["icecc".into()], &lto), None);
        assert_eq!(declined_for(&[], &lto), None);
    }

    #[test]
    fn slots_bound_concurrency() {
        let slots = LocalSlots::new(2);
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let _slot = slots.acquire();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 2);
    }
}
