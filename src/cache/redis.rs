//! Redis backend: GET and SET over RESP, the Redis wire protocol. SET replaces a
//! value atomically, so a reader never sees half an entry.
//!
//! Four commands (AUTH, SELECT, GET, SET) are all we need, so this is a small client
//! of our own rather than the `redis` crate and its dependency tree.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;

use super::tier::{host_port, Backend, RemoteError, CONNECT_TIMEOUT, IO_TIMEOUT};

pub struct Redis {
    host: String,
    port: u16,
    password: Option<String>,
    db: Option<u32>,
    /// Idle connections, reused so a build does not connect once per lookup.
    idle: Mutex<Vec<Conn>>,
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// One RESP reply.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

fn unavailable(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Unavailable(e.to_string())
}

impl Redis {
    /// `[:PASSWORD@]HOST[:PORT][/DB]` (what follows `redis://`).
    pub fn new(rest: &str) -> Result<Redis, String> {
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, None),
            Some((a, d)) => (a, Some(d.parse::<u32>().map_err(|_| format!("bad database number {d:?}"))?)),
            None => (rest, None),
        };
        let (password, hostport) = match authority.rsplit_once('@') {
            Some((user_info, hp)) => {
                let pass = user_info.split_once(':').map(|(_, p)| p).unwrap_or(user_info);
                (Some(pass.to_string()).filter(|p| !p.is_empty()), hp)
            }
            None => (None, authority),
        };
        let (host, port) = host_port(hostport, 6379)?;
        Ok(Redis { host, port, password, db, idle: Mutex::default() })
    }

    fn connect(&self) -> Result<Conn, RemoteError> {
        let addrs = (self.host.as_str(), self.port).to_socket_addrs().map_err(unavailable)?;
        let mut last = unavailable(format!("{}:{} resolves to no address", self.host, self.port));
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(unavailable)?;
                    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(unavailable)?;
                    let _ = s.set_nodelay(true);
                    let writer = s.try_clone().map_err(unavailable)?;
                    let mut c = Conn { reader: BufReader::new(s), writer };
                    if let Some(p) = &self.password {
                        c.expect_ok(&[b"AUTH", p.as_bytes()])?;
                    }
                    if let Some(db) = self.db {
                        c.expect_ok(&[b"SELECT", db.to_string().as_bytes()])?;
                    }
                    return Ok(c);
                }
                Err(e) => last = unavailable(e),
            }
        }
        Err(last)
    }

    /// Run one command on an idle (or new) connection; a connection that saw an
    /// error is dropped, since its reply stream may be out of step.
    fn command(&self, args: &[&[u8]]) -> Result<Reply, RemoteError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => self.connect()?,
        };
        let reply = conn.call(args)?;
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        Ok(reply)
    }
}

impl Conn {
    fn call(&mut self, args: &[&[u8]]) -> Result<Reply, RemoteError> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&req).map_err(unavailable)?;
        read_reply(&mut self.reader)
    }

    fn expect_ok(&mut self, args: &[&[u8]]) -> Result<(), RemoteError> {
        match self.call(args)? {
            Reply::Status(_) => Ok(()),
            other => Err(unavailable(format!("{} failed: {other:?}", String::from_utf8_lossy(args[0])))),
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, RemoteError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(unavailable)?;
    if !line.ends_with(b"\r\n") {
        return Err(unavailable("connection closed mid-reply"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| unavailable("reply is not text"))
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, RemoteError> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || rest.parse::<i64>().map_err(|_| unavailable(format!("bad reply {line:?}")));
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Integer(number()?)),
        "$" => {
            let n = number()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).map_err(unavailable)?;
            if !buf.ends_with(b"\r\n") {
                return Err(unavailable("bulk reply not terminated"));
            }
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(buf)))
        }
        _ => Err(unavailable(format!("unexpected reply {line:?}"))),
    }
}

impl Backend for Redis {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        match self.command(&[b"GET", name.as_bytes()])? {
            Reply::Bulk(v) => Ok(v),
            other => Err(unavailable(format!("GET answered {other:?}"))),
        }
    }

    fn put(&self, name: &str, blob: &[u8]) -> Result<(), RemoteError> {
        match self.command(&[b"SET", name.as_bytes(), blob])? {
            Reply::Status(_) => Ok(()),
            // OOM (maxmemory with noeviction), READONLY (a replica), NOPERM: the server
            // is up but will not take this write.
            Reply::Error(e) => Err(RemoteError::Refused(e)),
            other => Err(unavailable(format!("SET answered {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, RemoteError> {
        read_reply(&mut BufReader::new(bytes))
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Status("OK".into()));
        assert_eq!(parse(b"-OOM command not allowed\r\n").unwrap(), Reply::Error("OOM command not allowed".into()));
        assert_eq!(parse(b":42\r\n").unwrap(), Reply::Integer(42));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(parse(b"$5\r\na\r\nbc\r\n").unwrap(), Reply::Bulk(Some(b"a\r\nbc".to_vec())));
        assert!(parse(b"$5\r\nab").is_err(), "truncated bulk");
        assert!(parse(b"+OK").is_err(), "unterminated line");
        assert!(parse(b"").is_err(), "closed connection");
        assert!(parse(b"*1\r\n").is_err());
    }

    #[test]
    fn url_forms() {
        let r = Redis::new(":pw@10.0.0.1:7000/3").unwrap();
        assert_eq!((r.host.as_str(), r.port, r.password.as_deref(), r.db), ("10.0.0.1", 7000, Some("pw"), Some(3)));
        let r = Redis::new("cache").unwrap();
        assert_eq!((r.port, r.password, r.db), (6379, None, None));
        assert!(Redis::new("h:1/x").is_err());
    }

    #[test]
    fn nothing_listening_is_unavailable() {
        // Bind then drop a listener: the port is (almost surely) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let r = Redis::new(&format!("127.0.0.1:{port}")).unwrap();
        assert!(matches!(r.get("k"), Err(RemoteError::Unavailable(_))));
    }
}
