//! The bypass transport under real programs: Python's asyncio
//! (`tests/programs/asyncio_echo.py`) natively (the kernel is the oracle)
//! and under `shunt run --transport shm`, in one process and as two
//! instances, with the same transcript and exit status and the stats'
//! connection counts equal to the connections the program makes. A shunt
//! process and a plain one never upgrade: a shunt client of a plain server
//! and a plain client of a shunt server (Go's HTTP client and server,
//! `tests/gofixtures/loopback`) are kernel TCP (`shm_connections == 0`) with
//! the same behaviour.
//!
//! Go programs with both ends on rings (`go_loopback_over_rings`): Go (1.24
//! on) makes its listeners `IPPROTO_MPTCP` sockets, which the transport now
//! adopts (on loopback they are plain TCP underneath); the fixture's every
//! scenario (HTTP keep-alive, fresh and 32 concurrent requests, 200
//! connections at once, 64 MiB checked by SHA-256, half-close, deadlines,
//! reset) runs natively and over rings with the same transcript.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use shunt_tests::*;

const PYTHON: &str = "/usr/bin/python3";

/// (shm_connections, kernel_connections, shm_bytes) of a stats report.
fn transport(s: &Stats) -> (u64, u64, u64) {
    let t = &s.0["transport"];
    let n = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    (n("shm_connections"), n("kernel_connections"), n("shm_bytes"))
}


/// A server that prints its address as its first line (`-` as the address
/// file), and the client started once it did.
struct Pair {
    server: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

fn start_server(argv: &[&str]) -> Pair {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut server = cmd.spawn().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let out = BufReader::new(server.stdout.take().unwrap());
    Pair { server, out }
}

impl Pair {
    /// The first line: the address (or port) it listens on.
    fn addr(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the server exited before it listened");
        line.trim().to_string()
    }

    /// The rest of its output and its exit (bounded by the client having
    /// told it to stop; the test's own limit is the harness's).
    fn finish(mut self) -> Outcome {
        let mut rest = Vec::new();
        self.out.read_to_end(&mut rest).unwrap();
        let o = self.server.wait_with_output().unwrap();
        Outcome { status: o.status, stdout: rest, stderr: o.stderr }
    }
}

fn shunt_argv<'a>(stats: &'a str, transport: &'a str, argv: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--stats", stats, "--transport", transport, "--spin", "auto", "--"];
    v.extend_from_slice(argv);
    v
}

/// Runs the Go HTTP server and client as two processes, each natively or
/// under shunt; returns (server outcome, client outcome, server stats,
/// client stats).
fn go_pair(plain: &str, shunted: &str, server_shunt: bool, client_shunt: bool) -> (Outcome, Outcome, Option<Stats>, Option<Stats>) {
    let dir = tempfile::tempdir().unwrap();
    let (ss, cs) = (dir.path().join("server.json"), dir.path().join("client.json"));
    let (ss_s, cs_s) = (ss.to_str().unwrap().to_string(), cs.to_str().unwrap().to_string());
    let shunt_exe = shunt();
    let shunt_s = shunt_exe.to_str().unwrap();
    let af = "-";
    let server_argv: Vec<&str> = if server_shunt {
        let mut v = vec![shunt_s];
        v.extend(shunt_argv(&ss_s, "shm", &[shunted, "serve", af]));
        v
    } else {
        vec![plain, "serve", af]
    };
    let mut pair = start_server(&server_argv);
    let addr = pair.addr();
    let client_argv: Vec<&str> = if client_shunt {
        let mut v = vec![shunt_s];
        v.extend(shunt_argv(&cs_s, "shm", &[shunted, "client", &addr, "100"]));
        v
    } else {
        vec![plain, "client", &addr, "100"]
    };
    let client = native(&client_argv, None);
    let server = pair.finish();
    let stats = |p: &Path, on: bool| on.then(|| Stats::parse(&std::fs::read_to_string(p).unwrap()));
    (server, client, stats(&ss, server_shunt), stats(&cs, client_shunt))
}

#[test]
fn shunt_and_plain_peers_stay_on_kernel_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loopback", dir.path());
    let (rs, rc, _, _) = go_pair(&plain, &shunted, false, false);
    assert!(rs.status.success() && rc.status.success(), "natively: {} {}", rs.stderr_str(), rc.stderr_str());
    assert!(rc.stdout_str().contains("client: quit bye"), "{}", rc.stdout_str());

    // A shunt client of a plain server.
    let (s, c, _, cstats) = go_pair(&plain, &shunted, false, true);
    assert_same("plain server, shunt client: server", &rs, &s);
    assert_same("plain server, shunt client: client", &rc, &c);
    let cstats = cstats.unwrap();
    let (shm, kernel, bytes) = transport(&cstats);
    assert_eq!((shm, bytes), (0, 0), "a plain server is never upgraded: {}", cstats.0["transport"]);
    assert!(kernel >= 1, "the client's connection counted as kernel TCP: {}", cstats.0["transport"]);

    // A plain client of a shunt server.
    let (s, c, sstats, _) = go_pair(&plain, &shunted, true, false);
    assert_same("shunt server, plain client: server", &rs, &s);
    assert_same("shunt server, plain client: client", &rc, &c);
    let sstats = sstats.unwrap();
    let (shm, _, bytes) = transport(&sstats);
    assert_eq!((shm, bytes), (0, 0), "a plain client is never upgraded: {}", sstats.0["transport"]);
    assert!(transport(&sstats).1 >= 1, "the accepted connection counted as kernel TCP: {}", sstats.0["transport"]);

}

#[test]
fn python_asyncio_echo_over_rings() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs").join("asyncio_echo.py");
    let script = script.to_str().unwrap();
    // One process holding both ends.
    let argv = [PYTHON, script, "both", "20", "30"];
    let reference = native(&argv, None);
    assert!(reference.status.success(), "asyncio natively: {}", reference.stderr_str());
    let (out, stats) = under_shunt(&argv, None, &["--transport", "shm", "--spin", "auto"]);
    assert_same("asyncio both, --transport shm", &reference, &out);
    assert_eq!(transport(&stats).0, 2 * 20, "{}", stats.0["transport"]);
    assert_eq!(transport(&stats).1, 0, "{}", stats.0["transport"]);

    // Server and client in two shunt instances, against both natively.
    let dir = tempfile::tempdir().unwrap();
    let run_pair = |under: bool| -> (Outcome, Outcome, Option<(Stats, Stats)>) {
        let (ss, cs) = (dir.path().join(format!("s-{under}.json")), dir.path().join(format!("c-{under}.json")));
        let (ss_s, cs_s) = (ss.to_str().unwrap().to_string(), cs.to_str().unwrap().to_string());
        let pf = "-".to_string();
        let shunt_exe = shunt();
        let shunt_s = shunt_exe.to_str().unwrap().to_string();
        let server_argv: Vec<&str> = if under {
            let mut v = vec![shunt_s.as_str()];
            v.extend(shunt_argv(&ss_s, "shm", &[PYTHON, script, "server", &pf, "10"]));
            v
        } else {
            vec![PYTHON, script, "server", &pf, "10"]
        };
        let mut pair = start_server(&server_argv);
        let port = pair.addr();
        let client_argv: Vec<&str> = if under {
            let mut v = vec![shunt_s.as_str()];
            v.extend(shunt_argv(&cs_s, "shm", &[PYTHON, script, "client", &port, "10", "25"]));
            v
        } else {
            vec![PYTHON, script, "client", &port, "10", "25"]
        };
        let client = native(&client_argv, None);
        let server = pair.finish();
        let stats = under.then(|| {
            (Stats::parse(&std::fs::read_to_string(&ss).unwrap()), Stats::parse(&std::fs::read_to_string(&cs).unwrap()))
        });
        (server, client, stats)
    };
    let (rs, rc, _) = run_pair(false);
    assert!(rs.status.success() && rc.status.success(), "natively: {} {}", rs.stderr_str(), rc.stderr_str());
    let (s, c, stats) = run_pair(true);
    assert_same("asyncio server in its own instance", &rs, &s);
    assert_same("asyncio client in its own instance", &rc, &c);
    let (ss, cs) = stats.unwrap();
    assert_eq!(transport(&ss).0, 10, "server: {}", ss.0["transport"]);
    assert_eq!(transport(&cs).0, 10, "client: {}", cs.0["transport"]);
    assert!(transport(&cs).2 > 0 && transport(&ss).2 > 0);
}

#[test]
fn go_loopback_over_rings() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, shunted) = build_go_fixture_pair("loopback", dir.path());
    let reference = native(&[plain.as_str(), "all"], None);
    assert!(reference.status.success(), "natively: {}", reference.stderr_str());
    for spin in ["auto", "off"] {
        let count = dir.path().join(format!("accepted-{spin}"));
        let count_s = count.to_str().unwrap();
        let (out, stats) = under_shunt(&[shunted.as_str(), "all", count_s], None, &["--transport", "shm", "--spin", spin]);
        assert_same(&format!("loopback all, --transport shm --spin {spin}"), &reference, &out);
        let counts = std::fs::read_to_string(&count).unwrap();
        let (accepted, dialed): (u64, u64) = match counts.split_whitespace().map(|v| v.parse().unwrap()).collect::<Vec<u64>>()[..] {
            [a, d] => (a, d),
            _ => panic!("the fixture's counts: {counts:?}"),
        };
        assert!(dialed >= accepted && accepted > 200, "fixture counts: {counts}");
        let (shm, kernel, bytes) = transport(&stats);
        // Both ends of every connection are this process's: each dialed
        // connection is a connector end, each accepted one an acceptor end
        // (Go's HTTP client may dial connections nobody accepts), all on
        // rings.
        assert_eq!((shm, kernel), (dialed + accepted, 0), "spin {spin}, accepted {accepted}, dialed {dialed}: {}", stats.0["transport"]);
        assert!(bytes >= 64 << 20, "the bulk transfer went over the rings: {}", stats.0["transport"]);
    }
}
