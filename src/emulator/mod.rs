//! Running built firmware in an emulator: `fbuild run` and `compile-many --smoke-run`.
//!
//! The emulator always runs in a child process (fbuild itself, started with a
//! hidden subcommand), so a simulator that aborts, prints, or hangs inside its
//! own code can never take a batch down with it, and interruption stops it like
//! any other tool. The child speaks one small protocol, whatever the backend:
//!
//! - argv: the [`ChildArgs`] flags (MCU, frequency, firmware, cycle budget,
//!   expectations, input file);
//! - stdout: the firmware's UART bytes, exactly, as they are produced;
//! - stderr: one JSON [`ChildOutcome`] line at the end, nothing else.
//!
//! Only simavr (`simavr.rs`) exists today; QEMU's AVR machine could be a second
//! child behind the same protocol.
//!
//! Time is simulated time: the budget is a number of CPU cycles, so the same
//! firmware and input give the same output however loaded the machine is.

pub mod board_sim;
pub mod simavr;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::Runner;
use crate::arduino::properties::Properties;

/// How much serial output a sketch's `run` keeps in results.json.
pub const OUTPUT_KEPT: usize = 4096;

/// Stop a run whose simulated clock has not moved for this long (wall time).
pub const STALL_SECONDS: f64 = 10.0;

/// How one run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every `--expect` matched.
    Passed,
    /// An expectation did not match in time, or the run could not go on (no progress).
    Failed,
    /// Bad opcode, stack into the registers, jump outside flash, access outside RAM.
    Crashed,
    /// The firmware went to sleep with interrupts off: it stopped itself.
    Halted,
    /// The simulated time ran out with no crash and nothing expected: a success.
    Timeout,
}

impl RunStatus {
    pub fn succeeded(self) -> bool {
        matches!(self, RunStatus::Passed | RunStatus::Timeout)
    }
}

/// A sketch's `run` in results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub status: RunStatus,
    /// Simulated seconds the firmware ran.
    pub simulated_seconds: f64,
    /// Wall seconds the run took, emulator start-up included.
    pub wall_seconds: f64,
    /// The first 4 KiB of UART0 output (invalid UTF-8 shown as U+FFFD).
    pub output: String,
    /// How many bytes the firmware wrote to UART0 in all.
    pub output_bytes: usize,
    /// Why it failed, crashed, halted or was stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The chip to emulate, from the board's `build.mcu` and `build.f_cpu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mcu: String,
    pub frequency: u32,
}

impl Target {
    pub fn from_properties(props: &Properties, board: &str) -> Result<Target> {
        let mcu = props
            .get("build.mcu")
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| Error::usage(format!("board {board} has no build.mcu; running firmware needs an AVR board such as uno")))?
            .trim()
            .to_string();
        let f_cpu = props.get("build.f_cpu").unwrap_or("");
        let frequency = parse_f_cpu(f_cpu).ok_or_else(|| {
            Error::usage(format!("board {board} has build.f_cpu={f_cpu:?}, not a clock in Hz; set one with --build-property build.f_cpu=16000000L"))
        })?;
        let target = Target { mcu, frequency };
        simavr::check_target(&target, board)?;
        Ok(target)
    }

    /// Cycles in `d` of simulated time at this clock.
    pub fn cycles(&self, d: Duration) -> u64 {
        (d.as_nanos() * self.frequency as u128 / 1_000_000_000).min(u64::MAX as u128) as u64
    }
}

/// `16000000L` -> 16000000 (boards.txt writes the clock as a C literal).
pub fn parse_f_cpu(s: &str) -> Option<u32> {
    let digits = s.trim().trim_end_matches(['L', 'l', 'U', 'u']);
    digits.parse::<u32>().ok().filter(|&f| f > 0)
}

/// What to run, and when it has passed.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Simulated time budget.
    pub duration: Duration,
    /// Patterns the UART output must match (each somewhere, in any order).
    pub expects: Vec<String>,
    /// Bytes for UART0's receiver.
    pub input: Option<PathBuf>,
}

/// The firmware files of one built sketch.
#[derive(Debug, Clone)]
pub struct Firmware {
    pub hex: PathBuf,
    pub eep: Option<PathBuf>,
}

impl Firmware {
    /// The firmware among a built sketch's files by kind (`hex`, `eep`): `None`
    /// without a `.hex`.
    pub fn from_files(files: &std::collections::BTreeMap<String, PathBuf>) -> Option<Firmware> {
        Some(Firmware { hex: files.get("hex")?.clone(), eep: files.get("eep").cloned() })
    }
}

/// Where the UART output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Straight to our stdout as it is produced (`fbuild run`).
    Stream,
    /// Collected into the result (`--smoke-run`).
    Capture,
}

/// Flags of the hidden child subcommand; see the module docs for the protocol.
#[derive(clap::Args, Debug, Clone)]
pub struct ChildArgs {
    #[arg(long)]
    pub mcu: String,
    #[arg(long)]
    pub frequency: u32,
    #[arg(long)]
    pub hex: PathBuf,
    #[arg(long)]
    pub eep: Option<PathBuf>,
    /// Simulated time budget in CPU cycles.
    #[arg(long)]
    pub cycles: u64,
    #[arg(long)]
    pub expect: Vec<String>,
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Wall seconds without simulated progress before the run is stopped.
    #[arg(long, default_value_t = STALL_SECONDS)]
    pub stall_seconds: f64,
}

/// The child's last word, one JSON line on its stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildOutcome {
    pub status: RunStatus,
    pub cycles: u64,
    pub reason: Option<String>,
}

/// Run one firmware in the emulator, in a child process started through `runner`.
pub fn run(runner: &Runner, target: &Target, firmware: &Firmware, spec: &RunSpec, output: Output) -> RunResult {
    let t = Instant::now();
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return broken(t, format!("cannot find the fbuild executable to start the emulator: {e}")),
    };
    let mut args: Vec<String> = vec![
        exe.to_string_lossy().into_owned(),
        simavr::CHILD_COMMAND.to_string(),
        "--mcu".into(),
        target.mcu.clone(),
        "--frequency".into(),
        target.frequency.to_string(),
        "--hex".into(),
        firmware.hex.to_string_lossy().into_owned(),
        "--cycles".into(),
        target.cycles(spec.duration).to_string(),
    ];
    if let Some(e) = &firmware.eep {
        args.extend(["--eep".to_string(), e.to_string_lossy().into_owned()]);
    }
    for e in &spec.expects {
        args.extend(["--expect".to_string(), e.clone()]);
    }
    if let Some(i) = &spec.input {
        args.extend(["--input".to_string(), i.to_string_lossy().into_owned()]);
    }
    let stdout = match output {
        Output::Stream => crate::exec::Stdout::Inherit,
        Output::Capture => crate::exec::Stdout::Capture,
    };
    let out = runner.run_with_stdout(&args, stdout);
    let uart = out.stdout_bytes;
    let outcome = out.stderr.lines().rev().find_map(|l| serde_json::from_str::<ChildOutcome>(l).ok());
    let wall = t.elapsed().as_secs_f64();
    let kept = String::from_utf8_lossy(&uart[..uart.len().min(OUTPUT_KEPT)]).into_owned();
    match outcome {
        Some(o) => RunResult {
            status: o.status,
            simulated_seconds: o.cycles as f64 / target.frequency as f64,
            wall_seconds: wall,
            output: kept,
            output_bytes: uart.len(),
            reason: o.reason,
        },
        None => {
            let how = out.signal.clone().unwrap_or_else(|| "exited without a result".to_string());
            let said = out.stderr.lines().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default();
            RunResult { output: kept, output_bytes: uart.len(), ..broken(t, format!("the emulator {how}{said}")) }
        }
    }
}

fn broken(t: Instant, reason: String) -> RunResult {
    RunResult {
        status: RunStatus::Failed,
        simulated_seconds: 0.0,
        wall_seconds: t.elapsed().as_secs_f64(),
        output: String::new(),
        output_bytes: 0,
        reason: Some(reason),
    }
}

/// Check a `--input` file up front, so a typo is a usage error, not a failed run.
pub fn check_input(path: &Path) -> Result<PathBuf> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::usage(format!("--input {}: {e}; pass a readable file whose bytes go to the firmware's UART", path.display())))?;
    let mut probe = [0u8; 1];
    f.read(&mut probe)
        .map_err(|e| Error::usage(format!("--input {}: {e}; pass a readable file whose bytes go to the firmware's UART", path.display())))?;
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

/// `2s`, `500ms`, `1min`: a simulated duration for `--timeout` / `--smoke-run`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{e}; write a duration like 2s, 500ms or 1min"))?;
    if d.is_zero() {
        return Err("must be longer than zero; write a duration like 2s or 500ms".to_string());
    }
    Ok(d)
}

/// A `--expect` pattern, checked when the flag is parsed.
pub fn parse_expect(s: &str) -> std::result::Result<String, String> {
    regex::bytes::Regex::new(s).map(|_| s.to_string()).map_err(|e| {
        let first = e.to_string().lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid").trim().to_string();
        format!("not a valid regular expression ({first})")
    })
}

pub fn status_name(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Passed => "passed",
        RunStatus::Failed => "failed",
        RunStatus::Crashed => "crashed",
        RunStatus::Halted => "halted",
        RunStatus::Timeout => "timeout",
    }
}

/// The one-line verdict `fbuild run` prints on stderr.
pub fn describe(r: &RunResult) -> String {
    let mut s = format!("run: {} after {:.3} s simulated ({:.2} s wall)", status_name(r.status), r.simulated_seconds, r.wall_seconds);
    if let Some(reason) = &r.reason {
        s.push_str(": ");
        s.push_str(reason);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_cpu_literals() {
        assert_eq!(parse_f_cpu("16000000L"), Some(16_000_000));
        assert_eq!(parse_f_cpu("8000000UL"), Some(8_000_000));
        assert_eq!(parse_f_cpu(" 20000000 "), Some(20_000_000));
        assert_eq!(parse_f_cpu("fast"), None);
        assert_eq!(parse_f_cpu("0"), None);
    }

    #[test]
    fn durations_and_cycles() {
        let t = Target { mcu: "atmega328p".into(), frequency: 16_000_000 };
        assert_eq!(t.cycles(parse_duration("1s").unwrap()), 16_000_000);
        assert_eq!(t.cycles(parse_duration("250ms").unwrap()), 4_000_000);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("2s"));
    }

    #[test]
    fn expect_patterns_are_checked() {
        assert!(parse_expect("hello.*world").is_ok());
        assert!(parse_expect("(unclosed").unwrap_err().contains("not a valid regular expression"));
    }

    #[test]
    fn only_passed_and_timeout_succeed() {
        assert!(RunStatus::Passed.succeeded());
        assert!(RunStatus::Timeout.succeeded());
        for s in [RunStatus::Failed, RunStatus::Crashed, RunStatus::Halted] {
            assert!(!s.succeeded());
        }
    }
}
