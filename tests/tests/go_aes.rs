//! The Go AES function (faasd-templates/functions/aes/go): its own Go
//! tests, and the function built with `shunt go build` serving vSwarm's
//! reference vectors over HTTP, natively, exactly like a plain build.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shunt_tests::*;

const LIMIT: Duration = Duration::from_secs(600);

fn aes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faasd-templates/functions/aes/go")
}

fn go() -> Command {
    let mut c = Command::new("go");
    c.env("GOTOOLCHAIN", "local").env("CGO_ENABLED", "0").env_remove("GOFLAGS");
    c
}

#[test]
fn aes_go_test_passes() {
    let mut c = go();
    c.args(["test", "-count=1", "./..."]).current_dir(aes_dir());
    let o = run(c, None, LIMIT);
    assert!(o.status.success(), "go test in {} failed:\n{}{}", aes_dir().display(), o.stdout_str(), o.stderr_str());
    assert!(o.stdout_str().starts_with("ok "), "{}", o.stdout_str());
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(bin: &Path) -> (Server, u16) {
    let port = free_port();
    let child = Command::new(bin)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut server = Server(child);
    // Wait until it accepts connections (or has died).
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(server.0.try_wait().unwrap().is_none(), "{} exited before listening", bin.display());
        assert!(start.elapsed() < Duration::from_secs(60), "{} never listened on {port}", bin.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, port)
}

/// One HTTP/1.1 POST; returns (status line, body).
fn post(port: u16, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
}

#[test]
fn aes_built_with_shunt_serves_the_reference_vectors() {
    let shunt = target_dir().join("shunt");
    assert!(shunt.is_file(), "{} is missing: build the workspace first", shunt.display());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let plain = out.path().join("aes-plain");
    let shunted = out.path().join("aes-shunt");

    let mut c = go();
    c.arg("build").arg("-o").arg(&plain).arg(".").current_dir(aes_dir());
    let o = run(c, None, LIMIT);
    assert!(o.status.success(), "go build: {}", o.stderr_str());
    let mut c = Command::new(&shunt);
    c.args(["go", "build", "-o"]).arg(&shunted).arg(".").current_dir(aes_dir()).env("SHUNT_CACHE", cache.path()).env_remove("GOFLAGS");
    let o = run(c, None, LIMIT);
    assert!(o.status.success(), "shunt go build: {}", o.stderr_str());

    let vectors = [
        ("", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: golang"),
        ("world", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: golang"),
        ("A unique message", "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: golang"),
    ];
    for bin in [&plain, &shunted] {
        let (_server, port) = start(bin);
        for (input, want) in vectors {
            let (status, body) = post(port, input);
            assert!(status.ends_with("200 OK"), "{}: {input:?} -> {status}", bin.display());
            assert_eq!(body, want, "{}: {input:?}", bin.display());
        }
    }
}
