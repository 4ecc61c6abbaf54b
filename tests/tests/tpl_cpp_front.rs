//! The cpp-shunt front (`faasd-templates/template/cpp-shunt/front/`): of-watchdog's
//! http-mode contract, with a test handler shrink-wrapped over the template.
//! Each behaviour runs twice: built with g++ and run natively, and built with
//! `shunt c++` and run under `shunt run` (then with zero trapped calls);
//! the HTTP basics also with the shunt build run directly (libshunt.so only).
//! Timing checks have wide margins (2 shared cores, builds alongside).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "support/cpp_shunt.rs"]
mod util;

use util::*;

/// A handler exercising the front: /sleep?ms=N[&mark=FILE] (the file is
/// created when the handler starts), /echo, /status?code=N, /throw,
/// /big?n=N; anything else answers "Body: " and the body.
const TEST_HANDLER: &str = r#"
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "faas.hpp"

faas::Response handle(const faas::Request& req) {
    if (req.path == "/sleep") {
        std::string mark = req.query_param("mark");
        if (!mark.empty()) std::ofstream(mark) << "started\n";
        int ms = std::stoi(req.query_param("ms"));
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return faas::Response(200, "slept " + std::to_string(ms));
    }
    if (req.path == "/echo") {
        return faas::Response(200, req.method + "|" + req.path + "|" + req.query + "|" + req.header("x-test") + "|" +
                                       std::to_string(req.body.size()) + "|" + req.body);
    }
    if (req.path == "/status") {
        faas::Response r(std::stoi(req.query_param("code")), "custom");
        r.headers.add("X-Custom", "yes");
        r.headers.add("Set-Cookie", "a=1");
        r.headers.add("Set-Cookie", "b=2");
        r.headers.add("Content-Type", "application/x-test");
        r.headers.add("X-Bad", "no\r\nInjected: 1");
        return r;
    }
    if (req.path == "/throw") throw std::runtime_error("boom");
    if (req.path == "/big") return faas::Response(200, std::string(std::stoul(req.query_param("n")), 'x'));
    return faas::Response(200, "Body: " + req.body);
}
"#;

fn handler_src() -> &'static Path {
    static SRC: OnceLock<PathBuf> = OnceLock::new();
    SRC.get_or_init(|| handler_dir("front-handler", &[("handler.cpp", TEST_HANDLER)]))
}

fn bin(v: Mode) -> PathBuf {
    built("front", handler_src(), v.built_with_shunt())
}

fn start_healthy(v: Mode, env: &[(&str, &str)]) -> Server {
    let s = start_front(&bin(v), v, env);
    s.wait_healthy();
    s
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ------------------------------------------------------------------ tests

fn http_basics(v: Mode) {
    let mut s = start_healthy(v, &[]);
    let port = s.port;

    // Keep-alive: several requests on one connection; query, header, body.
    let mut c = Conn::open(port);
    for i in 0..3 {
        let body = format!("hello {i}");
        let r = c.request("POST", "/echo?a=1&b=x%20y", &[("X-Test", "hdr")], body.as_bytes());
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("POST|/echo|a=1&b=x%20y|hdr|7|{body}"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.header("date").is_some() && r.header("x-duration-seconds").is_some(), "{r:?}");
        assert_eq!(r.header("connection"), None);
    }

    // Two pipelined requests in one write, answered in order.
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nonePOST /echo?2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo");
    assert_eq!(c.read_response(false).unwrap().text(), "POST|/echo|||3|one");
    assert_eq!(c.read_response(false).unwrap().text(), "POST|/echo|2||3|two");

    // A chunked body (what the stock of-watchdog forwards), with an
    // extension and a trailer; the connection stays usable.
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().text(), "POST|/echo|||11|hello world");
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).unwrap().text(), "POST|/echo|||0|");

    // Expect: 100-continue.
    c.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response(false).unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"12345");
    assert_eq!(c.read_response(false).unwrap().text(), "PUT|/echo|||5|12345");

    // HEAD: the length of the body, not the body.
    let r = c.request("HEAD", "/echo", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("15"), "{r:?}"); // "HEAD|/echo|||0|"
    assert_eq!(c.request("GET", "/echo", &[], b"").text(), "GET|/echo|||0|");

    // The handler's status and fields; CR/LF in a value drops the field.
    let r = c.request("GET", "/status?code=201", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (201, "custom"));
    assert_eq!(r.header("x-custom"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert_eq!(r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).count(), 2);
    assert!(r.header("x-bad").is_none() && r.header("injected").is_none(), "{r:?}");
    let r = c.request("GET", "/status?code=204", &[], b"");
    assert_eq!(r.status, 204);
    assert!(r.header("content-length").is_none(), "{r:?}");
    assert_eq!(c.request("GET", "/status?code=99", &[], b"").status, 500);
    let r = c.request("GET", "/throw", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (500, "boom"));
    // /_/ paths other than health and ready are the function's.
    assert_eq!(c.request("POST", "/_/other", &[], b"x").text(), "Body: x");

    // Large bodies both ways.
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| b'a' + (i % 26) as u8).collect();
    let r = c.request("POST", "/echo", &[], &big);
    assert_eq!(r.body.len(), "POST|/echo|||1048576|".len() + big.len());
    assert!(r.body.ends_with(&big[big.len() - 1000..]));
    let r = c.request("GET", "/big?n=3000000", &[], b"");
    assert_eq!(r.body.len(), 3_000_000);
    assert!(r.body.iter().all(|&b| b == b'x'));

    // Connection: close, and HTTP/1.0 (closes unless keep-alive is asked).
    let r = c.request("GET", "/echo", &[("Connection", "close")], b"");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server(Duration::from_secs(10)));
    let mut c10 = Conn::open(port);
    c10.send(b"GET /echo HTTP/1.0\r\n\r\n");
    assert_eq!(c10.read_response(false).unwrap().text(), "GET|/echo|||0|");
    assert!(c10.closed_by_server(Duration::from_secs(10)));
    let mut c10 = Conn::open(port);
    c10.send(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c10.read_response(false).unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c10.send(b"GET /echo?again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c10.read_response(false).unwrap().text(), "GET|/echo|again||0|");

    // Malformed requests: an answer, then the connection closes.
    for (raw, status) in [
        (&b"GARBAGE\r\n\r\n"[..], 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ] {
        let mut b = Conn::open(port);
        b.send(raw);
        let r = b.read_response(false).unwrap();
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(raw));
        assert!(b.closed_by_server(Duration::from_secs(10)));
    }

    // Concurrent clients, each on its own keep-alive connection.
    let workers: Vec<_> = (0..6)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Conn::open(port);
                for i in 0..25 {
                    let body = format!("w{w}-{i}");
                    let r = c.request("POST", "/", &[], body.as_bytes());
                    assert_eq!(r.text(), format!("Body: {body}"));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread failed");
    }
    s.stop();
}

fn health_and_lock(v: Mode) {
    let mut s = spawn_front(&bin(v), v, &[]);
    // The lock appears once the front listens; health is 200 with it.
    let start = Instant::now();
    while !s.lock().exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no lock file:\n{}", s.stderr());
        assert!(s.try_wait().is_none(), "the front exited:\n{}", s.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    s.wait_listening();
    let r = s.wait_status("/_/health", 200, Duration::from_secs(30));
    assert_eq!(r.text(), "OK");
    assert_eq!(call(s.port, "GET", "/_/ready", b"").status, 200);
    assert_eq!(call(s.port, "POST", "/_/health", b"").status, 405);
    assert_eq!(call(s.port, "PUT", "/_/ready", b"").status, 405);
    assert_eq!(call(s.port, "HEAD", "/_/health", b"").status, 405);
    // Without the lock: 503 (empty), while the function still answers.
    std::fs::remove_file(s.lock()).unwrap();
    let r = call(s.port, "GET", "/_/health", b"");
    assert_eq!((r.status, r.body.len()), (503, 0));
    assert_eq!(call(s.port, "GET", "/_/ready", b"").status, 503);
    assert_eq!(call(s.port, "POST", "/", b"still").text(), "Body: still");
    std::fs::write(s.lock(), b"").unwrap();
    assert_eq!(call(s.port, "GET", "/_/health", b"").status, 200);
    s.stop();
    assert!(!s.lock().exists(), "the lock file outlived the front");
}

fn exec_timeout_answers_504(v: Mode) {
    let mut s = start_healthy(v, &[("exec_timeout", "1")]);
    let port = s.port;
    let mut slow = Conn::open(port);
    // The handler sleeps far longer than any machine's delay, so "before it
    // ends" is a behavioural bound, not a timing one.
    let handler = Duration::from_secs(60);
    let t = Instant::now();
    let r = slow.request("GET", "/sleep?ms=60000", &[], b"");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.header("x-duration-seconds").is_some());
    assert!(took >= Duration::from_millis(900), "504 after {:.2}s, before exec_timeout", secs(took));
    assert!(slow.closed_by_server(Duration::from_secs(10)), "the 504's connection stayed open");
    // The handler still sleeps on its thread; the front answers others.
    assert_eq!(call(port, "POST", "/echo", b"meanwhile").text(), "POST|/echo|||9|meanwhile");
    assert_eq!(call(port, "GET", "/sleep?ms=200", b"").text(), "slept 200");
    assert!(t.elapsed() < handler, "the front waited for the timed-out handler");
    // Stopping does not wait for the handler past its timeout (it was answered).
    s.stop();
    assert!(t.elapsed() < handler, "stop waited for the timed-out handler");

    // exec_timeout=0: no limit.
    let mut s = start_healthy(v, &[("exec_timeout", "0")]);
    let r = call(s.port, "GET", "/sleep?ms=1500", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "slept 1500"));
    s.stop();
}

fn max_inflight_answers_429(v: Mode) {
    let mut s = start_healthy(v, &[("max_inflight", "2"), ("exec_timeout", "30s")]);
    let port = s.port;
    let marks: Vec<PathBuf> = (0..2).map(|i| s.dir.path().join(format!("mark{i}"))).collect();
    let busy: Vec<_> = marks
        .iter()
        .map(|m| {
            let path = format!("/sleep?ms=3000&mark={}", m.display());
            std::thread::spawn(move || call(port, "GET", &path, b""))
        })
        .collect();
    let start = Instant::now();
    while !marks.iter().all(|m| m.exists()) {
        assert!(start.elapsed() < Duration::from_secs(20), "the two slow handlers did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = call(port, "POST", "/echo", b"third");
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), "Concurrent request limit exceeded. Max concurrent requests: 2\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(call(port, "GET", "/_/ready", b"").status, 429);
    assert_eq!(call(port, "GET", "/_/health", b"").status, 200);
    for b in busy {
        let r = b.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "slept 3000"));
    }
    assert_eq!(call(port, "GET", "/_/ready", b"").status, 200);
    assert_eq!(call(port, "POST", "/echo", b"again").status, 200);
    s.stop();
}

fn drain_on_sigterm(v: Mode) {
    let interval = Duration::from_secs(3);
    let mut s = start_healthy(v, &[("healthcheck_interval", "3s"), ("write_timeout", "10s"), ("exec_timeout", "30s")]);
    let port = s.port;
    // A: in flight across the whole drain.
    let mark = s.dir.path().join("mark");
    let path = format!("/sleep?ms=5000&mark={}", mark.display());
    let a = std::thread::spawn(move || {
        let r = call(port, "GET", &path, b"");
        (r, Instant::now())
    });
    // B: an idle keep-alive connection.
    let mut b = Conn::open(port);
    assert_eq!(b.request("POST", "/", &[], b"b").text(), "Body: b");
    wait_file(&mark, Duration::from_secs(20)); // the slow handler started

    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    // Unhealthy at once, lock gone; requests still served.
    s.wait_status("/_/health", 503, Duration::from_secs(2));
    assert_eq!(call(port, "GET", "/_/ready", b"").status, 503);
    assert!(!s.lock().exists(), "the lock file is still there after SIGTERM");
    // A new connection, so served during the interval: after it the
    // listener refuses connections (checked next).
    let r = call(port, "POST", "/echo", b"late");
    assert_eq!(r.text(), "POST|/echo|||4|late");
    // After healthcheck_interval: new connections are refused.
    let refused_at = loop {
        if Conn::try_open(port).is_err() {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < interval + Duration::from_secs(60), "still accepting connections:\n{}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(refused_at >= interval - Duration::from_millis(200), "stopped accepting after {:.2}s", secs(refused_at));
    // The idle connection is closed; the request in flight completes.
    assert!(b.closed_by_server(Duration::from_secs(5)), "the idle connection was not closed");
    let (r, done) = a.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slept 5000"), "{}", s.stderr());
    let st = s.wait(Duration::from_secs(20));
    let exited = Instant::now();
    assert!(st.success(), "exit status {st}:\n{}", s.stderr());
    assert!(exited >= done - Duration::from_millis(50), "exited before the request in flight was answered");
    // It ended because nothing was in flight, not at write_timeout (10 s):
    // the log's count says so, without a bound on the machine's speed.
    let log = s.stderr();
    assert!(log.contains("SIGTERM: no new connections in 3s"), "{log}");
    assert!(log.contains("Exiting. Active connections: 0"), "{log}");
    if v.built_with_shunt() {
        s.assert_no_traps();
    }
}

fn drain_is_bounded_by_write_timeout(v: Mode) {
    let mut s = start_healthy(v, &[("healthcheck_interval", "500ms"), ("write_timeout", "1s"), ("exec_timeout", "0")]);
    let port = s.port;
    let mark = s.dir.path().join("mark");
    let path = format!("/sleep?ms=8000&mark={}", mark.display());
    let stuck = std::thread::spawn(move || try_call(port, "GET", &path, b""));
    wait_file(&mark, Duration::from_secs(20)); // the slow handler started
    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    let st = s.wait(Duration::from_secs(20));
    let took = t0.elapsed();
    assert!(st.success(), "exit status {st}");
    // interval + write_timeout at the least; that it did not wait for the
    // 8 s handler shows in the log (one connection still active).
    assert!(took >= Duration::from_millis(1400), "exited after {:.2}s", secs(took));
    assert!(s.stderr().contains("Exiting. Active connections: 1"), "{}", s.stderr());
    // The client of the abandoned request sees the connection end.
    assert!(stuck.join().unwrap().is_err());
    // A second signal ends the drain at once.
    let mut s = start_healthy(v, &[("healthcheck_interval", "30s")]);
    s.signal(libc::SIGTERM);
    s.wait_status("/_/health", 503, Duration::from_secs(5));
    s.signal(libc::SIGTERM);
    // Exit 1 (not the drain's 0) shows the second signal ended it, long
    // before the 30 s interval.
    let st = s.wait(Duration::from_secs(25));
    assert_eq!(st.code(), Some(1), "{}", s.stderr());
}

fn read_timeout_closes_idle_connections(v: Mode) {
    let mut s = start_healthy(v, &[("read_timeout", "1")]);
    let mut c = Conn::open(s.port);
    assert_eq!(c.request("POST", "/", &[], b"x").text(), "Body: x");
    let t = Instant::now();
    assert!(c.closed_by_server(Duration::from_secs(10)), "the idle connection stayed open");
    assert!(t.elapsed() >= Duration::from_millis(800), "closed after {:.2}s", secs(t.elapsed()));
    // A request whose head never ends is cut after read_timeout too.
    let mut c = Conn::open(s.port);
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\n");
    let t = Instant::now();
    assert!(c.closed_by_server(Duration::from_secs(10)));
    assert!(t.elapsed() >= Duration::from_millis(800));
    s.stop();
}

/// The startup log line of the timeouts, for an environment.
fn timeouts_line(v: Mode, env: &[(&str, &str)]) -> String {
    let s = start_front(&bin(v), v, env);
    let log = s.stderr();
    log.lines()
        .find_map(|l| l.split_once("Timeouts: ").map(|(_, t)| t.to_string()))
        .unwrap_or_else(|| panic!("no Timeouts line:\n{log}"))
}

fn durations_from_the_environment(v: Mode) {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("read_timeout", "2"), ("write_timeout", "1m30s"), ("exec_timeout", "500ms"), ("healthcheck_interval", "")],
            "read: 2s write: 1m30s hard: 500ms health: 1m30s",
        ),
        (
            &[("read_timeout", "abc"), ("write_timeout", "-3"), ("exec_timeout", "0"), ("healthcheck_interval", "1.5s")],
            "read: 10s write: 10s hard: 0s health: 1.5s",
        ),
        (
            &[("read_timeout", "+7"), ("write_timeout", "2h"), ("exec_timeout", "-5s"), ("healthcheck_interval", "250ms")],
            "read: 7s write: 2h0m0s hard: 10s health: 250ms",
        ),
        (&[("healthcheck_interval", ""), ("read_timeout", "1h2m3.5s")], "read: 1h2m3.5s write: 10s hard: 10s health: 10s"),
    ];
    for (env, want) in cases {
        assert_eq!(timeouts_line(v, env), want, "{env:?}");
    }
    // A zero write timeout is refused, as of-watchdog does.
    let mut s = spawn_front(&bin(v), v, &[("write_timeout", "0")]);
    let st = s.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(1));
    assert!(s.stderr().contains("write timeout must be over 0s"), "{}", s.stderr());
}

/// The startup log says whether the runtime is in the process, through
/// `shunt.h` (the header generated from the runtime's ABI): a g++ build has
/// none; a shunt build has the gate's address from libshunt.so and the
/// segment version the runtime writes.
fn runtime_in_the_log(v: Mode) {
    let mut s = start_healthy(v, &[]);
    let log = s.stderr();
    let line = log
        .lines()
        .find_map(|l| l.split_once("Runtime: ").map(|(_, t)| t.to_string()))
        .unwrap_or_else(|| panic!("no Runtime line:\n{log}"));
    if v.built_with_shunt() {
        let want = format!(", stats segment v{})", shunt_abi::segment::SEGMENT_VERSION);
        let gate = line
            .strip_prefix("shunt (gate at 0x")
            .and_then(|r| r.strip_suffix(want.as_str()))
            .unwrap_or_else(|| panic!("not `shunt (gate at 0x…{want}`: {line}"));
        assert_ne!(u64::from_str_radix(gate, 16).unwrap_or(0), 0, "{line}");
    } else {
        assert_eq!(line, "none (built without shunt)");
    }
    s.stop();
}

/// The front's own C++ unit tests (durations, parsing), in the test
/// handler's context: `make front-test`.
fn front_unit_tests(v: Mode) {
    let ctx = bin(v).parent().unwrap().to_path_buf();
    let o = make(&ctx, v.built_with_shunt(), &["front-test"]);
    assert!(o.status.success(), "make front-test failed:\n{}{}", o.stdout_str(), o.stderr_str());
    let out = o.stdout_str();
    assert!(out.contains("test go_durations ... ok") && out.contains(", 0 failed"), "{out}");
}

macro_rules! variants {
    ($module:ident, $variant:expr, $($name:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    super::$name($variant)
                }
            )*
        }
    };
}

/// Every behaviour, natively and under `shunt run`.
macro_rules! every_behaviour {
    ($($module:ident = $variant:expr),*) => {
        $(
            variants!(
                $module,
                $variant,
                http_basics,
                health_and_lock,
                exec_timeout_answers_504,
                max_inflight_answers_429,
                drain_on_sigterm,
                drain_is_bounded_by_write_timeout,
                read_timeout_closes_idle_connections,
                durations_from_the_environment,
                runtime_in_the_log,
                front_unit_tests
            );
        )*
    };
}

every_behaviour!(native = super::Mode::Native, shunt = super::Mode::Shunt);

variants!(shunt_direct, super::Mode::ShuntDirect, http_basics, runtime_in_the_log);
