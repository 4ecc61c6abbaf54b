//! The bypass transport under tokio and hyper, the stack of the daemon's own
//! gateway (`tests/programs/tokio_http`: mio's edge-triggered epoll, whose
//! sockets are registered through a `F_DUPFD_CLOEXEC` copy of the epoll fd
//! it waits on, a non-blocking connect answered by `EPOLLOUT` then
//! `SO_ERROR`, hyper-util's pooled client). Each case runs natively (the
//! kernel is the oracle) and under `shunt run --transport shm`, with the same
//! transcript and exit status, and the stats' connection counts equal to the
//! connections the programs made:
//!
//! - client and server in one tokio process (keep-alive, fresh, 32
//!   concurrent requests, a 16 MiB body);
//! - a tokio client of a Go `net/http` server (`tests/gofixtures/loopback`)
//!   and of a glibc server in the style of the cpp-shunt front
//!   (`tests/programs/http_echo.c`), each end its own shunt instance.
//!
//! Before the shadow epoll table named sets by their epoll instance rather
//! than by fd number, the first case failed under shunt ("tcp connect error:
//! deadline has elapsed": the connect's `EPOLLOUT` arrived on the fd tokio
//! waits on, registered under the other) and the daemon's gateway hung.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use shunt_tests::*;

fn tokio_http() -> String {
    program(env!("CARGO_BIN_EXE_tokio_http"))
}

/// (shm_connections, kernel_connections, shm_bytes) of a stats report.
fn transport(s: &Stats) -> (u64, u64, u64) {
    let t = &s.0["transport"];
    let n = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    (n("shm_connections"), n("kernel_connections"), n("shm_bytes"))
}

#[test]
fn tokio_client_and_server_in_one_process_over_rings() {
    let exe = tokio_http();
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("accepted-native");
    let reference = native(&[exe.as_str(), "all", count.to_str().unwrap()], None);
    assert!(reference.status.success(), "natively: {}{}", reference.stdout_str(), reference.stderr_str());
    assert!(reference.stdout_str().ends_with("done\n"), "{}", reference.stdout_str());
    for spin in ["auto", "off"] {
        let count = dir.path().join(format!("accepted-{spin}"));
        let (out, stats) =
            under_shunt(&[exe.as_str(), "all", count.to_str().unwrap()], None, &["--transport", "shm", "--spin", spin]);
        assert_same(&format!("tokio_http all, --transport shm --spin {spin}"), &reference, &out);
        let accepted: u64 = std::fs::read_to_string(&count).unwrap().trim().parse().unwrap();
        assert!(accepted >= 21, "keep-alive, 20 fresh and concurrent connections: {accepted}");
        let (shm, kernel, bytes) = transport(&stats);
        assert_eq!((shm, kernel), (2 * accepted, 0), "spin {spin}: {}", stats.0["transport"]);
        assert!(bytes >= 32 << 20, "the 16 MiB body and its echo went over the rings: {}", stats.0["transport"]);
    }
}

/// Runs `server` (which prints its address first and stops on /quit) and
/// the tokio client of it, natively or each under its own `shunt run
/// --transport shm`; returns the outcomes and, under shunt, both stats.
fn pair(server: &[&str], under: bool) -> (Outcome, Outcome, Option<(Stats, Stats)>) {
    let dir = tempfile::tempdir().unwrap();
    let (ss, cs) = (dir.path().join("server.json"), dir.path().join("client.json"));
    let wrap = |stats: &PathBuf, argv: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if under {
            v.push(shunt().to_str().unwrap().to_string());
            v.extend(["run", "--stats", stats.to_str().unwrap(), "--transport", "shm", "--spin", "auto", "--"].map(String::from));
        }
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    };
    let sargv = wrap(&ss, server);
    let mut child = Command::new(&sargv[0])
        .args(&sargv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{sargv:?}: {e}"));
    let mut sout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = String::new();
    sout.read_line(&mut addr).unwrap();
    assert!(!addr.is_empty(), "the server {sargv:?} exited before it listened");
    let exe = tokio_http();
    let cargv = wrap(&cs, &[exe.as_str(), "client", addr.trim(), "100"]);
    let cargv: Vec<&str> = cargv.iter().map(String::as_str).collect();
    let client = native(&cargv, None);
    if !client.status.success() {
        let _ = child.kill();
    }
    let mut rest = Vec::new();
    sout.read_to_end(&mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    let server = Outcome { status: o.status, stdout: rest, stderr: o.stderr };
    let stats = under.then(|| {
        let read = |p: &PathBuf| Stats::parse(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        (read(&ss), read(&cs))
    });
    (server, client, stats)
}

/// A tokio client of `server` (natively, then both under shunt): the same
/// transcripts, one connection over rings counted at each end.
fn tokio_client_of(what: &str, plain: &[&str], shunted: &[&str]) {
    let (rs, rc, _) = pair(plain, false);
    assert!(rs.status.success() && rc.status.success(), "{what} natively: {}{}", rc.stdout_str(), rs.stderr_str());
    assert!(rc.stdout_str().contains("client: quit 200 - bye"), "{what}: {}", rc.stdout_str());
    let (s, c, stats) = pair(shunted, true);
    assert_same(&format!("{what}, tokio client under shunt"), &rc, &c);
    assert_same(&format!("{what} under shunt"), &rs, &s);
    let (ss, cs) = stats.unwrap();
    // hyper's pool may open a second connection when the first is not
    // back in the pool yet; each is counted once at each end.
    let (cshm, ckernel, _) = transport(&cs);
    assert!(cshm >= 1 && ckernel == 0, "client: {}", cs.0["transport"]);
    assert_eq!((transport(&ss).0, transport(&ss).1), (cshm, 0), "server: {}, client: {}", ss.0["transport"], cs.0["transport"]);
    assert!(transport(&cs).2 > 0 && transport(&ss).2 > 0, "{} {}", cs.0["transport"], ss.0["transport"]);
}

#[test]
fn tokio_client_of_a_go_server_over_rings() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loopback", dir.path());
    tokio_client_of("Go net/http server", &[plain.as_str(), "serve", "-"], &[shunted.as_str(), "serve", "-"]);
}

#[test]
fn tokio_client_of_a_glibc_server_over_rings() {
    let server = program(env!("PROG_HTTP_ECHO"));
    tokio_client_of("glibc thread-per-connection server", &[server.as_str()], &[server.as_str()]);
}
