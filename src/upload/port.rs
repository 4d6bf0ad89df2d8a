//! Serial ports: is it there and free, the 1200-bps touch and the wait for the
//! bootloader's port that follows it (as arduino-cli's serialutils does them),
//! and opening a port raw at a baud rate for the monitor.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Open a port the way serial tools do: read/write, not as our controlling tty.
fn open_raw(port: &str) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(port).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn busy(port: &str) -> Error {
    Error::usage(format!("port {port} is busy: another program (a monitor?) has it open; close it and try again"))
}

fn open_error(port: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => {
            Error::usage(format!("port {port} does not exist; is the board connected? (pass its device, e.g. /dev/ttyACM0)"))
        }
        Some(libc::EBUSY) => busy(port),
        _ => Error::usage(format!("port {port} cannot be opened: {e}")),
    }
}

/// A port held by fbuild (the monitor): exclusive among fbuild and tools that lock
/// ports (flock), and TIOCEXCL for everyone else who is not root.
pub struct HeldPort {
    fd: OwnedFd,
}

impl HeldPort {
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// Open `port` for ourselves: exit-2 errors for a missing or busy port.
pub fn hold(port: &str) -> Result<HeldPort> {
    let fd = open_raw(port).map_err(|e| open_error(port, e))?;
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(busy(port));
    }
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCEXCL) };
    Ok(HeldPort { fd })
}

/// Check a port is there and free, then let it go for the upload tool to open.
pub fn check(port: &str) -> Result<()> {
    hold(port).map(drop)
}

/// Raw bytes at `baud`, as a serial monitor sets the line.
pub fn set_raw(port: &HeldPort, baud: u32, name: &str) -> Result<()> {
    let speed = speed_constant(baud).ok_or_else(|| Error::usage(format!("--baud {baud} is not a rate serial ports take (e.g. 9600, 57600, 115200)")))?;
    let fd = port.raw_fd();
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(Error::usage(format!("port {name} is not a serial port: {}", std::io::Error::last_os_error())));
    }
    unsafe {
        libc::cfmakeraw(&mut t);
        t.c_cflag |= libc::CLOCAL | libc::CREAD;
        libc::cfsetispeed(&mut t, speed);
        libc::cfsetospeed(&mut t, speed);
        libc::tcsetattr(fd, libc::TCSANOW, &t);
    }
    Ok(())
}

fn speed_constant(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        300 => libc::B300,
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        500000 => libc::B500000,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        2000000 => libc::B2000000,
        _ => return None,
    })
}

/// The 1200-bps touch: open at 1200 baud, drop DTR, close, then give the board
/// half a second to reset before anything opens a port again.
pub fn touch_1200(port: &str) -> Result<()> {
    let held = hold(port)?;
    set_raw(&held, 1200, port)?;
    let dtr = libc::TIOCM_DTR;
    // A pty has no modem lines: the speed is what the board sees there.
    unsafe { libc::ioctl(held.raw_fd(), libc::TIOCMBIC, &dtr) };
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// The serial devices a board can appear as (not every pty on the machine: other
/// programs' terminals come and go).
pub fn list(also: &str) -> Vec<String> {
    let mut ports: Vec<String> = std::fs::read_dir("/dev")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ttyACM") || n.starts_with("ttyUSB"))
                .map(|n| format!("/dev/{n}"))
                .collect()
        })
        .unwrap_or_default();
    if Path::new(also).exists() {
        ports.push(also.to_string());
    }
    ports.sort();
    ports
}

/// After a touch, wait up to 10 s for a port that was not there before (the
/// bootloader's), as arduino-cli does; `None` means: use the port as given.
pub fn wait_for_new_port(before: &[String], port: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut last = before.to_vec();
    while Instant::now() < deadline {
        let now = list(port);
        if now.iter().any(|p| !last.contains(p)) {
            // Let it settle, then check it is still there.
            std::thread::sleep(Duration::from_secs(1));
            if let Some(p) = list(port).into_iter().find(|p| !last.contains(p)) {
                return Some(p);
            }
        }
        last = now;
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}
