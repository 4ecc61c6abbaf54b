//! A small HTTP/1.1 client for the front tests: exact control over what is
//! sent (keep-alive, pipelining, partial requests) and over what came back
//! (status, headers, Content-Length or chunked bodies, a server's close).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const READ_LIMIT: Duration = Duration::from_secs(60);

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection (keep-alive unless told otherwise).
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        Conn::try_open(port).unwrap_or_else(|e| panic!("connect to port {port}: {e}"))
    }

    pub fn try_open(port: u16) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(READ_LIMIT))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::new() })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a request with Host and Content-Length plus `headers`.
    pub fn send_request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        self.send(&all);
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.send_request(method, path, headers, body);
        self.read_response(method == "HEAD").unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(format!("connection closed; got {:?}", String::from_utf8_lossy(&self.buf))),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("receive: {e}")),
        }
    }

    /// Reads until `buf` holds `n` bytes.
    fn fill_to(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(())
    }

    /// Reads through the next CRLF and returns the line without it.
    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(l);
            }
            self.fill()?;
        }
    }

    /// Reads one response (1xx interim responses are returned as such).
    pub fn read_response(&mut self, head_only: bool) -> Result<Response, String> {
        let status_line = self.line()?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let l = self.line()?;
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut r = Response { status, headers, body: Vec::new() };
        if head_only || status < 200 || status == 204 || status == 304 {
            return Ok(r);
        }
        if r.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            loop {
                let size = self.line()?;
                let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|e| format!("chunk size {size:?}: {e}"))?;
                if n == 0 {
                    // Trailers, up to the empty line.
                    while !self.line()?.is_empty() {}
                    return Ok(r);
                }
                self.fill_to(n + 2)?;
                r.body.extend(self.buf.drain(..n));
                self.buf.drain(..2);
            }
        }
        match r.header("content-length") {
            Some(v) => {
                let n: usize = v.parse().map_err(|_| format!("bad content-length {v:?}"))?;
                self.fill_to(n)?;
                r.body = self.buf.drain(..n).collect();
            }
            None => {
                // Delimited by the end of the stream.
                while self.fill().is_ok() {}
                r.body = std::mem::take(&mut self.buf);
            }
        }
        Ok(r)
    }

    /// Whether the server closed the connection (EOF within `limit`).
    pub fn closed_by_server(&mut self, limit: Duration) -> bool {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        let mut chunk = [0u8; 4096];
        let r = self.stream.read(&mut chunk);
        if let Ok(n) = r {
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.stream.set_read_timeout(Some(READ_LIMIT)).unwrap();
        matches!(r, Ok(0)) || matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

/// One request on a new connection (Connection: close).
pub fn call(port: u16, method: &str, path: &str, body: &[u8]) -> Response {
    try_call(port, method, path, body).unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

pub fn try_call(port: u16, method: &str, path: &str, body: &[u8]) -> Result<Response, String> {
    let mut c = Conn::try_open(port).map_err(|e| format!("connect: {e}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(body);
    c.stream.write_all(&head).map_err(|e| format!("send: {e}"))?;
    c.read_response(method == "HEAD")
}

/// Sends a request (Connection: close) and returns every byte the server
/// sent until it closed.
pub fn exchange(port: u16, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut c = Conn::try_open(port).map_err(|e| format!("connect: {e}"))?;
    c.send_request(method, path, &[("Connection", "close")], body);
    let mut raw = Vec::new();
    c.stream.read_to_end(&mut raw).map_err(|e| format!("receive: {e}"))?;
    Ok(raw)
}
