//! `shunt faas build` / `shunt faas up` on a throwaway stack whose template
//! is a minimal shunt template (a Python "handler" with a health endpoint):
//! the shrink-wrap layout, the bundles, the ports and private TMPDIRs, the
//! drain on SIGTERM, every stack-file mistake named with its function, and
//! the hand-off to a faas-cli found on PATH.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shunt_tests::*;

const TEMPLATE_YML: &str = r#"language: py-shunt
fprocess: ./handler
welcome_message: test template
build_options:
  - name: none
    packages: []
shunt:
  build: [sh, build.sh, shunt]
  native_build: [sh, build.sh, native]
  binary: handler
"#;

/// The "build": writes the handler (a Python server) and records how it was
/// built, so the test can tell the variants apart.
const BUILD_SH: &str = r#"set -e
cat > handler <<'PY'
#!/usr/bin/python3
import http.server, os, sys
lock = os.path.join(os.environ.get("TMPDIR", "/tmp"), ".lock")
variant = open("variant").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, text):
        b = text.encode(); self.send_response(code)
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        if self.path == "/_/health":
            return self.reply(200 if os.path.exists(lock) else 503, "OK")
        self.reply(200, "get")
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); body = self.rfile.read(n).decode()
        self.reply(200, f"{variant}|{os.environ.get('GREETING','')}|{body}|{open('function/handler.txt').read().strip()}")
srv = http.server.HTTPServer(("127.0.0.1", int(os.environ["port"])), H)
open(lock, "w").close()
import signal
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
srv.serve_forever()
PY
chmod +x handler
echo "$1" > variant
"#;

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A stack dir with the template and two functions.
fn stack(dir: &Path) {
    write(&dir.join("template/py-shunt/template.yml"), TEMPLATE_YML);
    write(&dir.join("template/py-shunt/build.sh"), BUILD_SH);
    write(&dir.join("template/py-shunt/function/handler.txt"), "template sample");
    write(&dir.join("template/py-shunt/function/sample_only.txt"), "left from the template");
    write(&dir.join("one/handler.txt"), "function one");
    write(&dir.join("one/build/ignored.txt"), "faas-cli skips build/ in handlers");
    write(&dir.join("two/handler.txt"), "function two");
    write(
        &dir.join("stack.yml"),
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  one:\n    lang: py-shunt\n    handler: ./one\n    image: one:latest\n    environment:\n      GREETING: hello\n  two:\n    lang: py-shunt\n    handler: ./two\n    image: two:latest\n",
    );
}

fn shunt_in(dir: &Path, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(shunt());
    cmd.current_dir(dir).args(args).env("SHUNT_STATE_DIR", dir.join(".state")); // the image store, not the machine's
    // No faas-cli here: shunt's own shrink-wrap is what is tested.
    cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    run(cmd, None, Duration::from_secs(300))
}

fn post(port: u16, body: &str) -> String {
    shunt_tests::http::call(port, "POST", "/", body.as_bytes()).text()
}

#[test]
fn build_makes_the_faas_cli_layout_and_both_variants() {
    let d = tempfile::tempdir().unwrap();
    stack(d.path());
    let o = shunt_in(d.path(), &["faas", "build", "-f", "stack.yml", "--native"]);
    assert!(o.status.success(), "{}", o.stderr_str());
    let b = d.path().join("build");
    // faas-cli's shrink-wrap: the template, then the handler over function/.
    assert_eq!(std::fs::read_to_string(b.join("one/function/handler.txt")).unwrap(), "function one");
    assert!(b.join("one/function/sample_only.txt").exists(), "template sample files remain");
    assert!(!b.join("one/function/build").exists(), "handler build/ is skipped");
    assert!(b.join("one/template.yml").exists() && b.join("one/build.sh").exists());
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(b.join(".shunt/bundles.json")).unwrap()).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 4, "{manifest}");
    assert_eq!(std::fs::read_to_string(b.join(".shunt/one/native/variant")).unwrap().trim(), "native");
    assert_eq!(std::fs::read_to_string(b.join(".shunt/one/shunt/variant")).unwrap().trim(), "shunt");
}

#[test]
fn up_serves_each_function_on_its_port_and_drains_on_sigterm() {
    let d = tempfile::tempdir().unwrap();
    stack(d.path());
    assert!(shunt_in(d.path(), &["faas", "build", "-f", "stack.yml"]).status.success());
    let stats = d.path().join("stats");
    let mut up = Command::new(shunt())
        .current_dir(d.path())
        .args(["faas", "up", "-f", "stack.yml", "--base-port", "18481", "--stats-dir"])
        .arg(&stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let start = Instant::now();
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        let done = l.contains("function(s) up");
        seen.push(l);
        if done || start.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.starts_with("one") && l.contains(":18481/")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("two") && l.contains(":18482/")), "{seen:?}");
    assert_eq!(post(18481, "x"), "shunt|hello|x|function one");
    assert_eq!(post(18482, "y"), "shunt||y|function two");
    // Private TMPDIRs: each function has its own lock file.
    assert!(d.path().join("build/.shunt/one/shunt/tmp/.lock").exists());
    assert!(d.path().join("build/.shunt/two/shunt/tmp/.lock").exists());
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    let st = up.wait().unwrap();
    assert!(st.success(), "shunt faas up exit: {st}");
    for f in ["one", "two"] {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(stats.join(format!("{f}.json"))).unwrap()).unwrap();
        Stats::from_value(v.clone());
        assert!(v["processes"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn stack_mistakes_name_the_function_and_field() {
    let d = tempfile::tempdir().unwrap();
    stack(d.path());
    let fails = |stack: &str, expect: &str| {
        write(&d.path().join("bad.yml"), stack);
        let o = shunt_in(d.path(), &["faas", "build", "-f", "bad.yml"]);
        assert_eq!(o.status.code(), Some(2), "{}", o.stderr_str());
        let err = o.stderr_str();
        assert!(err.starts_with("shunt: ") && err.contains(expect), "{err:?} should say {expect:?}");
    };
    fails("functions:\n  f:\n    lang: nope\n    handler: ./one\n", "function f: lang `nope` has no template");
    fails("functions:\n  f:\n    lang: py-shunt\n    handler: ./missing\n", "function f: handler `./missing` is not a directory");
    fails("functions:\n  f:\n    handler: ./one\n", "function f: no `lang`");
    fails("functions:\n  f:\n    lang: py-shunt\n    handler: ./one\n    build_options: [gpu]\n", "build option `gpu` is not offered");
    write(&d.path().join("template/plain/template.yml"), "language: plain\nfprocess: ./x\n");
    fails("functions:\n  f:\n    lang: plain\n    handler: ./one\n", "template `plain` is not a shunt template");
    fails("functions: [\n", "not a valid stack file");
    fails("functions: {}\n", "no functions");
    let o = shunt_in(d.path(), &["faas", "up", "-f", "stack.yml", "--filter", "zzz"]);
    assert!(o.stderr_str().contains("no function named \"zzz\""), "{}", o.stderr_str());
}

/// A stand-in for faas-cli (which cannot be installed on these machines):
/// logs where and how it was called, and shrink-wraps like faas-cli, marking
/// its contexts; with FAKE_FAIL set it fails as faas-cli does.
const FAKE_FAAS_CLI: &str = r#"#!/bin/sh
echo "$PWD|$*" >> "$FAKE_LOG"
if [ -n "${FAKE_FAIL:-}" ]; then echo "faas-cli: template py-shunt: no such template" >&2; exit 1; fi
name=$6
rm -rf "build/$name" && mkdir -p "build/$name/function"
cp -r template/py-shunt/. "build/$name/"
cp -r "$name/." "build/$name/function/"
echo faas-cli > "build/$name/made-by"
"#;

#[test]
fn a_faas_cli_on_path_does_the_shrinkwrap() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    stack(d.path());
    let bin = d.path().join("bin");
    write(&bin.join("faas-cli"), FAKE_FAAS_CLI);
    std::fs::set_permissions(bin.join("faas-cli"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = d.path().join("faas-cli.log");
    let build = |fail: bool| {
        let mut cmd = Command::new(shunt());
        cmd.current_dir(d.path()).args(["faas", "build", "-f", "stack.yml"]).env("SHUNT_STATE_DIR", d.path().join(".state"));
        cmd.env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())).env("FAKE_LOG", &log);
        if fail {
            cmd.env("FAKE_FAIL", "1");
        }
        run(cmd, None, Duration::from_secs(300))
    };
    let o = build(false);
    assert!(o.status.success(), "{}", o.stderr_str());
    let here = d.path().canonicalize().unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["one", "two"].map(|f| format!("{}|build --shrinkwrap -f stack.yml --filter {f}", here.display())),
        "how faas-cli was called"
    );
    // The bundles are built from faas-cli's contexts.
    for f in ["one", "two"] {
        let made_by = d.path().join(format!("build/.shunt/{f}/shunt/made-by"));
        assert_eq!(std::fs::read_to_string(&made_by).unwrap_or_default().trim(), "faas-cli", "{f}");
    }
    // faas-cli's failure stops the build with its message and the step.
    let o = build(true);
    assert!(!o.status.success());
    let err = o.stderr_str();
    assert!(err.contains("faas-cli build --shrinkwrap (one)") && err.contains("no such template"), "{err}");
}
