//! `fbuild monitor`: a serial port's bytes on stdout as they arrive; with
//! `--expect`, done (exit 0) once every pattern matched, failed (exit 1) at the
//! timeout; Ctrl-C ends it cleanly (exit 130), the port released.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{exit, Error, Result};

/// Flags of `fbuild monitor` that `deploy` shares.
#[derive(clap::Args, Debug, Clone)]
pub struct MonitorOptions {
    /// Baud rate. Default: the project env's `monitor_speed`, else the sketch's first
    /// `Serial.begin(N)`, else 9600.
    #[arg(long, value_name = "N")]
    pub baud: Option<u32>,
    /// A regular expression the output must match (repeatable; all must match, in any
    /// order). The monitor exits 0 as soon as every one has, 1 at the timeout.
    #[arg(long, value_name = "REGEX", value_parser = crate::emulator::parse_expect)]
    pub expect: Vec<String>,
    /// Wall time to monitor (10s, 1min). Default: until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = crate::emulator::parse_duration)]
    pub timeout: Option<Duration>,
}

/// Flags of `fbuild monitor`.
#[derive(clap::Args, Debug, Clone)]
pub struct MonitorArgs {
    /// The serial port (/dev/ttyACM0, or the pty `fbuild board-sim` printed).
    #[arg(long, short = 'p', value_name = "PORT")]
    pub port: String,
    #[command(flatten)]
    pub options: MonitorOptions,
    /// PlatformIO project only: the env whose `monitor_speed` to use.
    #[arg(long = "environment", short = 'e', value_name = "ENV")]
    pub environment: Option<String>,
    /// A sketch or PlatformIO project, for its baud rate.
    pub sketch: Option<PathBuf>,
}

/// The baud rate a sketch or project talks at, when it says.
pub fn baud_of(sketch: &std::path::Path, env: Option<&str>) -> Result<Option<u32>> {
    if crate::project::is_project(sketch) {
        let config = crate::project::platformio::Config::load(&sketch.join("platformio.ini"))?;
        let envs: Vec<String> = env.map(String::from).into_iter().collect();
        for e in config.select_envs(&envs)? {
            if let Some(v) = config.env(&e, "monitor_speed")? {
                return Ok(v.trim().parse().ok());
            }
        }
        return Ok(None);
    }
    let s = crate::arduino::sketch::Sketch::load(sketch)?;
    let text = std::fs::read_to_string(&s.main_ino).map_err(|e| Error::io(&s.main_ino, e))?;
    let re = regex::Regex::new(r"Serial\s*\.\s*begin\s*\(\s*(\d+)").expect("valid");
    Ok(re.captures(&text).and_then(|c| c[1].parse().ok()))
}

pub fn main(args: &MonitorArgs) -> Result<i32> {
    let from_sketch = match (&args.options.baud, &args.sketch) {
        (None, Some(s)) => baud_of(s, args.environment.as_deref())?,
        _ => None,
    };
    monitor(&args.port, &args.options, from_sketch)
}

/// Watch `port` until the expectations match, the timeout, or Ctrl-C.
pub fn monitor(port: &str, opts: &MonitorOptions, sketch_baud: Option<u32>) -> Result<i32> {
    let baud = opts.baud.or(sketch_baud).unwrap_or(9600);
    let expects: Vec<regex::bytes::Regex> =
        opts.expect.iter().map(|e| regex::bytes::Regex::new(e)).collect::<std::result::Result<_, _>>().map_err(|e| Error::usage(format!("--expect: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| Error::Environment(format!("signal handler: {e}")))?;
    }
    let held = super::port::hold(port)?;
    super::port::set_raw(&held, baud, port)?;
    crate::errln!("monitor: {port} at {baud} baud{}", if opts.timeout.is_some() || !expects.is_empty() { "" } else { " (Ctrl-C to quit)" });
    let start = Instant::now();
    let mut seen: Vec<u8> = Vec::new();
    let mut matched = vec![false; expects.len()];
    let mut buf = [0u8; 4096];
    let stdout = std::io::stdout();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        if !expects.is_empty() && matched.iter().all(|&m| m) {
            crate::errln!("monitor: every --expect matched after {:.2} s", start.elapsed().as_secs_f64());
            return Ok(exit::OK);
        }
        if let Some(t) = opts.timeout {
            if start.elapsed() >= t {
                if expects.is_empty() {
                    return Ok(exit::OK);
                }
                let missing: Vec<String> = expects.iter().zip(&matched).filter(|(_, &m)| !m).map(|(r, _)| format!("/{}/", r.as_str())).collect();
                crate::errln!("monitor: no output matched {} in {:.1} s", missing.join(", "), t.as_secs_f64());
                return Ok(exit::RUN_FAILED);
            }
        }
        let mut p = libc::pollfd { fd: held.raw_fd(), events: libc::POLLIN, revents: 0 };
        let ready = unsafe { libc::poll(&mut p, 1, 50) };
        if ready <= 0 || p.revents == 0 {
            continue;
        }
        let n = unsafe { libc::read(held.raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            crate::errln!("monitor: port {port} went away ({e})");
            return Ok(exit::RUN_FAILED);
        }
        if n == 0 {
            crate::errln!("monitor: port {port} went away");
            return Ok(exit::RUN_FAILED);
        }
        let chunk = &buf[..n as usize];
        {
            let mut out = stdout.lock();
            let _ = out.write_all(chunk);
            let _ = out.flush();
        }
        seen.extend_from_slice(chunk);
        for (i, re) in expects.iter().enumerate() {
            if !matched[i] && re.is_match(&seen) {
                matched[i] = true;
            }
        }
    }
}
