//! The C++ vSwarm AES function (`faasd-templates/functions/aes/cpp/`), built
//! with `shunt c++`, answers both reference vectors over HTTP on loopback,
//! natively (stand-alone stats) and under `shunt run`, with `trapped == 0`;
//! the same source built with plain g++ answers the same.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shunt_tests::*;

const VECTORS: [(&str, &str); 4] = [
    ("", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp"),
    ("world", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp"),
    ("defaultplaintext", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp"),
    ("A unique message", "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: cpp"),
];

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faasd-templates/functions/aes/cpp")
}

fn build(shunted: bool, out: &Path) {
    let src = source_dir();
    let mut cmd = if shunted {
        let mut c = Command::new(shunt());
        c.arg("c++");
        c
    } else {
        Command::new("g++")
    };
    cmd.args(["-O2", "-Wall", "-pthread", "-o"]).arg(out).arg(src.join("server.cpp")).arg(src.join("aes.cpp")).arg("-lcrypto");
    let o = cmd.output().expect("run the C++ compiler");
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Starts the server (PORT=0) and returns it with its port.
fn start(mut cmd: Command) -> (Child, u16) {
    cmd.env("PORT", "0").stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("start the AES server");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).expect("read the port line");
    let port = line.trim().strip_prefix("listening on port ").and_then(|p| p.parse().ok());
    let Some(port) = port else {
        let _ = child.kill();
        panic!("unexpected first line {line:?}");
    };
    (child, port)
}

/// One request on a keep-alive connection; returns the body.
fn post(conn: &mut TcpStream, path: &str, body: &str) -> String {
    let req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    conn.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("response header");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("content-length");
    let mut b = vec![0; len];
    conn.read_exact(&mut b).unwrap();
    String::from_utf8(b).unwrap()
}

fn exercise(port: u16) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    for round in 0..3 {
        for (pt, want) in VECTORS {
            assert_eq!(post(&mut conn, "/", pt), want, "round {round}, plaintext {pt:?}");
        }
    }
    assert_eq!(post(&mut conn, "/_/health", ""), "OK");
    // A second connection, closed by the client.
    let mut c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(post(&mut c2, "/function/aes", "A unique message"), VECTORS[3].1);
}

fn stop(mut child: Child, pid_to_signal: u32) -> std::process::ExitStatus {
    unsafe { libc::kill(pid_to_signal as i32, libc::SIGTERM) };
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the AES server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_stats(path: &Path) -> Stats {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no stats at {} ({e})", path.display()));
    Stats(serde_json::from_str(&text).unwrap())
}

fn assert_no_traps(what: &str, s: &Stats) {
    s.assert_accounted();
    assert_eq!(s.total("trapped"), 0, "{what}: trapped calls: {}", s.0);
    assert!(s.get("write", "redirected") + s.get("sendto", "redirected") > 0, "{what}: {}", s.0);
    assert!(s.get("accept4", "redirected") > 0, "{what}: {}", s.0);
}

#[test]
fn aes_over_http_native_and_under_shunt() {
    let tmp = tempfile::tempdir().unwrap();
    let shunted = tmp.path().join("aes");
    let plain = tmp.path().join("aes-native");
    build(true, &shunted);
    build(false, &plain);

    // Plain g++ build: the reference.
    let (child, port) = start(Command::new(&plain));
    exercise(port);
    let pid = child.id();
    assert!(stop(child, pid).success());

    // shunt c++ build, run natively with stand-alone stats.
    let stats = tmp.path().join("native.json");
    let mut cmd = Command::new(&shunted);
    cmd.env("SHUNT_STATS", &stats);
    let (child, port) = start(cmd);
    exercise(port);
    let pid = child.id();
    assert!(stop(child, pid).success());
    assert_no_traps("shunt c++ build, natively", &read_stats(&stats));

    // The same binary under `shunt run` (SIGTERM to the supervisor is
    // forwarded to the program).
    let stats = tmp.path().join("run.json");
    let mut cmd = Command::new(shunt());
    cmd.arg("run").arg("--stats").arg(&stats).arg("--").arg(&shunted);
    let (child, port) = start(cmd);
    exercise(port);
    let pid = child.id();
    assert!(stop(child, pid).success());
    assert_no_traps("shunt c++ build, shunt run", &read_stats(&stats));
}

#[test]
fn aes_once_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("aes");
    build(true, &exe);
    for (pt, want) in VECTORS {
        let out = native(&[exe.to_str().unwrap(), "--once", pt], None);
        assert!(out.status.success(), "{}", out.stderr_str());
        assert_eq!(out.stdout_str(), format!("{want}\n"));
    }
}
