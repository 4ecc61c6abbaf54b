//! The example stack (`faasd-templates/stack.yml`: aes, fibonacci and auth,
//! each in Go and C++) end to end: `shunt faas build --native` builds the
//! twelve bundles, `shunt faas up` starts the six functions under shunt and
//! then natively; each answers vSwarm's outputs over HTTP, the Go and C++
//! versions alike; Ctrl-C stops the stack with exit 0; under shunt every
//! function's stats show zero traps. Then `shunt bench invoke --quick`
//! runs end to end on the same templates (no timing is checked).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shunt_tests::http::call;
use shunt_tests::templates::{copy_tree, scratch, templates, BUILD_LIMIT};
use shunt_tests::*;

const FUNCTIONS: [&str; 6] = ["aes-cpp", "aes-go", "auth-cpp", "auth-go", "fibonacci-cpp", "fibonacci-go"];

/// (request body, the answer without its ` | runtime: …` suffix).
fn vectors(function: &str) -> Vec<(&'static str, String)> {
    let aes = |pt: &str, hex: &str| format!("fn: AES | plaintext: {pt} | ciphertext: {hex}");
    let auth = |token: &str, resp: &str| format!("fn: Auth | token: {token} | resp: {resp}");
    match function.split('-').next().unwrap() {
        "aes" => vec![
            ("", aes("defaultplaintext", "d80e9ec83a6acbef3d909876e79904a9")),
            ("world", aes("defaultplaintext", "d80e9ec83a6acbef3d909876e79904a9")),
            ("A unique message", aes("A unique message", "fd4b8dc72677cafa719c946be09d1bb8")),
        ],
        "fibonacci" => vec![
            ("10", "fn: Fib: y = fib(x) | x: 10 y: 55".to_string()),
            ("100", "fn: Fib: y = fib(x) | x: 100 y: 354224848179261915075".to_string()),
        ],
        "auth" => vec![
            ("unauthorized", auth("unauthorized", "Unauthorized")),
            ("no such token", auth("no such token", "Error: Invalid token")),
        ],
        other => panic!("unknown function {other}"),
    }
}

/// The runtime vSwarm's Go versions print (fibonacci says GoLang).
fn runtime_of(function: &str) -> &'static str {
    match function {
        "fibonacci-go" => "GoLang",
        f if f.ends_with("-go") => "golang",
        _ => "cpp",
    }
}

/// A copy of the example stack with its templates and handlers.
fn stack_dir() -> PathBuf {
    let dir = scratch("stack");
    std::fs::copy(templates().join("stack.yml"), dir.join("stack.yml")).unwrap();
    copy_tree(&templates().join("template"), &dir.join("template"));
    copy_tree(&templates().join("functions"), &dir.join("functions"));
    dir
}

fn shunt_in(dir: &Path) -> Command {
    let mut c = Command::new(shunt());
    c.current_dir(dir).env("GOTOOLCHAIN", go_toolchain()).env("SHUNT_STATE_DIR", dir.join(".state")); // the image store, not the machine's
    for v in ["SHUNT_STATS", "SHUNT_INSTANCE", "SHUNT_TRAP", "LD_PRELOAD"] {
        c.env_remove(v);
    }
    c
}

/// Six consecutive loopback ports that are free now.
fn free_ports() -> u16 {
    for attempt in 0..50u16 {
        let base = 20000 + (std::process::id() as u16 % 2000) * 10 + attempt * 7;
        let all_free = (0..6).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no six consecutive free ports");
}

/// `shunt faas up` running: the function → port lines it printed.
struct Up {
    child: Child,
    ports: Vec<(String, u16)>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Says when the log reader has read the last line (end of the pipe).
    log_ended: mpsc::Receiver<()>,
}

impl Up {
    fn start(dir: &Path, extra: &[&str]) -> Up {
        let base = free_ports();
        let mut c = shunt_in(dir);
        c.args(["faas", "up", "-f", "stack.yml", "--base-port", &base.to_string()]).args(extra);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // The test is the user at a terminal pressing Ctrl-C: the stack
        // starts with SIGINT at its default, even when this test runs as a
        // shell's background job, whose commands start with it ignored (and
        // `shunt faas up` then leaves it ignored, as its functions would).
        // SAFETY: signal(2) is async-signal-safe; the child only execs next.
        unsafe {
            c.pre_exec(|| {
                if libc::signal(libc::SIGINT, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = c.spawn().expect("start shunt faas up");
        // The log goes to a buffer shown when something fails.
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (log, pipe) = (stderr.clone(), child.stderr.take().unwrap());
        let (log_done, log_ended) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(l + "\n"));
            }
            let _ = log_done.send(());
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut ports = Vec::new();
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(300)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    panic!("shunt faas up did not report the stack up ({e}):\n{}", stderr.lock().unwrap());
                }
            };
            if line.contains("function(s) up") {
                assert!(line.starts_with("shunt faas: 6 function(s) up"), "{line}");
                break;
            }
            // "<name> <variant> http://127.0.0.1:<port>/"
            let w: Vec<&str> = line.split_whitespace().collect();
            let port = w.get(2).and_then(|u| u.trim_end_matches('/').rsplit(':').next()).and_then(|p| p.parse().ok());
            match port {
                Some(p) => ports.push((w[0].to_string(), p)),
                None => panic!("unexpected line from shunt faas up: {line:?}"),
            }
        }
        Up { child, ports, stderr, log_ended }
    }

    /// Ctrl-C; the stack must stop with exit 0.
    fn interrupt(mut self) {
        // SAFETY: kill(2) of the child this test started (not yet reaped).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        // Its end, from a pidfd (an event, not a polling loop).
        // SAFETY: pidfd_open(2) takes no pointers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.child.id() as i32, 0) } as i32;
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd on the stack; then close(2) of the pidfd opened above.
        let ended = unsafe {
            let n = libc::poll(&mut p, 1, 180_000);
            libc::close(fd);
            n == 1
        };
        if !ended {
            let _ = self.child.kill();
            panic!("shunt faas up did not stop on SIGINT:\n{}", self.stderr.lock().unwrap());
        }
        let st = self.child.wait().unwrap();
        // The log's last lines: the reader ends at the end of the pipe.
        let _ = self.log_ended.recv_timeout(Duration::from_secs(30));
        assert!(st.success(), "shunt faas up exited with {st} on SIGINT:\n{}", self.stderr.lock().unwrap());
    }
}

/// Calls every function of a running stack; returns the answers by function.
fn exercise(up: &Up, mode: &str) {
    let names: Vec<&str> = up.ports.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, FUNCTIONS, "{mode}: the functions and their order (ports follow the names)");
    let mut policies = Vec::new();
    for (name, port) in &up.ports {
        let suffix = format!(" | runtime: {}", runtime_of(name));
        for (body, want) in vectors(name) {
            let r = call(*port, "POST", "/", body.as_bytes());
            assert_eq!((r.status, r.text()), (200, want + &suffix), "{mode} {name}: {body:?}");
        }
        if name.starts_with("auth") {
            // allow/deny: the policy document, the same in both languages.
            for (token, effect) in [("allow", "Effect:Allow"), ("deny", "Effect:Deny")] {
                let r = call(*port, "POST", "/", token.as_bytes());
                let text = r.text();
                assert_eq!(r.status, 200, "{mode} {name}: {token}: {text}");
                assert!(text.starts_with(&format!("fn: Auth | token: {token} | resp: {{principalId:user ")), "{text}");
                assert!(text.contains(effect) && text.ends_with(&suffix), "{mode} {name}: {token}: {text}");
                policies.push((token, text.trim_end_matches(&suffix).to_string()));
            }
        }
        let r = call(*port, "GET", "/_/health", b"");
        assert_eq!(r.status, 200, "{mode} {name}: health");
    }
    for token in ["allow", "deny"] {
        let texts: Vec<&String> = policies.iter().filter(|(t, _)| *t == token).map(|(_, p)| p).collect();
        assert_eq!(texts.len(), 2);
        assert_eq!(texts[0], texts[1], "{mode}: the C++ and Go auth policies differ for {token}");
    }
}

#[test]
fn example_stack_built_and_served_natively_and_under_shunt() {
    let dir = stack_dir();
    let mut c = shunt_in(&dir);
    c.args(["faas", "build", "-f", "stack.yml", "--native"]);
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "shunt faas build failed:\n{}{}", o.stdout_str(), o.stderr_str());
    let printed = o.stdout_str();
    for f in FUNCTIONS {
        for variant in ["shunt", "native"] {
            assert!(
                printed.lines().any(|l| l.split_whitespace().next() == Some(f) && l.contains(&format!(" {variant} "))),
                "no {variant} bundle of {f}:\n{printed}"
            );
        }
        assert!(dir.join("build").join(f).join("template.yml").is_file(), "build/{f}: not faas-cli's layout");
    }

    let stats = dir.join("stats");
    let up = Up::start(&dir, &["--stats-dir", stats.to_str().unwrap()]);
    exercise(&up, "shunt");
    up.interrupt();
    for f in FUNCTIONS {
        let p = stats.join(format!("{f}.json"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let s = Stats::parse(&text);
        assert_eq!(s.total("trapped"), 0, "{f}: trapped calls: {}", s.0);
        let by = s.0["by_program"].as_object().unwrap_or_else(|| panic!("{f}: no by_program: {}", s.0));
        for (prog, o) in by {
            assert_eq!(o["trapped"].as_u64(), Some(0), "{f}: {prog} trapped calls: {o}");
            assert!(o["redirected"].as_u64().unwrap_or(0) > 0, "{f}: {prog} made no call through the gate: {o}");
        }
        // The socket work of the front went through the gate.
        assert!(s.get("accept4", "redirected") > 0, "{f}: accept4 not through the gate: {}", s.0);
    }

    let up = Up::start(&dir, &["--native"]);
    exercise(&up, "native");
    up.interrupt();
}

#[test]
fn bench_invoke_quick_prints_both_figures() {
    let out = scratch("bench");
    // A relative --out, as the default (`bench-invoke`) is: the functions run
    // in directories of their own, so the bench must resolve it first.
    let (parent, name) = (out.parent().unwrap(), out.file_name().unwrap());
    let mut c = Command::new(shunt());
    c.current_dir(parent);
    c.args(["bench", "invoke", "--quick", "--out"]).arg(name).arg("--templates").arg(templates());
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "shunt bench invoke --quick failed:\n{}{}", o.stdout_str(), o.stderr_str());
    let text = o.stdout_str();
    for lang in ["go", "cpp"] {
        for config in ["stock", "native", "shunt"] {
            let row = text.lines().find(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 3 && w[0] == lang && w[1] == config
            });
            assert!(row.is_some(), "no Figure 5 row for {lang} {config}:\n{text}");
        }
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for lang in ["go", "cpp"] {
        for config in ["stock", "native", "shunt"] {
            let f5 = &results["fig5"][lang][config];
            assert!(f5["p50_us"].as_f64().is_some_and(|v| v > 0.0), "fig5 {lang} {config}: {f5}");
            let f6 = results["fig6"][lang][config]["points"].as_array();
            assert!(f6.is_some_and(|steps| !steps.is_empty()), "fig6 {lang} {config}: {results}");
            let peak = results["fig6"][lang][config]["peak_achieved_rps"].as_f64();
            assert!(peak.is_some_and(|v| v > 0.0), "fig6 {lang} {config}: no request answered: {results}");
        }
    }
    for plot in ["fig5-cdf.svg", "fig6-load.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap_or_else(|e| panic!("{plot}: {e}"));
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{plot} is not an SVG");
    }
}
