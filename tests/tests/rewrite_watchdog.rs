//! The real OpenFaaS watchdogs (`../shared/tools`: of-watchdog 0.11.6 and
//! the classic watchdog 0.3.9, static Go binaries built upstream, stripped)
//! under `shunt run`, rewritten at load time: the same answers as natively,
//! and not one trapped call in any process of the instance.
//!
//! - of-watchdog in http mode in front of the stock golang-middleware
//!   upstream (`../shared/third_party`, plain `go build`) serving vSwarm's
//!   AES function: two rewritten Go programs, one HTTP hop between them.
//! - the classic watchdog forking `sha512sum` (dynamic, glibc patched by the
//!   preload) for every request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::front::{Mode, Server};
use shunt_tests::http::call;
use shunt_tests::templates::{copy_tree, free_port, templates};
use shunt_tests::*;

/// The machine's shared upstream parts: `$SHUNT_SHARED`, else the first
/// `shared/` beside an ancestor of the repository (`../shared` of a
/// checkout, `../../shared` of a worktree under `wt/`).
fn shared() -> PathBuf {
    if let Some(d) = std::env::var_os("SHUNT_SHARED") {
        return PathBuf::from(d);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    repo.ancestors()
        .map(|a| a.join("shared"))
        .find(|d| d.join("tools").is_dir())
        .unwrap_or_else(|| panic!("no shared/tools beside any parent of {} (set SHUNT_SHARED)", repo.display()))
}

fn tool(name: &str) -> PathBuf {
    let p = shared().join("tools").join(name);
    assert!(p.is_file(), "{} is missing: the real OpenFaaS watchdogs are expected in ../shared/tools", p.display());
    p
}

/// golang-middleware's entrypoint with vSwarm's AES handler, `go build`.
fn aes_upstream(dir: &Path) -> PathBuf {
    let tpl = shared().join("third_party/golang-http-template/golang-middleware");
    assert!(tpl.is_dir(), "{} is missing (../shared/third_party)", tpl.display());
    let ctx = dir.join("upstream");
    copy_tree(&tpl, &ctx);
    // The handler only: the template's go.mod/go.work pin its Go version.
    std::fs::copy(templates().join("functions/aes/go/handler.go"), ctx.join("function/handler.go")).unwrap();
    let bin = dir.join("handler");
    let mut cmd = Command::new("go");
    cmd.current_dir(&ctx).args(["build", "-o"]).arg(&bin).arg(".");
    cmd.env("CGO_ENABLED", "0").env("GOTOOLCHAIN", go_toolchain()).env_remove("GOFLAGS").env("GOPROXY", "off");
    let o = run(cmd, None, Duration::from_secs(600));
    assert!(o.status.success(), "go build of the golang-middleware upstream failed: {}", o.stderr_str());
    bin
}

/// Both watchdogs serve metrics on 8081 whatever they are told, and
/// golang-middleware listens on 8082 (both hard-coded upstream): each test
/// runs in a network namespace of its own, where only loopback exists, so
/// that tests, helpers and CI jobs running at the same time never meet on
/// those ports. The namespace is the calling thread's (`unshare` moves only
/// it), inherited by every process it starts; the test body runs on that
/// thread, and so do its connections.
fn in_own_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare of this thread's network namespace only.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "cannot make a network namespace (needs root or CAP_SYS_ADMIN): {}",
            std::io::Error::last_os_error()
        );
        loopback_up();
        body()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Brings `lo` up in this thread's network namespace (a new one has it down).
fn loopback_up() {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq { name: [0; 16], flags: 0, _pad: [0; 22] };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: a socket of our own, and ioctls that read and write `req`,
    // laid out as the kernel's `struct ifreq` (name, then the flags union).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req), 0, "SIOCGIFFLAGS lo: {}", std::io::Error::last_os_error());
        req.flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req), 0, "SIOCSIFFLAGS lo: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
}

/// A watchdog whose whole process group ends with it, also when a test
/// fails: natively, of-watchdog's upstream outlives it (under shunt the
/// instance ends with its program), and would keep golang-middleware's port.
struct Watchdog(Server);

impl Drop for Watchdog {
    fn drop(&mut self) {
        end_group(&self.0);
    }
}

impl std::ops::Deref for Watchdog {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl std::ops::DerefMut for Watchdog {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.0
    }
}

fn start(mode: Mode, watchdog: &Path, env: &[(&str, &str)]) -> Watchdog {
    let (port, metrics) = (free_port().to_string(), free_port().to_string());
    // Short timeouts: on SIGTERM both watchdogs (and golang-middleware) wait
    // one health interval, which defaults to the write timeout.
    let mut all = vec![
        ("port", port.as_str()),
        ("metrics_port", metrics.as_str()),
        ("write_timeout", "2s"),
        ("read_timeout", "2s"),
        ("exec_timeout", "10s"),
    ];
    all.extend_from_slice(env);
    let s = Watchdog(Server::start(mode, &[watchdog], &all));
    s.wait_healthy();
    s
}

/// Ends what is left of the process group a watchdog led.
fn end_group(s: &Server) {
    let group = -(s.child.id() as i32);
    // SAFETY: kill(2) takes plain integers; no memory is shared.
    unsafe { libc::kill(group, libc::SIGKILL) };
    // Until every member is gone (and its ports with it); bounded.
    let t0 = std::time::Instant::now();
    // SAFETY: as above (signal 0 only probes whether the group exists).
    while unsafe { libc::kill(group, 0) } == 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::yield_now();
    }
}

#[test]
fn of_watchdog_and_golang_middleware_run_with_zero_traps() {
    in_own_netns(of_watchdog_and_golang_middleware);
}

fn of_watchdog_and_golang_middleware() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = aes_upstream(dir.path());
    let fwatchdog = tool("fwatchdog");
    let fprocess = upstream.display().to_string();
    // golang-middleware listens on 8082, as it does in OpenFaaS (in this
    // test's own network namespace).
    let env = [("mode", "http"), ("fprocess", fprocess.as_str()), ("upstream_url", "http://127.0.0.1:8082")];
    let mut answers = Vec::new();
    for mode in [Mode::Native, Mode::Shunt] {
        let mut s = start(mode, &fwatchdog, &env);
        // of-watchdog is healthy once its lock file is written, not when its
        // upstream listens: wait for that (bounded).
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", 8082)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(60), "{mode:?}: the upstream never listened: {}", s.stderr());
            assert!(s.try_wait().is_none(), "{mode:?}: the watchdog exited: {}", s.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut got = Vec::new();
        for body in ["A unique message", "", "world", "defaultplaintext"] {
            let r = call(s.port, "POST", "/", body.as_bytes());
            assert_eq!(r.status, 200, "{mode:?}: {}", s.stderr());
            got.push(String::from_utf8_lossy(&r.body).into_owned());
        }
        assert!(got[0].contains("ciphertext: fd4b8dc72677cafa719c946be09d1bb8"), "{mode:?}: {got:?}");
        assert!(got[1].contains("ciphertext: d80e9ec83a6acbef3d909876e79904a9"), "{mode:?}: {got:?}");
        // SIGTERM: of-watchdog passes it on and exits when its function
        // has (with 1: the function died of the signal), the same natively
        // and under shunt; under shunt, zero traps in both programs, each of
        // which went through the gate.
        s.signal(libc::SIGTERM);
        let st = s.wait(Duration::from_secs(60));
        assert!(st.code().is_some(), "{mode:?}: killed by a signal ({st}): {}", s.stderr());
        if mode == Mode::Shunt {
            s.assert_no_traps();
            let stats = s.stats();
            let progs = stats.0["by_program"].as_object().unwrap();
            assert!(progs.contains_key("fwatchdog") && progs.contains_key("handler"), "{}", stats.0);
        }
        answers.push((got, st.code()));
    }
    assert_eq!(answers[0], answers[1], "native and shunt answers differ");
}

#[test]
fn classic_watchdog_forking_per_request_runs_with_zero_traps() {
    in_own_netns(classic_watchdog_forking_per_request);
}

fn classic_watchdog_forking_per_request() {
    let watchdog = tool("classic-watchdog");
    let mut answers = Vec::new();
    for mode in [Mode::Native, Mode::Shunt] {
        let mut s = start(mode, &watchdog, &[("fprocess", "sha512sum")]);
        let mut got = Vec::new();
        for i in 0..20 {
            let body = format!("request {i} {}", "x".repeat(i * 100));
            let r = call(s.port, "POST", "/", body.as_bytes());
            assert_eq!(r.status, 200, "{mode:?}: {}", s.stderr());
            got.push(String::from_utf8_lossy(&r.body).into_owned());
        }
        s.signal(libc::SIGTERM);
        let st = s.wait(Duration::from_secs(60));
        assert!(st.code().is_some(), "{mode:?}: killed by a signal ({st}): {}", s.stderr());
        if mode == Mode::Shunt {
            s.assert_no_traps();
            let stats = s.stats();
            assert!(stats.processes() >= 21, "a process per request: {}", stats.0);
        }
        answers.push((got, st.code()));
    }
    assert_eq!(answers[0], answers[1], "native and shunt answers differ");
}
