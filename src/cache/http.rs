//! HTTP backend: plain `GET` and `PUT` of `PREFIX/<name>`, as a WebDAV server (nginx
//! with `dav_methods PUT`, Apache mod_dav) serves them. Such servers write a PUT body
//! to a temp file and rename it into place, so a reader never sees half an entry.
//!
//! One HTTP/1.1 request per connection (`Connection: close`) over a plain TCP stream:
//! two methods and a status line are all we need, so this is a small client of our own
//! rather than an HTTP crate with TLS, URL and pooling layers we would not use.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};

use super::tier::{host_port, Backend, RemoteError, CONNECT_TIMEOUT, IO_TIMEOUT};

pub struct Http {
    host: String,
    port: u16,
    /// Path prefix without a trailing slash ("" or "/cache").
    prefix: String,
}

fn unavailable(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Unavailable(e.to_string())
}

/// Status code and body of a response.
struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Http {
    /// `HOST[:PORT][/PREFIX]` (what follows `http://`).
    pub fn new(rest: &str) -> Result<Http, String> {
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("user names and passwords in http URLs are not supported".into());
        }
        if path.contains(['?', '#', ' ']) {
            return Err("the prefix must be a plain path".into());
        }
        let (host, port) = host_port(authority, 80)?;
        Ok(Http { host, port, prefix: path.trim_end_matches('/').to_string() })
    }

    fn request(&self, method: &str, name: &str, body: Option<&[u8]>) -> Result<Response, RemoteError> {
        let addrs = (self.host.as_str(), self.port).to_socket_addrs().map_err(unavailable)?;
        let mut stream = None;
        let mut last = unavailable(format!("{}:{} resolves to no address", self.host, self.port));
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = unavailable(e),
            }
        }
        let stream = stream.ok_or(last)?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(unavailable)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(unavailable)?;
        let mut head = format!(
            "{method} {}/{name} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: fbuild\r\nConnection: close\r\n",
            self.prefix, self.host, self.port
        );
        if let Some(b) = body {
            head.push_str(&format!("Content-Type: application/octet-stream\r\nContent-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        let mut writer = &stream;
        writer.write_all(head.as_bytes()).map_err(unavailable)?;
        if let Some(b) = body {
            writer.write_all(b).map_err(unavailable)?;
        }
        read_response(&mut BufReader::new(&stream), method == "HEAD")
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, RemoteError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(unavailable)?;
    if !line.ends_with(b"\n") {
        return Err(unavailable("connection closed mid-response"));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

fn read_response(r: &mut impl BufRead, no_body: bool) -> Result<Response, RemoteError> {
    let status_line = read_line(r)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/1."))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| unavailable(format!("not an HTTP response: {status_line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse().map_err(|_| unavailable(format!("bad Content-Length {value:?}")))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if no_body || status == 204 || status == 304 {
    } else if chunked {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| unavailable(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).map_err(unavailable)?;
            read_line(r)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        // A short body (server died mid-transfer) is an error, not a smaller entry.
        r.read_exact(&mut body).map_err(unavailable)?;
    } else {
        r.read_to_end(&mut body).map_err(unavailable)?;
    }
    Ok(Response { status, body })
}

impl Backend for Http {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let resp = self.request("GET", name, None)?;
        match resp.status {
            200 => Ok(Some(resp.body)),
            404 | 410 => Ok(None),
            s => Err(unavailable(format!("GET answered HTTP {s}"))),
        }
    }

    fn put(&self, name: &str, blob: &[u8]) -> Result<(), RemoteError> {
        let resp = self.request("PUT", name, Some(blob))?;
        match resp.status {
            200..=299 => Ok(()),
            // Forbidden, method not allowed (no PUT), too large, full: the server is
            // up but will not take this write.
            s @ (401 | 403 | 405 | 409 | 413 | 507) => Err(RemoteError::Refused(format!("PUT answered HTTP {s}"))),
            s => Err(unavailable(format!("PUT answered HTTP {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Response, RemoteError> {
        read_response(&mut BufReader::new(bytes), false)
    }

    #[test]
    fn responses_parse() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!((r.status, r.body), (200, b"abc".to_vec()));
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1;x=y\r\nc\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abc".to_vec());
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nnothing").unwrap();
        assert_eq!(r.status, 404);
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").is_err(), "short body");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_err(), "not HTTP");
        assert!(parse(b"").is_err());
    }

    #[test]
    fn url_forms() {
        let h = Http::new("127.0.0.1:8080/cache/").unwrap();
        assert_eq!((h.host.as_str(), h.port, h.prefix.as_str()), ("127.0.0.1", 8080, "/cache"));
        assert_eq!(Http::new("h").unwrap().prefix, "");
        assert!(Http::new("u:p@h/x").is_err());
        assert!(Http::new("h/x?y").is_err());
    }
}
