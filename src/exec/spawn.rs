//! Starting a tool the way `posix_spawn` does (the child shares fbuild's memory until
//! it execs, so nothing is copied), plus the one thing `posix_spawn` cannot do: make
//! the tool die with fbuild (`PR_SET_PDEATHSIG`). `std::process::Command` needs
//! `pre_exec` for that, which makes it fork: with fbuild's caches in memory each fork
//! copies page tables and every later write faults a page in, about 0.4 ms a tool,
//! a quarter of a core-second over a library's examples (docs/design.md).
//!
//! Between `clone` and `execvp` the child runs on its own stack in fbuild's memory
//! while the spawning thread waits (`CLONE_VFORK`); it only makes system calls, as a
//! `vfork` child must: no allocation, no locks, no Rust code that could unwind.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// Where a tool's stdout goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stdout {
    /// Captured, byte for byte.
    Capture,
    /// fbuild's own stdout (a simulator streaming a sketch's serial output).
    Inherit,
}

/// A running tool: its process id and the read ends of its pipes.
pub struct Child {
    pub pid: libc::pid_t,
    stdout: Option<File>,
    stderr: File,
}

/// The child's half of the work, all of it prepared by the parent.
struct Plan {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: libc::c_int,
    stdout: libc::c_int,
    stderr: libc::c_int,
    parent: libc::pid_t,
    old_mask: libc::sigset_t,
    /// Set by the child when it cannot exec (the memory is shared), read after.
    errno: libc::c_int,
}

const STACK: usize = 256 * 1024;

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: only system calls on data the waiting parent keeps alive.
    unsafe {
        let p = &mut *(arg as *mut Plan);
        // Signal handlers are fbuild's, in fbuild's memory: the tool gets the
        // defaults (SIGPIPE too, which fbuild ignores for itself).
        for sig in 1..32 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && (old.sa_sigaction != libc::SIG_DFL && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)) {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        // If fbuild itself is killed (SIGKILL cannot be caught), take the tool with it
        // rather than leave it writing outputs a rerun is about to write; if fbuild
        // died already, do not start.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != p.parent {
            libc::_exit(127);
        }
        // Its own process group, so an interruption stops it and its children.
        libc::setpgid(0, 0);
        let ok = libc::dup2(p.stdin, 0) >= 0 && (p.stdout < 0 || libc::dup2(p.stdout, 1) >= 0) && libc::dup2(p.stderr, 2) >= 0 && (p.cwd.is_null() || libc::chdir(p.cwd) == 0);
        if ok {
            libc::sigprocmask(libc::SIG_SETMASK, &p.old_mask, std::ptr::null_mut());
            libc::execvp(p.program, p.argv);
        }
        p.errno = *libc::__errno_location();
        libc::_exit(127)
    }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an argument holds a NUL byte"))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors or fails.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors this function owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Start `args` (the program is looked up on `PATH` when it has no `/`) with stdin
/// from /dev/null, stderr captured, stdout as asked, in `cwd` when given.
pub fn spawn(args: &[String], cwd: Option<&Path>, stdout: Stdout) -> io::Result<Child> {
    if args.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    }
    let argv_c: Vec<CString> = args.iter().map(|a| cstring(OsStr::new(a))).collect::<io::Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let cwd_c = cwd.map(|d| cstring(d.as_os_str())).transpose()?;
    let stdin = File::open("/dev/null")?;
    let (err_r, err_w) = pipe()?;
    let out = match stdout {
        Stdout::Capture => Some(pipe()?),
        Stdout::Inherit => None,
    };
    // Uninitialised is fine for a stack, and zeroing it costs more than the spawn.
    let mut stack: Vec<u8> = Vec::with_capacity(STACK);
    // SAFETY: see the module comment; every pointer in `plan` outlives the child's
    // use of it, because CLONE_VFORK returns only once the child has exec'd or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut plan = Plan {
            program: argv_c[0].as_ptr(),
            argv: argv.as_ptr(),
            cwd: cwd_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            stdin: stdin.as_raw_fd(),
            stdout: out.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
            stderr: err_w.as_raw_fd(),
            parent: libc::getpid(),
            old_mask: std::mem::zeroed(),
            errno: 0,
        };
        // No signal handler may run in the child before it has reset them.
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut plan.old_mask);
        let top = (stack.as_mut_ptr().add(stack.capacity()) as usize & !15) as *mut libc::c_void;
        let pid = libc::clone(child_main, top, libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, &mut plan as *mut Plan as *mut libc::c_void);
        let clone_errno = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &plan.old_mask, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_errno);
        }
        if plan.errno != 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            return Err(io::Error::from_raw_os_error(plan.errno));
        }
        pid
    };
    drop(stack);
    Ok(Child { pid, stdout: out.map(|(r, _)| File::from(r)), stderr: File::from(err_r) })
}

impl Child {
    /// Read both pipes to their ends, then reap the tool.
    pub fn wait_with_output(self) -> io::Result<(ExitStatus, Vec<u8>, Vec<u8>)> {
        let Child { pid, stdout, mut stderr } = self;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        match stdout {
            Some(mut o) => read_both(&mut o, &mut out, &mut stderr, &mut err)?,
            None => {
                stderr.read_to_end(&mut err)?;
            }
        }
        let mut status = 0;
        loop {
            // SAFETY: our own child, reaped once.
            if unsafe { libc::waitpid(pid, &mut status, 0) } >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok((ExitStatus::from_raw(status), out, err))
    }
}

/// Read two pipes at once (a tool may fill one while fbuild waits on the other).
fn read_both(a: &mut File, a_buf: &mut Vec<u8>, b: &mut File, b_buf: &mut Vec<u8>) -> io::Result<()> {
    let (mut a_open, mut b_open) = (true, true);
    let mut chunk = [0u8; 16384];
    while a_open || b_open {
        let mut fds = [
            libc::pollfd { fd: if a_open { a.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if b_open { b.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfd entries (a negative fd is skipped).
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (i, (file, buf, open)) in [(&mut *a, &mut *a_buf, &mut a_open), (&mut *b, &mut *b_buf, &mut b_open)].into_iter().enumerate() {
            if *open && fds[i].revents != 0 {
                match file.read(&mut chunk) {
                    Ok(0) => *open = false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_status_and_errors_come_back() {
        let c = spawn(&["sh".into(), "-c".into(), "printf out; printf err >&2; exit 3".into()], None, Stdout::Capture).unwrap();
        let (status, out, err) = c.wait_with_output().unwrap();
        assert_eq!((status.code(), &out[..], &err[..]), (Some(3), &b"out"[..], &b"err"[..]));
        let e = spawn(&["/nonexistent/tool".into()], None, Stdout::Capture).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let c = spawn(&["pwd".into()], Some(Path::new("/tmp")), Stdout::Capture).unwrap();
        assert_eq!(c.wait_with_output().unwrap().1, b"/tmp\n");
    }

    #[test]
    fn a_tool_gets_default_signals_and_its_own_group() {
        let script = "grep -E '^(SigIgn|SigBlk):' /proc/self/status; cut -d' ' -f5 /proc/$$/stat";
        let c = spawn(&["sh".into(), "-c".into(), script.into()], None, Stdout::Capture).unwrap();
        let pid = c.pid;
        let (status, out, _) = c.wait_with_output().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(status.success(), "{text}");
        assert!(text.contains("SigBlk:\t0000000000000000"), "no signal stays blocked: {text}");
        let ign = text.lines().find_map(|l| l.strip_prefix("SigIgn:\t")).map(|h| u64::from_str_radix(h.trim(), 16).unwrap()).unwrap();
        assert_eq!(ign & (1u64 << (libc::SIGPIPE - 1)), 0, "SIGPIPE is not ignored in the tool: {text}");
        assert_eq!(text.lines().last(), Some(pid.to_string().as_str()), "the tool leads its own group: {text}");
    }
}
