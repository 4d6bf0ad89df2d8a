//! `fbuild board-sim`: a virtual board on a pseudo-terminal. The board's MCU runs
//! in simavr, in real time, from the bootloader its core ships (`bootloader.file`,
//! started where the high fuse's BOOTRST/BOOTSZ put it), with UART0 bridged to a
//! pty, so real upload tools (avrdude) and `fbuild monitor` talk to it as to a
//! real board on a USB-serial adapter.
//!
//! A pty has no DTR line, so the board watches what the real board would feel:
//! - the port being opened (the master sees its slave side opened) asserts DTR,
//!   which resets an Uno through its capacitor: reset into the bootloader, with
//!   EXTRF in MCUSR;
//! - a 1200-bps touch (the slave's speed, read from the master's termios, at 1200
//!   when the port is closed) resets into the bootloader on a board whose
//!   `upload.use_1200bps_touch` is true;
//! - bytes sent while nobody has the port open are lost, as a real TX line's are.
//!
//! Test seam: SIGUSR1 makes flash byte 0 stuck at 0xFF from then on (a worn-out
//! cell), so `upload --verify` can be seen to fail. Nothing else uses it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::arduino::properties::Properties;

/// Flags of `fbuild board-sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct BoardSimArgs {
    /// The board to be (`uno`, `arduino:avr:nano:cpu=atmega328old`, `mega`).
    #[arg(long, short = 'b', default_value = "uno")]
    pub board: String,
    /// Hardware folder holding <vendor>/<arch>/boards.txt, searched first (repeatable).
    #[arg(long, value_name = "DIR")]
    pub hardware: Vec<std::path::PathBuf>,
    /// Override a board or platform property: key=value (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::arduino::properties::parse_assignment)]
    pub build_property: Vec<(String, String)>,
    /// Run this Intel HEX bootloader instead of the board's `bootloader.file` (it must
    /// fit the boot section the high fuse gives).
    #[arg(long, value_name = "FILE")]
    pub bootloader: Option<std::path::PathBuf>,
    /// Also make PATH a symbolic link to the pty (removed on exit).
    #[arg(long, value_name = "PATH")]
    pub link: Option<std::path::PathBuf>,
}

/// What the board is: chip, clock, bootloader and where the CPU starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardModel {
    pub mcu: String,
    pub frequency: u32,
    pub bootloader: std::path::PathBuf,
    /// Byte address the CPU starts at after a reset (the boot section).
    pub reset_pc: u32,
    pub touch_1200: bool,
}

/// Words of the smallest boot section (BOOTSZ = 11) of the chips board-sim knows;
/// each step down of BOOTSZ doubles it (datasheets, "Boot Loader Parameters").
fn smallest_boot_words(mcu: &str) -> Option<u32> {
    Some(match mcu {
        "atmega8" | "atmega168" | "atmega168p" | "atmega88" | "atmega88p" => 128,
        "atmega328" | "atmega328p" | "atmega32u4" | "atmega16u4" => 256,
        "atmega2560" | "atmega1280" | "atmega1284p" | "atmega644p" | "atmega644" => 512,
        _ => return None,
    })
}

fn parse_fuse(s: &str) -> Option<u8> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl BoardModel {
    pub fn from_properties(props: &Properties, board: &str) -> Result<BoardModel> {
        let target = super::Target::from_properties(props, board)?;
        let file = props.expanded("bootloader.file");
        if file.trim().is_empty() {
            return Err(Error::usage(format!("board {board} has no bootloader.file: board-sim runs the bootloader a board ships with")));
        }
        let bootloader = std::path::Path::new(&props.expanded("runtime.platform.path")).join("bootloaders").join(file.trim());
        if !bootloader.is_file() {
            return Err(Error::usage(format!(
                "board {board}: bootloader {} (bootloader.file) is not installed; this core does not ship it (Debian strips the USB bootloaders)",
                bootloader.display()
            )));
        }
        let hfuse_text = props.expanded("bootloader.high_fuses");
        let hfuse = parse_fuse(&hfuse_text)
            .ok_or_else(|| Error::usage(format!("board {board}: bootloader.high_fuses={hfuse_text:?} is not a fuse byte")))?;
        let flash = flash_bytes(&target.mcu)
            .ok_or_else(|| Error::usage(format!("board-sim does not know the flash size of {} (board {board})", target.mcu)))?;
        // BOOTRST programmed (0): the CPU starts in the boot section; BOOTSZ (bits 2:1)
        // sizes it. Unprogrammed, the CPU starts at 0 like a chip without a bootloader.
        let reset_pc = if hfuse & 1 == 0 {
            let words = smallest_boot_words(&target.mcu)
                .ok_or_else(|| Error::usage(format!("board-sim does not know the boot sections of {} (board {board})", target.mcu)))?;
            let bootsz = (hfuse >> 1) & 3;
            flash - words * 2 * (1 << (3 - bootsz))
        } else {
            0
        };
        Ok(BoardModel {
            mcu: target.mcu,
            frequency: target.frequency,
            bootloader,
            reset_pc,
            touch_1200: props.get("upload.use_1200bps_touch").map(str::trim) == Some("true"),
        })
    }
}

fn flash_bytes(mcu: &str) -> Option<u32> {
    Some(match mcu {
        "atmega8" | "atmega88" | "atmega88p" => 8 << 10,
        "atmega168" | "atmega168p" | "atmega16u4" => 16 << 10,
        "atmega328" | "atmega328p" | "atmega32u4" => 32 << 10,
        "atmega644" | "atmega644p" => 64 << 10,
        "atmega1280" | "atmega1284p" => 128 << 10,
        "atmega2560" => 256 << 10,
        _ => return None,
    })
}

/// `fbuild board-sim`: runs until SIGINT/SIGTERM; returns the exit code.
pub fn main(args: &BoardSimArgs) -> Result<i32> {
    let board = crate::upload::resolve(&args.board, &args.hardware, &args.build_property)?;
    let mut props = board.properties.clone();
    if let Some(b) = &args.bootloader {
        let abs = std::path::absolute(b).map_err(|e| Error::io(b, e))?;
        props.set("runtime.platform.path", "/");
        props.set("bootloader.file", abs.display().to_string());
    }
    let model = BoardModel::from_properties(&props, &board.id)?;
    check_fits(&model)?;
    run(&model, args.link.as_deref(), &board.id)
}

/// The bootloader image must lie in the boot section: a real chip holds nothing
/// past its flash, and avrdude refuses to write it there.
pub fn check_fits(model: &BoardModel) -> Result<()> {
    let image = read_ihex(&model.bootloader)?;
    let flash = flash_bytes(&model.mcu).unwrap_or(u32::MAX);
    let (lo, hi) = image.iter().fold((u32::MAX, 0), |(lo, hi), (a, _)| (lo.min(*a), hi.max(*a)));
    if image.is_empty() || lo < model.reset_pc || hi >= flash {
        return Err(Error::usage(format!(
            "bootloader {} spans 0x{lo:05x}..0x{:05x}, outside the boot section 0x{:05x}..0x{flash:05x} of the {} (its fuses); no real board holds it: pass --bootloader FILE with an image that fits",
            model.bootloader.display(),
            hi + 1,
            model.reset_pc,
            model.mcu
        )));
    }
    Ok(())
}

#[cfg(not(feature = "emulator"))]
fn run(_model: &BoardModel, _link: Option<&std::path::Path>, _board: &str) -> Result<i32> {
    Err(Error::usage("this fbuild was built without simavr (libsimavr-dev was missing); run scripts/setup.sh, then cargo build --release"))
}

/// Bytes of MCUSR: the reset causes the bootloader reads.
#[cfg(feature = "emulator")]
const PORF: u8 = 1 << 0;
#[cfg(feature = "emulator")]
const EXTRF: u8 = 1 << 1;

/// The pty's master side, with the slave's state read from it.
#[cfg(feature = "emulator")]
struct Pty {
    master: std::os::fd::OwnedFd,
    path: String,
}

#[cfg(feature = "emulator")]
impl Pty {
    fn open() -> std::io::Result<Pty> {
        use std::os::fd::FromRawFd;
        let (mut master, mut slave) = (-1, -1);
        let mut name = [0 as libc::c_char; 128];
        if unsafe { libc::openpty(&mut master, &mut slave, name.as_mut_ptr(), std::ptr::null(), std::ptr::null()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The board holds only the master: the slave is opened and closed by
        // whoever uses the port, and that is what the board watches.
        unsafe { libc::close(slave) };
        let master = unsafe { std::os::fd::OwnedFd::from_raw_fd(master) };
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
            libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK);
        }
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
        Ok(Pty { master, path })
    }

    fn fd(&self) -> i32 {
        std::os::fd::AsRawFd::as_raw_fd(&self.master)
    }

    /// Is the slave side open? The master reports a hang-up while it is not.
    fn slave_open(&self) -> bool {
        let mut p = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
        unsafe { libc::poll(&mut p, 1, 0) };
        p.revents & libc::POLLHUP == 0
    }

    /// The speed the port's user set (the slave's termios, read through the master).
    fn speed(&self) -> libc::speed_t {
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(self.fd(), &mut t) } != 0 {
            return 0;
        }
        unsafe { libc::cfgetospeed(&t) }
    }

    fn read(&self, buf: &mut [u8]) -> usize {
        let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
        n.max(0) as usize
    }

    /// Bytes for the port's reader; a full buffer drops them, as a line nobody reads.
    fn write(&self, bytes: &[u8]) {
        unsafe { libc::write(self.fd(), bytes.as_ptr().cast(), bytes.len()) };
    }
}

#[cfg(feature = "emulator")]
fn run(model: &BoardModel, link: Option<&std::path::Path>, board: &str) -> Result<i32> {
    use super::simavr::ffi;
    use std::ffi::{CStr, CString};
    use std::time::{Duration, Instant};

    let stop = Arc::new(AtomicBool::new(false));
    let corrupt = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| Error::Environment(format!("signal handler: {e}")))?;
    }
    signal_hook::flag::register(libc::SIGUSR1, corrupt.clone()).map_err(|e| Error::Environment(format!("signal handler: {e}")))?;

    let mcu = CString::new(model.mcu.clone()).map_err(|_| Error::usage("bad MCU name"))?;
    let sim = unsafe { ffi::fbsim_new(mcu.as_ptr(), model.frequency) };
    if sim.is_null() {
        return Err(Error::usage(format!("simavr does not model {}", model.mcu)));
    }
    let image = read_ihex(&model.bootloader)?;
    let flash_end = flash_bytes(&model.mcu).unwrap_or(u32::MAX) as u64;
    for (addr, byte) in image {
        if addr as u64 >= flash_end {
            unsafe { ffi::fbsim_free(sim) };
            return Err(Error::usage(format!("bootloader {}: data at 0x{addr:x} is outside the flash", model.bootloader.display())));
        }
        unsafe { ffi::fbsim_flash_write(sim, addr, byte) };
    }
    let pty = Pty::open().map_err(|e| Error::Environment(format!("cannot open a pseudo-terminal: {e}")))?;
    if let Some(l) = link {
        let _ = std::fs::remove_file(l);
        std::os::unix::fs::symlink(&pty.path, l).map_err(|e| Error::io(l, e))?;
    }
    let say = |what: &str| crate::errln!("board-sim: {what}");
    say(&format!(
        "{board}: {} at {} MHz, bootloader {} from 0x{:05x}{}; port {}",
        model.mcu,
        model.frequency / 1_000_000,
        model.bootloader.display(),
        model.reset_pc,
        if model.touch_1200 { ", resets on a 1200-bps touch" } else { "" },
        pty.path
    ));
    crate::outln!("{}", pty.path);

    unsafe { ffi::fbsim_reset(sim, model.reset_pc, PORF) };
    let slice = (model.frequency / 1000).max(1) as u64; // 1 ms simulated
    let mut was_open = false;
    let mut touched = false;
    let mut halted = false;
    let mut stuck = false;
    let mut last_crash = String::new();
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    let mut cycle_base = unsafe { ffi::fbsim_cycle(sim) };
    let mut wall_base = start;
    while !stop.load(Ordering::SeqCst) {
        if corrupt.swap(false, Ordering::SeqCst) && !stuck {
            stuck = true;
            say("flash byte 0x00000 is stuck at 0xff from now on (SIGUSR1 test seam)");
        }
        let open = pty.slave_open();
        let speed = pty.speed();
        let mut reset = None;
        if open && !was_open {
            reset = Some("port opened (DTR): reset into the bootloader");
            touched = false;
        }
        if !open && model.touch_1200 && speed == libc::B1200 && !touched {
            touched = true;
            reset = Some("1200-bps touch: reset into the bootloader");
        }
        if speed != libc::B1200 {
            touched = false;
        }
        was_open = open;
        if let Some(why) = reset {
            say(why);
            unsafe { ffi::fbsim_reset(sim, model.reset_pc, EXTRF) };
            halted = false;
            last_crash.clear();
        }
        if open {
            let n = pty.read(&mut buf);
            if n > 0 {
                unsafe { ffi::fbsim_append_input(sim, buf.as_ptr(), n) };
            }
        }
        let now = unsafe { ffi::fbsim_cycle(sim) };
        if !halted {
            let state = unsafe { ffi::fbsim_run(sim, now + slice) };
            let mut bytes: *const u8 = std::ptr::null();
            let n = unsafe { ffi::fbsim_take_output(sim, &mut bytes) };
            if n > 0 && !bytes.is_null() && open {
                pty.write(unsafe { std::slice::from_raw_parts(bytes, n) });
            }
            match state {
                ffi::CRASHED => {
                    // A real chip runs through erased flash (0xffff) into the boot
                    // section; the bootloader then starts the sketch again or waits.
                    let reason = unsafe { CStr::from_ptr(ffi::fbsim_reason(sim)) }.to_string_lossy().into_owned();
                    if reason != last_crash {
                        say(&format!("the firmware crashed ({reason}): running on into the bootloader"));
                        last_crash = reason;
                    }
                    unsafe { ffi::fbsim_reset(sim, model.reset_pc, 0) };
                }
                ffi::HALTED => halted = true,
                _ => {}
            }
        }
        if stuck {
            unsafe { ffi::fbsim_flash_write(sim, 0, 0xff) };
        }
        // Real time: a bootloader's timeouts and the host's serial timeouts must agree.
        let simulated = Duration::from_secs_f64((unsafe { ffi::fbsim_cycle(sim) } - cycle_base) as f64 / model.frequency as f64);
        let wall = wall_base.elapsed();
        if halted {
            std::thread::sleep(Duration::from_millis(1));
        } else if simulated > wall + Duration::from_millis(2) {
            std::thread::sleep(simulated - wall);
        } else if wall > simulated + Duration::from_millis(200) {
            // Too slow to keep up (a loaded machine): do not try to catch up in a burst.
            cycle_base = unsafe { ffi::fbsim_cycle(sim) };
            wall_base = Instant::now();
        }
    }
    unsafe { ffi::fbsim_free(sim) };
    if let Some(l) = link {
        let _ = std::fs::remove_file(l);
    }
    say("stopped");
    Ok(crate::error::exit::OK)
}

/// The bytes of an Intel HEX file by address (records 00, 01, 02, 04; the start
/// address records 03 and 05 say nothing about flash). simavr's own reader
/// rejects the 03 record the AVR core's optiboot image ends with.
pub fn read_ihex(path: &std::path::Path) -> Result<Vec<(u32, u8)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |n: usize, why: &str| Error::usage(format!("{}:{n}: not Intel HEX ({why})", path.display()));
    let mut out = Vec::new();
    let mut base: u32 = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let hex = line.strip_prefix(':').ok_or_else(|| bad(i + 1, "no ':'"))?;
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|k| u8::from_str_radix(&hex[2 * k..2 * k + 2], 16))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(i + 1, "not hex digits"))?;
        if bytes.len() < 5 || bytes.len() != bytes[0] as usize + 5 {
            return Err(bad(i + 1, "wrong length"));
        }
        if bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) != 0 {
            return Err(bad(i + 1, "bad checksum"));
        }
        let addr = u16::from_be_bytes([bytes[1], bytes[2]]) as u32;
        let data = &bytes[4..bytes.len() - 1];
        match bytes[3] {
            0 => out.extend(data.iter().enumerate().map(|(k, b)| (base + addr + k as u32, *b))),
            1 => break,
            2 if data.len() == 2 => base = (u16::from_be_bytes([data[0], data[1]]) as u32) << 4,
            4 if data.len() == 2 => base = (u16::from_be_bytes([data[0], data[1]]) as u32) << 16,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(mcu: &str, hfuse: &str) -> Properties {
        let mut p = Properties::new();
        p.set("build.mcu", mcu);
        p.set("build.f_cpu", "16000000L");
        p.set("bootloader.high_fuses", hfuse);
        p
    }

    #[test]
    fn boot_section_from_the_high_fuse() {
        if !cfg!(feature = "emulator") {
            return;
        }
        let root = "/usr/share/arduino/hardware/arduino/avr";
        if !std::path::Path::new(root).is_dir() {
            return;
        }
        for (mcu, fuse, file, pc) in [
            ("atmega328p", "0xDE", "optiboot/optiboot_atmega328.hex", 0x7e00),
            ("atmega328p", "0xDA", "atmega/ATmegaBOOT_168_atmega328.hex", 0x7800),
            ("atmega2560", "0xD8", "stk500v2/stk500boot_v2_mega2560.hex", 0x3e000),
        ] {
            let mut p = props(mcu, fuse);
            p.set("runtime.platform.path", root);
            p.set("bootloader.file", file);
            let model = BoardModel::from_properties(&p, "b").unwrap();
            assert_eq!(model.reset_pc, pc, "{mcu} {fuse}");
            // The image starts where the CPU does.
            assert_eq!(read_ihex(&model.bootloader).unwrap().iter().map(|(a, _)| *a).min(), Some(pc), "{file}");
        }
    }
}
