//! Real servers for tests, started by the test itself on 127.0.0.1 only, on a free
//! port, and always stopped (dropping the guard kills the server's process group).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Server {
    /// Send a signal to the server and everything it forked.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(-(self.child.id() as i32), sig);
        }
    }

    /// Kill the server now (SIGKILL), as a crash or an operator would.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A stopped server (SIGSTOP) must be continued to die cleanly.
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(mut cmd: Command, port: u16, dir: &Path, what: &str) -> Server {
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .process_group(0);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what} ({e}): run scripts/setup.sh"));
    let mut server = Server { child, port, dir: dir.to_path_buf() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            let err = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
            panic!("{what} exited ({status}) before listening: {err}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// redis-server on 127.0.0.1, no persistence; `extra` adds config (e.g. maxmemory).
pub fn redis(dir: &Path, extra: &[&str]) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra);
    start(cmd, port, dir, "redis-server")
}

/// nginx serving `dir/root` with WebDAV PUT on 127.0.0.1.
pub fn nginx(dir: &Path) -> Server {
    use std::os::unix::fs::PermissionsExt;
    let (root, tmp) = (dir.join("root"), dir.join("tmp"));
    for d in [&root, &tmp] {
        std::fs::create_dir_all(d).unwrap();
        // nginx workers may run as another user: let them write here.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    open_path(dir);
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {d}/root;
    client_max_body_size 512m;
    location / {{ dav_methods PUT; create_full_put_path on; dav_access user:rw group:r all:r; }}
  }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(dir.join("nginx.conf")).arg("-p").arg(dir).arg("-e").arg(dir.join("error.log"));
    start(cmd, port, dir, "nginx")
}

/// distccd on 127.0.0.1, logging every job to `dir/distccd.log`.
pub fn distccd(dir: &Path) -> Server {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    // distccd drops root for its own user, which must be able to write the log.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    open_path(dir);
    let port = free_port();
    let mut cmd = Command::new("distccd");
    cmd.args(["--daemon", "--no-detach", "--listen", "127.0.0.1", "--allow", "127.0.0.1", "--port", &port.to_string(), "--jobs", "2"])
        .arg(format!("--log-file={}", dir.join("distccd.log").display()))
        .arg("--log-level=info")
        // Debian's distccd runs only compilers listed in /usr/lib/distcc; avr-gcc is not.
        // Safe here: it listens on 127.0.0.1 and allows only 127.0.0.1.
        .arg("--enable-tcp-insecure");
    start(cmd, port, dir, "distccd")
}

/// Let a server that drops privileges reach `dir`: its folders up to the temp root
/// become traversable (tempdirs are created 0700).
fn open_path(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut up = dir.parent();
    while let Some(p) = up {
        if p == Path::new("/tmp") || p == Path::new("/") || p == std::env::temp_dir() {
            break;
        }
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
        up = p.parent();
    }
}

/// One Redis command over RESP, for tests that reach into the server; returns the
/// raw reply (binary-safe, unlike redis-cli).
pub fn redis_cmd(port: u16, args: &[&[u8]]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    if let Some(n) = line.strip_prefix('$') {
        let n: i64 = n.trim().parse().unwrap();
        if n < 0 {
            return Vec::new();
        }
        let mut buf = vec![0; n as usize + 2];
        r.read_exact(&mut buf).unwrap();
        buf.truncate(n as usize);
        return buf;
    }
    if let Some(n) = line.strip_prefix('*') {
        // An array of bulk strings (KEYS): join them with newlines.
        let n: usize = n.trim().parse().unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            let len: usize = l.trim_start_matches('$').trim().parse().unwrap();
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf).unwrap();
            out.extend_from_slice(&buf[..len]);
            out.push(b'\n');
        }
        return out;
    }
    line.into_bytes()
}

pub fn redis_keys(port: u16, pattern: &str) -> Vec<String> {
    String::from_utf8(redis_cmd(port, &[b"KEYS", pattern.as_bytes()])).unwrap().lines().map(str::to_string).collect()
}

pub fn redis_dbsize(port: u16) -> u64 {
    let r = String::from_utf8(redis_cmd(port, &[b"DBSIZE"])).unwrap();
    r.trim().trim_start_matches(':').parse().unwrap()
}
