//! Helpers for the end-to-end tests: run a program natively and under
//! `shunt run`, compare what they did, and read the instance's stats.
//!
//! The tests use the `shunt` binary and `libshunt.so` of the same cargo
//! profile (`target/<profile>/`); the README's test command builds the whole
//! workspace before testing. A missing artefact fails the test with the
//! command that builds it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shunt_stats::{Class, Report};

pub mod daemon;
pub mod front;
pub mod gostd;
pub mod http;
pub mod image;
pub mod registry;
pub mod templates;

/// `target/<profile>` of this test binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// The `shunt` binary under test.
pub fn shunt() -> PathBuf {
    let p = target_dir().join("shunt");
    let lib = target_dir().join("libshunt.so");
    assert!(
        p.is_file() && lib.is_file(),
        "{} or {} is missing: build the workspace first (`cargo build --workspace` with the same profile)",
        p.display(),
        lib.display()
    );
    p
}

/// The `GOTOOLCHAIN` for Go builds in tests: the caller's (so that
/// `GOTOOLCHAIN=go1.25.5 cargo test` runs them with that Go), else `local`
/// (never a download the test did not ask for).
pub fn go_toolchain() -> String {
    std::env::var("GOTOOLCHAIN").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "local".into())
}

/// The Go program `tests/gofixtures/<name>`.
pub fn go_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gofixtures").join(name)
}

/// Builds the Go fixture `name` into `dir` twice, as `<name>-plain` with
/// `go build` and as `<name>-shunt` with `shunt go build`, both with
/// [`go_toolchain`]; returns their paths (plain, shunt).
pub fn build_go_fixture_pair(name: &str, dir: &Path) -> (String, String) {
    let build = |with_shunt: bool| {
        let exe = dir.join(format!("{name}-{}", if with_shunt { "shunt" } else { "plain" }));
        let mut cmd = if with_shunt {
            let mut c = Command::new(shunt());
            c.arg("go");
            c
        } else {
            Command::new("go")
        };
        cmd.current_dir(go_fixture(name))
            .args(["build", "-o"])
            .arg(&exe)
            .arg(".")
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", go_toolchain());
        let o = run(cmd, None, Duration::from_secs(900));
        assert!(o.status.success(), "building {name} (shunt: {with_shunt}) failed: {}", o.stderr_str());
        exe.to_str().expect("a UTF-8 temporary path").to_string()
    };
    (build(false), build(true))
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `cmd` with optional stdin, killing it after `limit`.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Outcome {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let pid = child.id();
    let start = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let watchdog = std::thread::spawn(move || {
        while start.elapsed() < limit {
            if done2.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) takes plain integers; no memory is shared.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        true
    });
    let out = child.wait_with_output().expect("wait for the program");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let timed_out = watchdog.join().unwrap_or(false);
    assert!(!timed_out, "{cmd:?} did not finish within {limit:?}");
    Outcome { stdout: out.stdout, stderr: out.stderr, status: out.status }
}

const LIMIT: Duration = Duration::from_secs(300);

/// Runs `argv` natively.
pub fn native(argv: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    run(cmd, stdin, LIMIT)
}

/// Runs `argv` under `shunt run` with `shunt_args` (before `--`) and returns
/// the outcome and the stats report.
pub fn under_shunt(argv: &[&str], stdin: Option<&[u8]>, shunt_args: &[&str]) -> (Outcome, Stats) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("stats.json");
    let mut cmd = Command::new(shunt());
    cmd.arg("run").arg("--stats").arg(&stats).args(shunt_args).arg("--").args(argv);
    let out = run(cmd, stdin, LIMIT);
    let text = std::fs::read_to_string(&stats)
        .unwrap_or_else(|e| panic!("no stats report from {argv:?} ({e}); stderr:\n{}", out.stderr_str()));
    (out, Stats::parse(&text))
}

/// Asserts two runs did the same thing.
pub fn assert_same(what: &str, native: &Outcome, shunt: &Outcome) {
    assert_eq!(
        native.status.code(),
        shunt.status.code(),
        "{what}: exit status differs (native {:?}, shunt {:?}); shunt stderr:\n{}",
        native.status,
        shunt.status,
        shunt.stderr_str()
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&native.status),
        std::os::unix::process::ExitStatusExt::signal(&shunt.status),
        "{what}: terminating signal differs"
    );
    if native.stdout != shunt.stdout {
        panic!(
            "{what}: stdout differs\n--- native ({} bytes)\n{}\n--- shunt ({} bytes)\n{}\n--- shunt stderr\n{}",
            native.stdout.len(),
            head(&native.stdout),
            shunt.stdout.len(),
            head(&shunt.stdout),
            shunt.stderr_str()
        );
    }
    assert_eq!(native.stderr_str(), shunt.stderr_str(), "{what}: stderr differs");
}

fn head(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(3000)]).into_owned()
}

/// The stats report of an instance: the JSON as written (`.0`, for messages
/// and ad-hoc looks) and the same read into the one typed schema
/// (`shunt_stats::Report`, `.1`), which every report must satisfy.
///
/// Reading a report also checks that the writer added it up (totals are
/// the sums of the per-syscall counts; entries equal answers). That check
/// is of the report's form only: the runtime counts each call in the one
/// cell of its (entry, answer), so it cannot catch a lost or doubled
/// count. The counts themselves are checked against an independent count
/// where the test knows it: `run_programs.rs`'s known-calls probe (exact
/// numbers of calls in threads, children and exec'd images, per path).
#[derive(Debug)]
pub struct Stats(pub Value, pub Report);

/// The classes of the report, by name (the schema's).
pub const CLASSES: [&str; 5] = {
    let mut names = [""; 5];
    let mut i = 0;
    while i < 5 {
        names[i] = Class::ALL[i].name();
        i += 1;
    }
    names
};

fn class(name: &str) -> Class {
    *Class::ALL.iter().find(|c| c.name() == name).unwrap_or_else(|| panic!("no stats class {name:?}"))
}

impl Stats {
    /// Parses a report, checking it against the schema.
    pub fn parse(text: &str) -> Stats {
        let json: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("stats are not JSON ({e}): {text}"));
        let report = Report::from_json("stats", text).unwrap_or_else(|e| panic!("{e}: {text}"));
        Stats::checked(json, report)
    }
    /// A report already parsed as JSON, checked against the schema.
    pub fn from_value(json: Value) -> Stats {
        let report = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("not a stats report ({e}): {json}"));
        Stats::checked(json, report)
    }
    fn checked(json: Value, report: Report) -> Stats {
        if let Err(e) = report.check_accounted() {
            panic!("the stats report does not add up: {e}: {json}");
        }
        Stats(json, report)
    }
    pub fn total(&self, class_name: &str) -> u64 {
        assert!(self.0.get(class_name).is_some(), "stats have no total {class_name:?}: {}", self.0);
        self.1.total(class(class_name))
    }
    /// The count of one class for the syscall `name`; a name that is no
    /// syscall fails the test (a misspelled name would read 0, and an
    /// `== 0` check would pass without checking anything).
    pub fn get(&self, name: &str, class_name: &str) -> u64 {
        assert!(shunt_abi::syscalls::number_of(name).is_some(), "{name:?} is not a system call name");
        self.1.get(name, class(class_name))
    }
    pub fn processes(&self) -> u64 {
        self.1.processes
    }
}

/// A path for a C test program built by build.rs.
pub fn program(path: &str) -> String {
    assert!(Path::new(path).is_file(), "test program {path} missing");
    path.to_string()
}

/// Writes `bytes` of deterministic text lines (seeded xorshift) to `dir/name`.
pub fn data_file(dir: &Path, name: &str, bytes: usize, seed: u64) -> String {
    let path = dir.join(name);
    let mut x: u64 = seed | 1;
    let mut buf = Vec::with_capacity(bytes);
    while buf.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(format!("{:016x} line {}\n", x, buf.len() % 977).as_bytes());
    }
    buf.truncate(bytes);
    std::fs::write(&path, &buf).unwrap();
    path.to_string_lossy().into_owned()
}

/// A python3 workload for the end-to-end tests: threads over temporary
/// files, subprocesses (vfork + exec), fork, random bytes and many files.
pub const PYTHON_WORKLOAD: &str = r#"
import hashlib, json, os, subprocess, tempfile, threading
def work(i, out):
    with tempfile.NamedTemporaryFile("w+") as f:
        f.write(str(i) * 20000); f.flush(); f.seek(0)
        out[i] = hashlib.sha256(f.read().encode()).hexdigest()[:12]
out = {}
ts = [threading.Thread(target=work, args=(i, out)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(out.items()))
print(subprocess.run(["sort"], input="b\na\n", capture_output=True, text=True).stdout.split())
print(subprocess.check_output(["sh", "-c", "echo $((6*7))"]).decode().strip())
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, str(os.getpid()).encode()); os._exit(3)
_, st = os.waitpid(pid, 0)
print("child pid reported by itself matches fork:", int(os.read(r, 64)) == pid, "exit", os.waitstatus_to_exitcode(st))
print(len(os.urandom(64)), os.getpid() == os.getpid())
with tempfile.TemporaryDirectory() as d:
    for i in range(50):
        with open(os.path.join(d, f"f{i}"), "w") as f: json.dump({"i": i}, f)
    print(sum(json.load(open(os.path.join(d, n)))["i"] for n in sorted(os.listdir(d))))
"#;

/// Whether process `pid` maps the file `path` of its own root
/// (`/proc/PID/root`, e.g. a container's): a line of `/proc/PID/maps` with
/// that file's inode and name. False when the file does not exist there.
pub fn maps_file(pid: u32, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/root{path}")) else { return false };
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_else(|e| panic!("/proc/{pid}/maps: {e}"));
    let name = Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path);
    maps.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 6 && f[4].parse::<u64>() == Ok(meta.ino()) && f[5].rsplit('/').next() == Some(name)
    })
}
