//! The benchmark's measuring client: one HTTP/1.1 keep-alive connection,
//! each request written in one `write`, the response head parsed by
//! httparse and the body read up to its Content-Length (or chunked end).
//!
//! Why not a full HTTP client here: on this machine ureq added ~400 µs to a
//! loopback request whose raw exchange takes ~30 µs (measured), which would
//! swamp the latencies being compared. The instrument has to cost less than
//! what it measures; everything else in shunt uses ureq.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

pub struct Conn {
    stream: TcpStream,
    host: String,
    /// Bytes read but not yet consumed (a response may arrive in pieces).
    buf: Vec<u8>,
    /// A response header to keep ([`Conn::watch`]), and its value in the
    /// last response.
    watch: Option<&'static str>,
    watched: Option<String>,
}

/// How the response body is framed.
enum Framing {
    Length(usize),
    Chunked,
}

impl Conn {
    pub fn connect(host: &str, port: u16) -> Result<Conn> {
        let stream = TcpStream::connect((host, port)).with_context(|| format!("cannot connect to {host}:{port}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn { stream, host: format!("{host}:{port}"), buf: Vec::with_capacity(8192), watch: None, watched: None })
    }

    /// Keeps the value of response header `name` (lower case) of every
    /// response, for [`Conn::watched`].
    pub fn watch(&mut self, name: &'static str) {
        self.watch = Some(name);
    }

    /// The watched header's value in the last response, if it had one.
    pub fn watched(&self) -> Option<&str> {
        self.watched.as_deref()
    }

    /// POSTs `body` to `path`; returns (status, response body).
    pub fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req)?;
        self.read_response()
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).context("reading the answer (each read waits at most 30 s)")?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads the response head; returns the status and the body's framing.
    fn read_head(&mut self) -> Result<(u16, Framing)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf).context("malformed HTTP response")? {
                httparse::Status::Partial => self.fill()?,
                httparse::Status::Complete(head_len) => {
                    let status = resp.code.ok_or_else(|| anyhow!("response without a status code"))?;
                    let value = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
                    };
                    let framing = if value("transfer-encoding").is_some_and(|v| v == "chunked") {
                        Framing::Chunked
                    } else if let Some(v) = value("content-length") {
                        Framing::Length(v.parse().map_err(|_| anyhow!("bad Content-Length: {v}"))?)
                    } else {
                        bail!("response without Content-Length or chunked encoding")
                    };
                    self.watched = self.watch.and_then(|w| value(w));
                    self.buf.drain(..head_len);
                    return Ok((status, framing));
                }
            }
        }
    }

    /// Consumes exactly `n` buffered-or-read bytes.
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_response(&mut self) -> Result<(u16, Vec<u8>)> {
        let (status, framing) = self.read_head()?;
        match framing {
            Framing::Length(len) => Ok((status, self.take(len)?)),
            Framing::Chunked => {
                let mut body = Vec::new();
                loop {
                    let (consumed, size) = loop {
                        match httparse::parse_chunk_size(&self.buf).map_err(|_| anyhow!("bad chunk size line"))? {
                            httparse::Status::Complete(c) => break c,
                            httparse::Status::Partial => self.fill()?,
                        }
                    };
                    self.buf.drain(..consumed);
                    let size = usize::try_from(size).map_err(|_| anyhow!("chunk too large"))?;
                    // The chunk's data and its CRLF; after the last (empty)
                    // chunk, the CRLF that ends the (empty) trailer section.
                    let mut chunk = self.take(size + 2)?;
                    chunk.truncate(size);
                    body.extend_from_slice(&chunk);
                    if size == 0 {
                        return Ok((status, body));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers each request with `replies` in turn.
    fn serve(replies: Vec<&'static [u8]>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for r in replies {
                let mut b = [0u8; 4096];
                let _ = s.read(&mut b).unwrap();
                // Dribble the reply so the client's partial-parse paths run.
                for piece in r.chunks(7) {
                    s.write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        port
    }

    #[test]
    fn reads_length_and_chunked_bodies_on_one_connection() {
        let port = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 504 Gateway Timeout\r\ncontent-length: 0\r\n\r\n",
        ]);
        let mut c = Conn::connect("127.0.0.1", port).unwrap();
        c.watch("content-length");
        assert_eq!(c.post("/", b"x").unwrap(), (200, b"hello".to_vec()));
        assert_eq!(c.watched(), Some("5"));
        assert_eq!(c.post("/", b"y").unwrap(), (201, b"abcde".to_vec()));
        assert_eq!(c.watched(), None);
        assert_eq!(c.post("/", b"z").unwrap(), (504, Vec::new()));
    }

    #[test]
    fn refuses_unframed_and_closed_responses() {
        let port = serve(vec![b"HTTP/1.1 200 OK\r\n\r\nbody"]);
        let mut c = Conn::connect("127.0.0.1", port).unwrap();
        let e = c.post("/", b"x").unwrap_err().to_string();
        assert!(e.contains("without Content-Length"), "{e}");
        let port = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]);
        let mut c = Conn::connect("127.0.0.1", port).unwrap();
        let e = c.post("/", b"x").unwrap_err().to_string();
        assert!(e.contains("closed"), "{e}");
    }
}
