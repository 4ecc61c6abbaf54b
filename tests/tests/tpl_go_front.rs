//! The fronts of the Go functions, end to end: the golang-shunt template's
//! front (the handler linked in, built with `shunt go build`) run natively
//! and under `shunt run` (zero traps), and the stock watchdog of the
//! benchmark baseline (`faasd-templates/stock/`, its own process proxying to
//! a golang-middleware-style upstream), natively. Each behaviour of
//! of-watchdog's http mode is one module with a test per front: `native`,
//! `shunt`, `stock`. Every server gets a private TMPDIR (its lock file) and
//! port 0 (it logs the port it got).
//!
//! Timing is asserted only where it is the behaviour (exec_timeout,
//! read_timeout, the drain), with margins of a second or more.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "support/golang_shunt.rs"]
mod util;
use util::*;

/// The handler the fronts serve in these tests.
const TEST_HANDLER: &str = r#"package function

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func Handle(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/sleep":
		// Says it started (a file in TMPDIR), then sleeps whatever the
		// context says, as a handler stuck in work would.
		if id := r.URL.Query().Get("id"); id != "" {
			os.WriteFile(filepath.Join(os.TempDir(), "started-"+id), nil, 0o600)
		}
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		fmt.Fprintf(w, "slept %s", d)
	case "/te":
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "te=%v cl=%d", r.TransferEncoding, r.ContentLength)
	case "/exit":
		os.Exit(3)
	default:
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	}
}
"#;

struct Builds {
    /// The golang-shunt context with the test handler, `shunt go build`.
    front: PathBuf,
    /// The stock watchdog and its upstream (stock/golang + the test handler).
    watchdog: PathBuf,
    upstream: PathBuf,
}

fn builds() -> &'static Builds {
    static B: OnceLock<Builds> = OnceLock::new();
    B.get_or_init(|| {
        let dir = scratch("front");
        let handler = dir.join("handler");
        std::fs::create_dir_all(&handler).unwrap();
        std::fs::write(handler.join("handler.go"), TEST_HANDLER).unwrap();
        std::fs::write(handler.join("go.mod"), "module handler/function\n\ngo 1.25\n").unwrap();

        let ctx = dir.join("ctx");
        shrinkwrap(&golang_shunt(), &handler, &ctx);
        let front = dir.join("front");
        shunt_go_build(&ctx, &front);

        let watchdog = dir.join("fwatchdog");
        go_build(&templates().join("stock/watchdog"), &watchdog);
        let up = dir.join("stock-upstream");
        shrinkwrap(&templates().join("stock/golang"), &handler, &up);
        let upstream = dir.join("upstream");
        go_build(&up, &upstream);
        Builds { front, watchdog, upstream }
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Front(Mode),
    Stock,
}

fn spawn(kind: Kind, env: &[(&str, &str)], wait_listening: bool) -> Server {
    let b = builds();
    let (mode, argv, mut all): (Mode, Vec<&std::path::Path>, Vec<(String, String)>) = match kind {
        Kind::Front(mode) => (mode, vec![b.front.as_path()], vec![]),
        Kind::Stock => (
            Mode::Native,
            vec![b.watchdog.as_path()],
            vec![
                ("mode".into(), "http".into()),
                ("fprocess".into(), b.upstream.display().to_string()),
                ("upstream_url".into(), format!("http://127.0.0.1:{}", free_port())),
            ],
        ),
    };
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if wait_listening {
        Server::start(mode, &argv, &all)
    } else {
        Server::spawn(mode, &argv, &all)
    }
}

fn start(kind: Kind, env: &[(&str, &str)]) -> Server {
    let s = spawn(kind, env, true);
    s.wait_healthy();
    s
}

/// One test per front for each behaviour.
macro_rules! fronts {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn native() {
                behaviour::$name(Kind::Front(Mode::Native))
            }
            #[test]
            fn shunt() {
                behaviour::$name(Kind::Front(Mode::Shunt))
            }
            #[test]
            fn stock() {
                behaviour::$name(Kind::Stock)
            }
        }
    )*};
}

fronts!(
    health_follows_the_lock,
    exec_timeout_answers_504,
    max_inflight_answers_429,
    sigterm_drains_without_dropping_requests,
    timeouts_are_parsed,
    read_and_write_timeouts_apply,
    request_body_reaches_the_handler,
);

const STOP: Duration = Duration::from_secs(30);

mod behaviour {
    use super::*;

    pub fn health_follows_the_lock(kind: Kind) {
        let mut s = start(kind, &[("healthcheck_interval", "0")]);
        let h = call(s.port, "GET", "/_/health", b"");
        assert_eq!((h.status, h.text().as_str()), (200, "OK"), "{kind:?}");
        assert_eq!(call(s.port, "GET", "/_/ready", b"").status, 200, "{kind:?}");
        assert!(s.lock().is_file(), "{kind:?}: no lock file in TMPDIR");

        std::fs::remove_file(s.lock()).unwrap();
        let h = call(s.port, "GET", "/_/health", b"");
        assert_eq!((h.status, h.text().as_str()), (503, ""), "{kind:?}: health without the lock");
        assert_eq!(call(s.port, "GET", "/_/ready", b"").status, 503, "{kind:?}: ready without the lock");
        // Invocations do not depend on the lock.
        let r = call(s.port, "POST", "/echo?x=1", b"hi");
        assert_eq!((r.status, r.text().as_str()), (200, "POST /echo?x=1 hi"), "{kind:?}");
        assert!(r.header("X-Duration-Seconds").is_some_and(|v| v.parse::<f64>().is_ok()), "{kind:?}: {:?}", r.headers);

        std::fs::write(s.lock(), "").unwrap();
        assert_eq!(call(s.port, "GET", "/_/health", b"").status, 200, "{kind:?}: health with the lock back");
        assert_eq!(call(s.port, "POST", "/_/health", b"").status, 405, "{kind:?}: POST /_/health");
        assert_eq!(call(s.port, "PUT", "/_/ready", b"").status, 405, "{kind:?}: PUT /_/ready");

        s.stop();
        assert!(!s.lock().exists(), "{kind:?}: the lock survived SIGTERM");
    }

    pub fn exec_timeout_answers_504(kind: Kind) {
        let mut s = start(kind, &[("exec_timeout", "1"), ("healthcheck_interval", "0")]);
        let t = Instant::now();
        let r = call(s.port, "GET", "/sleep?d=3s", b"");
        let took = t.elapsed();
        assert_eq!((r.status, r.text().as_str()), (504, ""), "{kind:?}: a 3s request with exec_timeout=1");
        // Not before the timeout; how long after it depends on the machine's
        // load, so there is no upper bound (the 504 itself shows the handler's
        // 3 s were not waited for: it would have answered 200).
        assert!(took >= Duration::from_millis(900), "{kind:?}: 504 after {took:?}");
        assert!(r.header("X-Duration-Seconds").is_some(), "{kind:?}: {:?}", r.headers);
        // The front is still there for quick requests.
        let r = call(s.port, "GET", "/sleep?d=100ms", b"");
        assert_eq!((r.status, r.text().as_str()), (200, "slept 100ms"), "{kind:?}");
        s.stop();
    }

    pub fn max_inflight_answers_429(kind: Kind) {
        let mut s = start(kind, &[("max_inflight", "2"), ("healthcheck_interval", "0")]);
        let port = s.port;
        let slow: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|id| std::thread::spawn(move || call(port, "GET", &format!("/sleep?d=3s&id={id}"), b"")))
            .collect();
        for id in ["a", "b"] {
            wait_file(&s.tmpdir().join(format!("started-{id}")), Duration::from_secs(30));
        }
        let r = call(port, "POST", "/", b"third");
        assert_eq!(r.status, 429, "{kind:?}: a third request at max_inflight=2: {r:?}");
        assert_eq!(r.text(), "Concurrent request limit exceeded. Max concurrent requests: 2\n", "{kind:?}");
        assert_eq!(r.header("Content-Type"), Some("text/plain"), "{kind:?}");
        assert_eq!(call(port, "GET", "/_/ready", b"").status, 429, "{kind:?}: ready at the limit");
        assert_eq!(call(port, "GET", "/_/health", b"").status, 200, "{kind:?}: health is not limited");
        for t in slow {
            let r = t.join().unwrap();
            assert_eq!((r.status, r.text().as_str()), (200, "slept 3s"), "{kind:?}: the requests in flight");
        }
        s.wait_status("/_/ready", 200, Duration::from_secs(10));
        let r = call(port, "POST", "/", b"again");
        assert_eq!((r.status, r.text().as_str()), (200, "POST / again"), "{kind:?}");
        s.stop();
    }

    pub fn sigterm_drains_without_dropping_requests(kind: Kind) {
        let mut s = start(kind, &[("healthcheck_interval", "4"), ("write_timeout", "20s")]);
        let port = s.port;
        let slow = std::thread::spawn(move || call(port, "GET", "/sleep?d=6s&id=slow", b""));
        wait_file(&s.tmpdir().join("started-slow"), Duration::from_secs(30));

        let t0 = Instant::now();
        s.signal(libc::SIGTERM);
        // Unhealthy at once (well within the 4s of healthcheck_interval)...
        s.wait_status("/_/health", 503, Duration::from_secs(2));
        assert_eq!(call(port, "GET", "/_/ready", b"").status, 503, "{kind:?}: ready after SIGTERM");
        assert!(!s.lock().exists(), "{kind:?}: the lock survived SIGTERM");
        // ...but still serving new requests during the interval.
        // (A new connection: it could not be made after the interval, when
        // the listener is closed, so its answer shows serving during it.)
        let r = call(port, "POST", "/", b"late");
        assert_eq!((r.status, r.text().as_str()), (200, "POST / late"), "{kind:?}: a request after SIGTERM");

        // The request in flight when the listener closed (t0 + 4s) completes.
        let r = slow.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "slept 6s"), "{kind:?}: the request in flight");
        let st = s.wait(STOP);
        assert_eq!(st.code(), Some(0), "{kind:?}:\n{}", s.stderr());
        if s.mode == Mode::Shunt {
            s.assert_no_traps();
        }
        assert!(t0.elapsed() >= Duration::from_secs(4), "{kind:?}: exited before healthcheck_interval");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{kind:?}: still listening after exit");
    }

    pub fn timeouts_are_parsed(kind: Kind) {
        let cases: [(&[(&str, &str)], &str); 3] = [
            (&[], "read 10s, write 10s, exec 10s, healthcheck_interval 10s; max_inflight 0"),
            (
                &[("read_timeout", "5"), ("write_timeout", "1m30s"), ("exec_timeout", "500ms")],
                "read 5s, write 1m30s, exec 500ms, healthcheck_interval 1m30s; max_inflight 0",
            ),
            (
                &[
                    ("read_timeout", "abc"),
                    ("write_timeout", "-3"),
                    ("exec_timeout", "0"),
                    ("healthcheck_interval", "2s"),
                    ("max_inflight", "3"),
                ],
                "read 10s, write 10s, exec 0s, healthcheck_interval 2s; max_inflight 3",
            ),
        ];
        for (env, want) in cases {
            let s = spawn(kind, env, true);
            let line = s.log_line("timeouts: ", Duration::from_secs(30));
            let got = line.split("timeouts: ").nth(1).unwrap();
            assert_eq!(got, want, "{kind:?} with {env:?}");
        }
        let mut s = spawn(kind, &[("write_timeout", "0")], false);
        let st = s.wait(STOP);
        assert_eq!(st.code(), Some(1), "{kind:?}: write_timeout=0 must stop the front:\n{}", s.stderr());
        assert!(s.stderr().contains("write_timeout must be over 0s"), "{kind:?}:\n{}", s.stderr());
    }

    pub fn read_and_write_timeouts_apply(kind: Kind) {
        let mut s = start(kind, &[("read_timeout", "1s"), ("write_timeout", "1500ms"), ("healthcheck_interval", "0")]);
        // A request whose headers never end is dropped at read_timeout.
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let res = c.read_to_end(&mut buf);
        let took = t.elapsed();
        if let Err(e) = &res {
            assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "{kind:?}: the half-sent request was not dropped with read_timeout=1s"
            );
        }
        assert!(took >= Duration::from_millis(900), "{kind:?}: dropped after {took:?}, before read_timeout");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{kind:?}: {text:?}");

        // A response due after write_timeout never reaches the client.
        let raw = exchange(s.port, "GET", "/sleep?d=3s", b"").unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("slept"), "{kind:?}: a 3s response got through write_timeout=1500ms: {text:?}");
        // Within it, requests are answered.
        let r = call(s.port, "GET", "/sleep?d=100ms", b"");
        assert_eq!((r.status, r.text().as_str()), (200, "slept 100ms"), "{kind:?}");
        s.stop();
    }

    /// The golang-shunt front hands the handler the request as received; the
    /// stock watchdog streams it upstream without its length (chunked), as
    /// of-watchdog does.
    pub fn request_body_reaches_the_handler(kind: Kind) {
        let mut s = start(kind, &[("healthcheck_interval", "0")]);
        let r = call(s.port, "POST", "/te", b"hello");
        let want = if kind == Kind::Stock { "te=[chunked] cl=-1" } else { "te=[] cl=5" };
        assert_eq!((r.status, r.text().as_str()), (200, want), "{kind:?}");
        let big = vec![b'x'; 600_000];
        let r = call(s.port, "PUT", "/big?q=1", &big);
        assert_eq!(r.status, 200, "{kind:?}");
        assert_eq!(r.text().len(), "PUT /big?q=1 ".len() + big.len(), "{kind:?}");
        s.stop();
    }
}

#[test]
fn stock_watchdog_exits_when_its_function_dies() {
    let mut s = start(Kind::Stock, &[]);
    // The upstream exits mid-request: the client gets an error status or a
    // closed connection, and the watchdog, useless without it, exits 1.
    let r = try_call(s.port, "GET", "/exit", b"");
    assert!(r.as_ref().map_or(true, |r| r.status == 500), "{r:?}");
    let st = s.wait(STOP);
    assert_eq!(st.code(), Some(1), "{}", s.stderr());
    assert!(s.stderr().contains("forked function has terminated"), "{}", s.stderr());
}

#[test]
fn stock_watchdog_names_what_is_missing() {
    let b = builds();
    for (env, want) in [
        (vec![("upstream_url", "http://127.0.0.1:1")], "set fprocess"),
        (vec![("fprocess", b.upstream.to_str().unwrap())], "set upstream_url"),
        (vec![("fprocess", "x"), ("upstream_url", "http://127.0.0.1:1"), ("mode", "streaming")], "only the http mode"),
    ] {
        let mut s = Server::spawn(Mode::Native, &[&b.watchdog], &env);
        assert_eq!(s.wait(STOP).code(), Some(1), "{env:?}:\n{}", s.stderr());
        assert!(s.stderr().contains(want), "{env:?}: {}", s.stderr());
    }
}

#[test]
fn handler_exit_status_is_the_programs_under_shunt() {
    // The process ends inside the handler: the stats must still be whole.
    let mut s = start(Kind::Front(Mode::Shunt), &[]);
    let r = try_call(s.port, "GET", "/exit", b"");
    assert!(r.is_err(), "{r:?}");
    let st = s.wait(STOP);
    assert_eq!(st.code(), Some(3), "the handler's exit status is the program's:\n{}", s.stderr());
    s.assert_no_traps();
}
