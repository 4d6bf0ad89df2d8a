//! The simavr backend: libsimavr linked in through a small C layer
//! (`simavr_shim.c`), driven from fbuild's own child process (see `mod.rs` for
//! why a child and what it says). Built without the `emulator` feature
//! (--no-default-features), this module only explains how to get it.

use crate::error::{Error, Result};

use super::{ChildArgs, ChildOutcome, RunStatus, Target};

/// The hidden subcommand that runs one firmware (the child side).
pub const CHILD_COMMAND: &str = "emulator-child";

/// Simulated time run between two looks at output, expectations and the clock:
/// 10 ms, so streamed output lags by at most that much simulated time.
#[cfg(feature = "emulator")]
const SLICE_SECONDS: f64 = 0.01;

#[cfg(feature = "emulator")]
pub(super) mod ffi {
    use std::os::raw::{c_char, c_int};

    #[repr(C)]
    pub struct Sim {
        _private: [u8; 0],
    }

    pub const HALTED: c_int = 1;
    pub const CRASHED: c_int = 2;

    extern "C" {
        pub fn fbsim_mcu_names(buf: *mut c_char, cap: usize) -> usize;
        pub fn fbsim_new(mcu: *const c_char, frequency: u32) -> *mut Sim;
        pub fn fbsim_uart_name(s: *mut Sim) -> c_char;
        pub fn fbsim_load_hex(s: *mut Sim, path: *const c_char, eeprom: c_int) -> c_int;
        pub fn fbsim_set_input(s: *mut Sim, data: *const u8, len: usize);
        pub fn fbsim_run(s: *mut Sim, until_cycle: u64) -> c_int;
        pub fn fbsim_cycle(s: *mut Sim) -> u64;
        pub fn fbsim_pc(s: *mut Sim) -> u32;
        pub fn fbsim_take_output(s: *mut Sim, bytes: *mut *const u8) -> usize;
        pub fn fbsim_input_left(s: *mut Sim) -> usize;
        pub fn fbsim_reason(s: *mut Sim) -> *const c_char;
        pub fn fbsim_free(s: *mut Sim);
        // board-sim (board_sim.rs)
        pub fn fbsim_append_input(s: *mut Sim, data: *const u8, len: usize);
        pub fn fbsim_reset(s: *mut Sim, reset_pc: u32, mcusr_flags: u8);
        pub fn fbsim_flash_write(s: *mut Sim, addr: u32, value: u8);
    }
}

/// Every MCU name simavr models.
#[cfg(feature = "emulator")]
pub fn supported_mcus() -> Vec<String> {
    let need = unsafe { ffi::fbsim_mcu_names(std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; need + 2];
    unsafe { ffi::fbsim_mcu_names(buf.as_mut_ptr().cast(), buf.len()) };
    let text = std::ffi::CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    text.split_whitespace().map(str::to_string).collect()
}

#[cfg(not(feature = "emulator"))]
pub fn supported_mcus() -> Vec<String> {
    Vec::new()
}

/// Can simavr run this board's chip? A usage error naming the MCU and the list otherwise.
pub fn check_target(target: &Target, board: &str) -> Result<()> {
    if !cfg!(feature = "emulator") {
        return Err(Error::usage(
            "this fbuild was built without the emulator (--no-default-features); run scripts/setup.sh, then cargo build --release",
        ));
    }
    let known = supported_mcus();
    if known.contains(&target.mcu) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "simavr does not model {} (board {board}); it models: {}",
        target.mcu,
        known.join(" ")
    )))
}

/// The child: run one firmware and report as the protocol in `mod.rs` says.
/// Returns the process exit code (0 whenever an outcome line was written).
pub fn child_main(args: &ChildArgs) -> i32 {
    let streams = match ChildStreams::take() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("emulator: cannot set up output: {e}");
            return 3;
        }
    };
    let outcome = simulate(args, &streams);
    streams.finish(&outcome);
    0
}

/// The child's real stdout (UART bytes) and stderr (the outcome line), kept
/// aside; fds 1 and 2 then point at /dev/null so any printing inside the
/// simulator library cannot corrupt either stream.
struct ChildStreams {
    #[cfg_attr(not(feature = "emulator"), allow(dead_code))]
    uart: std::sync::Mutex<std::fs::File>,
    outcome: std::sync::Mutex<std::fs::File>,
}

impl ChildStreams {
    fn take() -> std::io::Result<ChildStreams> {
        use std::os::fd::FromRawFd;
        unsafe {
            let uart = libc::dup(1);
            let outcome = libc::dup(2);
            if uart < 0 || outcome < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null >= 0 {
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                libc::close(null);
            }
            Ok(ChildStreams {
                uart: std::sync::Mutex::new(std::fs::File::from_raw_fd(uart)),
                outcome: std::sync::Mutex::new(std::fs::File::from_raw_fd(outcome)),
            })
        }
    }

    #[cfg_attr(not(feature = "emulator"), allow(dead_code))]
    fn uart(&self, bytes: &[u8]) {
        use std::io::Write;
        let mut f = self.uart.lock().unwrap();
        // A reader that went away (a closed pipe) must not stop the run.
        let _ = f.write_all(bytes);
    }

    fn finish(&self, outcome: &ChildOutcome) {
        use std::io::Write;
        let line = serde_json::to_string(outcome).unwrap_or_default();
        let mut f = self.outcome.lock().unwrap();
        let _ = writeln!(f, "{line}");
        let _ = f.flush();
    }
}

#[cfg(not(feature = "emulator"))]
fn simulate(_args: &ChildArgs, _streams: &ChildStreams) -> ChildOutcome {
    ChildOutcome { status: RunStatus::Failed, cycles: 0, reason: Some("this fbuild was built without the emulator (--no-default-features)".into()) }
}

#[cfg(feature = "emulator")]
fn simulate(args: &ChildArgs, streams: &ChildStreams) -> ChildOutcome {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let fail = |reason: String| ChildOutcome { status: RunStatus::Failed, cycles: 0, reason: Some(reason) };
    let expects: Vec<regex::bytes::Regex> = match args.expect.iter().map(|e| regex::bytes::Regex::new(e)).collect() {
        Ok(v) => v,
        Err(e) => return fail(format!("bad --expect: {e}")),
    };
    let input = match &args.input {
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => return fail(format!("--input {}: {e}", p.display())),
        },
        None => Vec::new(),
    };
    let Ok(mcu) = CString::new(args.mcu.clone()) else { return fail("bad MCU name".into()) };
    let sim = unsafe { ffi::fbsim_new(mcu.as_ptr(), args.frequency) };
    if sim.is_null() {
        return fail(format!("simavr does not model {}", args.mcu));
    }
    let reason_of = |sim: *mut ffi::Sim| -> Option<String> {
        let r = unsafe { CStr::from_ptr(ffi::fbsim_reason(sim)) }.to_string_lossy().into_owned();
        (!r.is_empty()).then_some(r)
    };
    let mut files = vec![(&args.hex, 0)];
    if let Some(e) = &args.eep {
        files.push((e, 1));
    }
    for (path, eeprom) in files {
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return fail("bad firmware path".into()) };
        if unsafe { ffi::fbsim_load_hex(sim, c.as_ptr(), eeprom) } != 0 {
            let r = reason_of(sim).unwrap_or_else(|| format!("cannot load {}", path.display()));
            unsafe { ffi::fbsim_free(sim) };
            return fail(r);
        }
    }
    if !input.is_empty() {
        if unsafe { ffi::fbsim_uart_name(sim) } == 0 {
            unsafe { ffi::fbsim_free(sim) };
            return fail(format!("{} has no UART to feed --input to", args.mcu));
        }
        unsafe { ffi::fbsim_set_input(sim, input.as_ptr(), input.len()) };
    }

    // Wall-clock guard: a watchdog thread that ends the process when the
    // simulated clock stops moving (e.g. stuck inside the simulator itself).
    let progress = Arc::new(AtomicU64::new(u64::MAX));
    {
        let progress = progress.clone();
        let stall = Duration::from_secs_f64(args.stall_seconds.max(0.001));
        let outcome_file = streams.outcome.lock().unwrap().try_clone();
        std::thread::spawn(move || {
            let mut last = progress.load(Ordering::SeqCst);
            let mut since = std::time::Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(50).min(stall));
                let now = progress.load(Ordering::SeqCst);
                if now != last {
                    last = now;
                    since = std::time::Instant::now();
                } else if since.elapsed() >= stall {
                    let outcome = ChildOutcome {
                        status: RunStatus::Failed,
                        cycles: if now == u64::MAX { 0 } else { now },
                        reason: Some(format!(
                            "stopped: no simulated progress for {:.1} s of wall time",
                            stall.as_secs_f64()
                        )),
                    };
                    if let Ok(mut f) = outcome_file {
                        use std::io::Write;
                        let _ = writeln!(f, "{}", serde_json::to_string(&outcome).unwrap_or_default());
                    }
                    unsafe { libc::_exit(0) };
                }
            }
        });
    }

    let slice = ((args.frequency as f64 * SLICE_SECONDS) as u64).max(1);
    let mut seen: Vec<u8> = Vec::new();
    let mut matched = vec![false; expects.len()];
    let all_matched = |m: &[bool]| !m.is_empty() && m.iter().all(|&x| x);
    let outcome = loop {
        let now = unsafe { ffi::fbsim_cycle(sim) };
        progress.store(now, Ordering::SeqCst);
        let until = now.saturating_add(slice).min(args.cycles);
        let state = unsafe { ffi::fbsim_run(sim, until) };
        let cycles = unsafe { ffi::fbsim_cycle(sim) };
        let mut bytes: *const u8 = std::ptr::null();
        let n = unsafe { ffi::fbsim_take_output(sim, &mut bytes) };
        if n > 0 && !bytes.is_null() {
            let chunk = unsafe { std::slice::from_raw_parts(bytes, n) };
            streams.uart(chunk);
            seen.extend_from_slice(chunk);
            for (i, re) in expects.iter().enumerate() {
                if !matched[i] && re.is_match(&seen) {
                    matched[i] = true;
                }
            }
        }
        let unmatched = || -> String {
            expects.iter().zip(&matched).filter(|(_, &m)| !m).map(|(r, _)| format!("/{}/", r.as_str())).collect::<Vec<_>>().join(", ")
        };
        if all_matched(&matched) {
            break ChildOutcome { status: RunStatus::Passed, cycles, reason: None };
        }
        let seconds = cycles as f64 / args.frequency as f64;
        match state {
            ffi::CRASHED => break ChildOutcome { status: RunStatus::Crashed, cycles, reason: reason_of(sim) },
            ffi::HALTED => {
                let pc = unsafe { ffi::fbsim_pc(sim) };
                let mut reason = format!("the firmware slept with interrupts off at PC=0x{pc:05x} after {seconds:.3} s");
                if !expects.is_empty() {
                    reason.push_str(&format!("; never matched {}", unmatched()));
                }
                break ChildOutcome { status: RunStatus::Halted, cycles, reason: Some(reason) };
            }
            _ => {}
        }
        if cycles >= args.cycles {
            if expects.is_empty() {
                break ChildOutcome { status: RunStatus::Timeout, cycles, reason: None };
            }
            let left = unsafe { ffi::fbsim_input_left(sim) };
            let mut reason = format!("no output matched {} in {seconds:.3} s", unmatched());
            if left > 0 {
                reason.push_str(&format!(" ({left} bytes of --input never read: was the UART receiver enabled?)"));
            }
            break ChildOutcome { status: RunStatus::Failed, cycles, reason: Some(reason) };
        }
    };
    unsafe { ffi::fbsim_free(sim) };
    outcome
}
