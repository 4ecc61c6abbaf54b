//! `shunt-oci` under the real containerd: a private daemon
//! (`shunt-containerd`: its own root, state and socket under a temporary
//! directory, no CRI, no CNI) whose stock `io.containerd.runc.v2` shim is
//! pointed at `shunt-oci` with its `BinaryName` option (`ctr run
//! --runc-binary`). Each image runs twice through `ctr`, on plain runc and
//! on `shunt-oci`, and what containerd reports — output, exit status, `ctr
//! tasks ps`, `ctr tasks exec`, `ctr tasks kill`, the removal — must be the
//! same, while the shunt run is counted: its stats are read back (live with
//! `shunt-oci stats ID`, and after the shim's delete from
//! `<root>-shunt/<id>/stats.json`) and checked against what the program
//! visibly did.
//!
//! Images: busybox (an unmodified static binary: rewritten at load, or
//! with `io.shunt.rewrite=off` every call trapped), a
//! Debian bookworm root filesystem with python3 (the image's own glibc,
//! patched in memory: nothing traps), and the Go AES function built by
//! `shunt faas build` (a shunt-built Go program: nothing traps), served
//! in a network namespace that holds only `lo`.
//!
//! Needs root, containerd, runc, umoci, skopeo, patchelf, mmdebstrap and
//! busybox-static (scripts/setup.sh installs them) and the workspace built.
//! The Debian image is made once with mmdebstrap from the machine's apt
//! sources and kept in the cache (`$SHUNT_CACHE`, else `~/.cache/shunt`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shunt_containerd::{Containerd, ImageConfig, Network, Options, RunSpec, build_oci_archive};
use shunt_tests::templates::{BUILD_LIMIT, copy_tree, scratch, templates};
use shunt_tests::{Outcome, Stats, go_toolchain, maps_file, run, shunt, target_dir};

const BUSYBOX: &str = "/bin/busybox";
/// How long one container may take to run to its end.
const LIMIT: Duration = Duration::from_secs(120);

fn shunt_oci() -> PathBuf {
    let p = target_dir().join("shunt-oci");
    assert!(p.is_file(), "{} is missing: cargo build --release --workspace", p.display());
    p
}

/// An image of busybox alone, as `shunt.test/busybox:latest`.
fn busybox_image(d: &Containerd, work: &Path) {
    assert!(
        std::fs::read(BUSYBOX).is_ok_and(|b| b.len() > 100_000),
        "{BUSYBOX} is missing: apt-get install busybox-static (scripts/setup.sh does)"
    );
    let root = work.join("busybox-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let config = ImageConfig { env: vec![("PATH".into(), "/bin".into())], workdir: Some("/".into()), ..Default::default() };
    let archive = work.join("busybox.tar");
    build_oci_archive(&root, &config, "latest", &archive).unwrap();
    d.import(&archive, "shunt.test/busybox:latest").unwrap();
}

fn started() -> Containerd {
    Containerd::start(&Options::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The two ways a container runs: the shim's runc, or `shunt-oci` as its
/// `BinaryName`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Runtime {
    Runc,
    Shunt,
}

fn spec(id: &str, image: &str, network: Network, rt: Runtime, args: &[&str]) -> RunSpec {
    let mut s = RunSpec::new(id, image, network);
    s.args = args.iter().map(|a| a.to_string()).collect();
    if rt == Runtime::Shunt {
        s.runtime_binary = Some(shunt_oci());
    }
    s
}

/// `ctr run --rm` of a container to its end: its output and exit status.
fn run_to_end(d: &Containerd, s: &RunSpec) -> Outcome {
    run(d.run_command(s).unwrap(), None, LIMIT)
}

/// `ctr ARGS…` against `d`, to its end.
fn ctr(d: &Containerd, args: &[&str]) -> Outcome {
    let mut c = d.ctr_command();
    c.args(args);
    run(c, None, LIMIT)
}

/// Where `shunt-oci` puts container `id`'s stats under `d`.
fn stats_dir(d: &Containerd, id: &str) -> PathBuf {
    let mut root = d.runtime_root().into_os_string();
    root.push("-shunt");
    PathBuf::from(root).join(id)
}

/// The report the shim's delete left for container `id`.
fn final_stats(d: &Containerd, id: &str) -> Stats {
    let p = stats_dir(d, id).join("stats.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let s = Stats::parse(&text);
    s
}

/// `shunt-oci stats ID`: the container's report while it runs.
fn live_stats(d: &Containerd, id: &str) -> Stats {
    let mut c = Command::new(shunt_oci());
    c.arg("--root").arg(d.runtime_root()).args(["stats", id]);
    let o = run(c, None, LIMIT);
    assert!(o.status.success(), "shunt-oci stats {id}: {}", o.stderr_str());
    let s = Stats::parse(&o.stdout_str());
    s
}

/// Calls of `name` however they reached the runtime (gate or trap).
fn calls(s: &Stats, name: &str) -> u64 {
    s.get(name, "redirected") + s.get(name, "trapped")
}

fn visible(o: &Outcome) -> (Option<i32>, String, String) {
    (o.status.code(), o.stdout_str(), o.stderr_str())
}

#[test]
fn busybox_output_and_exit_status_as_runc_rewritten_or_trapped() {
    let work = tempfile::tempdir().unwrap();
    let d = started();
    busybox_image(&d, work.path());
    let args = ["/bin/busybox", "sh", "-c", "echo one; echo two; echo three >&2; exit 3"];
    let image = "shunt.test/busybox:latest";
    let native = run_to_end(&d, &spec("bb-runc", image, Network::Loopback, Runtime::Runc, &args));
    assert_eq!(visible(&native), (Some(3), "one\ntwo\n".into(), "three\n".into()), "runc's run");
    // One write per line the program printed (echo is a shell built-in).
    let lines = (native.stdout_str() + &native.stderr_str()).lines().count() as u64;

    // By default its syscall sites are rewritten at load: every call
    // reaches the gate, nothing traps.
    let rewritten = run_to_end(&d, &spec("bb-shunt", image, Network::Loopback, Runtime::Shunt, &args));
    assert_eq!(visible(&native), visible(&rewritten), "runc and shunt-oci under containerd");
    let s = final_stats(&d, "bb-shunt");
    assert_eq!(s.processes(), 1, "{}", s.0);
    assert_eq!(s.total("trapped"), 0, "{}", s.0);
    assert_eq!(s.get("write", "redirected"), lines, "{}", s.0);
    assert_eq!(s.get("exit_group", "redirected"), 1, "{}", s.0);

    // io.shunt.rewrite=off: the unmodified binary, every call trapped.
    let mut trapping = spec("bb-trap", image, Network::Loopback, Runtime::Shunt, &args);
    trapping.annotations.push(("io.shunt.rewrite".into(), "off".into()));
    let trapped = run_to_end(&d, &trapping);
    assert_eq!(visible(&native), visible(&trapped), "runc and shunt-oci (rewrite off) under containerd");
    let t = final_stats(&d, "bb-trap");
    assert_eq!(t.processes(), 1, "{}", t.0);
    assert_eq!(t.total("redirected"), 0, "nothing rewritten, so no gate calls: {}", t.0);
    assert_eq!(t.get("write", "trapped"), lines, "{}", t.0);
    assert_eq!(t.get("exit_group", "trapped"), 1, "{}", t.0);
    // The same program made the same calls either way.
    assert_eq!(s.total("redirected"), t.total("trapped"), "rewritten {} / trapped {}", s.0, t.0);
    assert!(!stats_dir(&d, "bb-runc").exists(), "runc's container has no shunt stats");
    d.stop().unwrap();
}

/// Kills `child` if it has not ended within `limit` (a hung container
/// must fail the test, not hang it).
fn watchdog(child: &Child, limit: Duration) -> std::sync::mpsc::Sender<()> {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: signalling the ctr child we started and have not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    tx
}

/// What containerd shows of one container's life: started, listed by
/// `ps`, a process exec'd into it, killed, removed.
#[derive(Debug, PartialEq)]
struct Life {
    first_line: String,
    ps_rows: usize,
    exec: (Option<i32>, String, String),
    after_exec_ps_rows: usize,
    kill: Option<i32>,
    exit: Option<i32>,
    rest_of_stdout: String,
    listed_after: bool,
}

fn ps_rows(d: &Containerd, id: &str) -> usize {
    let o = ctr(d, &["tasks", "ps", id]);
    assert!(o.status.success(), "ctr tasks ps: {}", o.stderr_str());
    // A header, then one row per process.
    o.stdout_str().lines().skip(1).filter(|l| !l.trim().is_empty()).count()
}

fn life(d: &Containerd, id: &str, rt: Runtime, live: &mut Option<Stats>) -> Life {
    let args = ["/bin/busybox", "sh", "-c", "echo ready; read x; echo got $x"];
    let mut cmd = d.run_command(&spec(id, "shunt.test/busybox:latest", Network::Loopback, rt, &args)).unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err.reopen().unwrap()).spawn().unwrap();
    let done = watchdog(&child, LIMIT);
    // stdin held open: the container waits in `read` until it is killed.
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    let stderr = || std::fs::read_to_string(err.path()).unwrap_or_default();
    assert_eq!(first_line, "ready\n", "{rt:?}: ctr run: {}", stderr());

    let ps = ps_rows(d, id);
    let exec = ctr(d, &["tasks", "exec", "--exec-id", "e1", id, "/bin/busybox", "sh", "-c", "echo exec $((2+3)); echo oops >&2; exit 5"]);
    let after_exec = ps_rows(d, id);
    if rt == Runtime::Shunt {
        *live = Some(live_stats(d, id));
    }
    let kill = ctr(d, &["tasks", "kill", "--signal", "SIGKILL", id]);
    assert!(kill.status.success(), "ctr tasks kill: {}", kill.stderr_str());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let _ = done.send(());
    drop(stdin);
    let listed = ctr(d, &["containers", "ls", "-q"]).stdout_str().lines().any(|l| l == id);
    Life {
        first_line,
        ps_rows: ps,
        exec: visible(&exec),
        after_exec_ps_rows: after_exec,
        kill: kill.status.code(),
        exit: status.code(),
        rest_of_stdout: rest,
        listed_after: listed,
    }
}

#[test]
fn ps_exec_kill_and_delete_behave_as_with_runc() {
    let work = tempfile::tempdir().unwrap();
    let d = started();
    busybox_image(&d, work.path());
    let mut unused = None;
    let native = life(&d, "life-runc", Runtime::Runc, &mut unused);
    let mut live = None;
    let on_shunt = life(&d, "life-shunt", Runtime::Shunt, &mut live);
    assert_eq!(native.exec, (Some(5), "exec 5\n".into(), "oops\n".into()), "runc's exec");
    assert_eq!(native.exit, Some(128 + libc::SIGKILL), "runc's killed container");
    assert_eq!((native.ps_rows, native.after_exec_ps_rows), (1, 1));
    assert!(!native.listed_after, "ctr run --rm removed it");
    assert_eq!(native, on_shunt, "runc and shunt-oci under containerd");

    // While it ran: the first process and the exec'd one, each counted,
    // one write per line each printed.
    let live = live.unwrap();
    assert_eq!(live.processes(), 2, "{}", live.0);
    assert_eq!(calls(&live, "write"), 3, "ready, exec 5, oops: {}", live.0);
    assert_eq!(live.total("trapped"), 0, "busybox rewritten at load: {}", live.0);
    // After the shim's delete: the same, and the record is gone.
    let s = final_stats(&d, "life-shunt");
    assert_eq!(s.processes(), 2, "{}", s.0);
    assert_eq!(calls(&s, "write"), 3, "{}", s.0);
    assert_eq!(s.total("trapped"), 0, "{}", s.0);
    let mut c = Command::new(shunt_oci());
    c.arg("--root").arg(d.runtime_root()).args(["stats", "life-shunt"]);
    let o = run(c, None, LIMIT);
    assert!(!o.status.success() && o.stderr_str().contains("does not run on shunt"), "stats after delete: {}", o.stderr_str());
    d.stop().unwrap();
}

/// A Debian bookworm root filesystem with python3 as an OCI archive. The
/// root filesystem is made once by mmdebstrap from the machine's apt
/// sources (a tarball, cached), the archive from it (cached too).
fn debian_python_archive() -> PathBuf {
    let cache = std::env::var_os("SHUNT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/shunt"))
        .join("oci-tests");
    // The recipe's version: change it when the recipe below changes.
    let tarball = cache.join("debian-bookworm-python3-v1.rootfs.tar");
    let archive = cache.join("debian-bookworm-python3-v1.oci.tar");
    if archive.is_file() {
        return archive;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let work = tempfile::Builder::new().prefix(".debian-").tempdir_in(&cache).unwrap();
    if !tarball.is_file() {
        let tmp = work.path().join("rootfs.tar");
        let mut c = Command::new("mmdebstrap");
        c.args(["--variant=essential", "--include=python3-minimal"])
            .args(["--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*"])
            .arg("bookworm")
            .arg(&tmp);
        let o = run(c, None, Duration::from_secs(1800));
        assert!(o.status.success(), "mmdebstrap (apt-get install mmdebstrap; needs the Debian mirror): {}", o.stderr_str());
        std::fs::rename(&tmp, &tarball).unwrap();
    }
    let root = work.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    let mut c = Command::new("tar");
    c.arg("-xf").arg(&tarball).arg("-C").arg(&root).args(["--numeric-owner", "--same-permissions"]);
    let o = run(c, None, Duration::from_secs(600));
    assert!(o.status.success(), "tar -xf {}: {}", tarball.display(), o.stderr_str());
    let config = ImageConfig {
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        cmd: vec!["python3".into()],
        workdir: Some("/".into()),
        ..Default::default()
    };
    let tmp = work.path().join("image.tar");
    build_oci_archive(&root, &config, "latest", &tmp).unwrap();
    std::fs::rename(&tmp, &archive).unwrap();
    archive
}

#[test]
fn python3_in_a_debian_image_as_with_runc_and_nothing_trapped() {
    let archive = debian_python_archive();
    let d = started();
    d.import(&archive, "shunt.test/debian-python:latest").unwrap();
    // Five writes by hand, then print's one (stdout is a pipe: buffered).
    let program = "import os, sys\n\
                   for i in range(5): os.write(1, b'line %d\\n' % i)\n\
                   print(sorted(os.listdir('/usr/lib/python3.11'))[:3], os.getpid(), os.getuid(), sys.argv[1:], sys.version_info[:2])\n\
                   sys.exit(4)\n";
    // -B: no bytecode cache written (its write would be one more).
    let args = ["python3", "-B", "-c", program, "a", "b"];
    let native = run_to_end(&d, &spec("py-runc", "shunt.test/debian-python:latest", Network::Loopback, Runtime::Runc, &args));
    let shunt = run_to_end(&d, &spec("py-shunt", "shunt.test/debian-python:latest", Network::Loopback, Runtime::Shunt, &args));
    assert_eq!(native.status.code(), Some(4), "runc's run: {}", native.stderr_str());
    assert!(native.stdout_str().ends_with("1 0 ['a', 'b'] (3, 11)\n"), "{}", native.stdout_str());
    assert_eq!(visible(&native), visible(&shunt), "runc and shunt-oci under containerd");

    let s = final_stats(&d, "py-shunt");
    assert_eq!(s.processes(), 1, "{}", s.0);
    assert_eq!(s.total("trapped"), 0, "the image's glibc is patched: nothing traps: {}", s.0);
    assert!(s.total("redirected") > 100, "{}", s.0);
    assert_eq!(calls(&s, "write"), 6, "{}", s.0);
    d.stop().unwrap();
}

/// POSTs `body` to the function on port 8080 of container `c`'s loopback
/// (its port accepts once the function listens; tried until a deadline).
fn post(c: &shunt_containerd::Container, body: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match c.connect(8080) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() < deadline && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{}: port 8080 never accepted: {e}; log: {:?}", c.id(), std::fs::read_to_string(c.log_path())),
        }
    };
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(stream, "POST / HTTP/1.0\r\nHost: fn\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    let (head, text) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{}: {head}", c.id());
    text.to_string()
}

#[test]
fn the_go_aes_function_built_by_shunt_faas_serves_as_with_runc_and_nothing_trapped() {
    // `shunt faas build` of aes-go into a state directory of its own: its
    // image store is an OCI layout, which ctr imports.
    let dir = scratch("oci-aes");
    std::fs::copy(templates().join("stack.yml"), dir.join("stack.yml")).unwrap();
    copy_tree(&templates().join("template"), &dir.join("template"));
    copy_tree(&templates().join("functions"), &dir.join("functions"));
    let state = dir.join(".state");
    let mut c = Command::new(shunt());
    c.current_dir(&dir).env("GOTOOLCHAIN", go_toolchain()).args(["faas", "build", "-f", "stack.yml", "--filter", "aes-go", "--state-dir"]).arg(&state);
    for v in ["SHUNT_STATS", "SHUNT_INSTANCE", "SHUNT_TRAP", "LD_PRELOAD"] {
        c.env_remove(v);
    }
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "shunt faas build: {}{}", o.stdout_str(), o.stderr_str());
    // One image of the store as an OCI archive, tagged `latest` (skopeo
    // reads the store's layout by its ref name).
    let archive = dir.join("aes-go.tar");
    let mut copy = Command::new("skopeo");
    copy.arg("copy")
        .arg(format!("oci:{}:shunt-aes-go:latest", state.join("images").display()))
        .arg(format!("oci-archive:{}:latest", archive.display()));
    let o = run(copy, None, LIMIT);
    assert!(o.status.success(), "skopeo copy (apt-get install skopeo; scripts/setup.sh does): {}", o.stderr_str());

    let d = started();
    d.import(&archive, "shunt.test/aes-go:latest").unwrap_or_else(|e| panic!("{e:#}"));
    let mut answers = Vec::new();
    for (id, rt) in [("aes-runc", Runtime::Runc), ("aes-shunt", Runtime::Shunt)] {
        // The front keeps its lock file in /tmp, which the image lacks: a
        // tmpfs, as an OpenFaaS function's pod gets an emptyDir there.
        let mut s = spec(id, "shunt.test/aes-go:latest", Network::Loopback, rt, &[]);
        s.tmpfs.push("/tmp".into());
        let c = d.run(&s).unwrap_or_else(|e| panic!("{e:#}"));
        let answer = (post(&c, "A unique message"), post(&c, ""));
        // The static Go handler runs mapped into the runtime's small helper,
        // started as the supervisor starts it (`shunt-load load …`), not
        // into the whole shunt; runc's container has neither.
        let helpers: Vec<&str> = ["/.shunt/shunt-load", "/.shunt/shunt"].into_iter().filter(|p| maps_file(c.pid(), p)).collect();
        let expect: &[&str] = if rt == Runtime::Shunt { &["/.shunt/shunt-load"] } else { &[] };
        assert_eq!(helpers, expect, "{id}: the helper files its process {} maps", c.pid());
        if rt == Runtime::Shunt {
            let s = live_stats(&d, id);
            assert_eq!(s.total("trapped"), 0, "a shunt-built Go function traps nothing: {}", s.0);
            assert!(s.get("accept4", "redirected") >= 2, "two requests accepted through the gate: {}", s.0);
        }
        c.remove().unwrap();
        answers.push(answer);
    }
    assert_eq!(
        answers[0].0,
        "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: golang",
        "runc's answer"
    );
    assert!(answers[0].1.contains("ciphertext: d80e9ec83a6acbef3d909876e79904a9"), "{}", answers[0].1);
    assert_eq!(answers[0], answers[1], "runc and shunt-oci under containerd");
    let s = final_stats(&d, "aes-shunt");
    assert_eq!(s.total("trapped"), 0, "{}", s.0);
    assert!(s.total("redirected") > 0, "{}", s.0);
    d.stop().unwrap();
}

/// A failure of `shunt-oci` reaches containerd's user as one line, through
/// the shim (which reads the runtime's JSON log), and leaves nothing: no
/// container, no `shunt-oci` record.
#[test]
fn errors_reach_ctr_through_the_shim_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let d = started();
    busybox_image(&d, work.path());
    let image = "shunt.test/busybox:latest";
    // A misspelt setting: refused, not ignored.
    let mut typo = spec("bad-typo", image, Network::Loopback, Runtime::Shunt, &["/bin/busybox", "true"]);
    typo.annotations.push(("io.shunt.polcy".into(), "x".into()));
    // A program the image does not have: runc refuses it too.
    let absent = |id: &str, rt| spec(id, image, Network::Loopback, rt, &["nosuchprogram"]);
    let cases = [
        (typo, "unknown annotation io.shunt.polcy"),
        (absent("bad-absent", Runtime::Shunt), "nosuchprogram: not found in the container's PATH"),
    ];
    for (s, says) in cases {
        let o = run_to_end(&d, &s);
        assert!(!o.status.success(), "{}: ctr run succeeded", s.id);
        assert!(o.stderr_str().contains(says), "{}: ctr says {:?}, not {says:?}", s.id, o.stderr_str());
        assert!(o.stdout.is_empty(), "{}: {}", s.id, o.stdout_str());
        let listed = ctr(&d, &["containers", "ls", "-q"]).stdout_str();
        assert!(!listed.lines().any(|l| l == s.id), "{} left: {listed}", s.id);
        let record = stats_dir(&d, &s.id).with_extension("json");
        assert!(!record.exists(), "{} left", record.display());
    }
    let native = run_to_end(&d, &absent("bad-absent-runc", Runtime::Runc));
    assert!(!native.status.success(), "runc ran a program the image lacks");
    d.stop().unwrap();
}

/// A container chooses its policy and its stats directory with
/// annotations (as a pod does through containerd's `pod_annotations`): the
/// denied call fails in the program with the policy's errno and is
/// counted, and the report lands in the chosen host directory.
#[test]
fn annotations_choose_the_policy_and_the_stats_directory() {
    let work = tempfile::tempdir().unwrap();
    let d = started();
    busybox_image(&d, work.path());
    let args = ["/bin/busybox", "sh", "-c", "mkdir /tmp/a; echo mkdir $?; mkdir /tmp/a; echo again $?"];
    let native = run_to_end(&d, &spec("pol-runc", "shunt.test/busybox:latest", Network::Loopback, Runtime::Runc, &args));
    assert_eq!(visible(&native), (Some(0), "mkdir 0\nagain 1\n".into(), "mkdir: can't create directory '/tmp/a': File exists\n".into()));

    let chosen = work.path().join("chosen-stats");
    let mut s = spec("pol-shunt", "shunt.test/busybox:latest", Network::Loopback, Runtime::Shunt, &args);
    s.annotations.push(("io.shunt.policy".into(), "base = \"none\"\n[syscalls]\nmkdir = \"deny:EACCES\"\nmkdirat = \"deny:EACCES\"\n".into()));
    s.annotations.push(("io.shunt.stats".into(), chosen.display().to_string()));
    let o = run_to_end(&d, &s);
    // Both tries refused with EACCES (the directory never exists).
    let err = o.stderr_str();
    assert_eq!((o.status.code(), o.stdout_str()), (Some(0), "mkdir 1\nagain 1\n".into()), "{err}");
    assert_eq!(err.matches("Permission denied").count(), 2, "{err}");
    let text = std::fs::read_to_string(chosen.join("stats.json")).unwrap_or_else(|e| panic!("{}: {e}", chosen.display()));
    let st = Stats::parse(&text);
    assert_eq!(st.total("denied"), 2, "{}", st.0);
    assert_eq!(st.get("mkdir", "denied") + st.get("mkdirat", "denied"), 2, "{}", st.0);
    assert!(!stats_dir(&d, "pol-shunt").exists(), "the default stats directory is not used");
    d.stop().unwrap();
}

/// `crictl`, the CRI's command-line client (`go install
/// sigs.k8s.io/cri-tools/cmd/crictl`; scripts/setup.sh installs it).
fn crictl_bin() -> PathBuf {
    let gopath = Command::new("go").args(["env", "GOPATH"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let candidates = gopath.into_iter().map(|g| PathBuf::from(g).join("bin/crictl")).chain([PathBuf::from("/usr/local/bin/crictl"), PathBuf::from("/usr/bin/crictl")]);
    candidates.into_iter().find(|p| p.is_file()).expect("crictl is missing: go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0 (scripts/setup.sh does)")
}

/// The README's containerd runtime entry, as the kubelet's path uses it:
/// the CRI plugin of a private containerd gets a runtime `shunt` (the runc
/// shim with `BinaryName` = shunt-oci, the pod's `io.shunt.*` annotations
/// passed on), and a pod asks for it by handler name, as a `RuntimeClass`
/// does. The pod's sandbox stays on runc; its container runs on shunt with
/// the pod's policy.
#[test]
fn a_pod_through_the_cri_runs_its_container_on_shunt() {
    let crictl = crictl_bin();
    let work = tempfile::tempdir().unwrap();
    // `Root`: the shim's runc root inside the private directory (the
    // default is the host's /run/containerd/runc), written below.
    let root_marker = "@RUNC_ROOT@";
    let entry = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.shunt]\n  runtime_type = \"io.containerd.runc.v2\"\n  pod_annotations = [\"io.shunt.*\"]\n  container_annotations = [\"io.shunt.*\"]\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.shunt.options]\n    BinaryName = {:?}\n    Root = \"{root_marker}\"\n",
        shunt_oci().display().to_string()
    );
    let dir = tempfile::Builder::new().prefix("shunt-containerd-").tempdir_in("/tmp").unwrap().keep();
    let runc_root = dir.join("runc");
    let opts = Options { dir: Some(dir.clone()), cri: Some(entry.replace(root_marker, &runc_root.display().to_string())), ..Default::default() };
    let d = Containerd::start(&opts).unwrap_or_else(|e| panic!("{e:#}"));
    let sock = format!("unix://{}", d.socket().display());
    let k8s_ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(d.socket()).args(["--namespace", "k8s.io"]).args(args);
        let o = run(c, None, LIMIT);
        assert!(o.status.success(), "ctr -n k8s.io {args:?}: {}", o.stderr_str());
    };
    // The images, in the CRI's containerd namespace: busybox, and a
    // sandbox ("pause") image whose process only waits.
    let bb = work.path().join("bb");
    std::fs::create_dir_all(bb.join("bin")).unwrap();
    std::fs::create_dir_all(bb.join("tmp")).unwrap();
    std::fs::copy(BUSYBOX, bb.join("bin/busybox")).unwrap();
    for (name, entrypoint) in [("busybox", vec![]), ("pause", vec!["/bin/busybox".to_string(), "sleep".into(), "3600".into()])] {
        let config = ImageConfig { entrypoint, env: vec![("PATH".into(), "/bin".into())], workdir: Some("/".into()), ..Default::default() };
        let archive = work.path().join(format!("{name}.tar"));
        build_oci_archive(&bb, &config, "latest", &archive).unwrap();
        k8s_ctr(&["images", "import", "--base-name", &format!("shunt.test/{name}"), archive.to_str().unwrap()]);
    }
    let cfg = work.path().join("crictl.yaml");
    std::fs::write(&cfg, "").unwrap();
    let cri = |args: &[&str]| {
        let mut c = Command::new(&crictl);
        c.arg("--config").arg(&cfg).args(["--runtime-endpoint", &sock, "--image-endpoint", &sock, "--timeout", "60s"]).args(args);
        let o = run(c, None, LIMIT);
        assert!(o.status.success(), "crictl {args:?}: {}{}; containerd's log:\n{}", o.stdout_str(), o.stderr_str(), d.log_tail(30));
        o.stdout_str().trim().to_string()
    };
    let logs = work.path().join("podlogs");
    std::fs::create_dir_all(&logs).unwrap();
    // Host network (no CNI); cgroups under the daemon's namespace (swept).
    let pod = serde_json::json!({
        "metadata": {"name": "fn", "namespace": "default", "uid": "shunt-test-pod", "attempt": 0},
        "log_directory": logs,
        "annotations": {"io.shunt.policy": "base = \"none\"\n[syscalls]\nmkdir = \"deny:EACCES\"\nmkdirat = \"deny:EACCES\"\n"},
        "linux": {"security_context": {"namespace_options": {"network": 2}}},
    });
    let container = serde_json::json!({
        "metadata": {"name": "fn"},
        "image": {"image": "shunt.test/busybox:latest"},
        "command": ["/bin/busybox", "sh", "-c", "echo hello from the pod; mkdir /tmp/x; echo mkdir $?"],
        "log_path": "fn.log",
        "linux": {},
    });
    let pod_file = work.path().join("pod.json");
    let ctr_file = work.path().join("container.json");
    std::fs::write(&pod_file, pod.to_string()).unwrap();
    std::fs::write(&ctr_file, container.to_string()).unwrap();
    let pod_id = cri(&["runp", "--runtime", "shunt", pod_file.to_str().unwrap()]);
    let cid = cri(&["create", &pod_id, ctr_file.to_str().unwrap(), pod_file.to_str().unwrap()]);
    cri(&["start", &cid]);
    // Until the container has exited (bounded), as the kubelet's status poll.
    let deadline = std::time::Instant::now() + LIMIT;
    let status = loop {
        let v: serde_json::Value = serde_json::from_str(&cri(&["inspect", &cid])).unwrap();
        if v["status"]["state"] == "CONTAINER_EXITED" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "container still running: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(logs.join("fn.log")).unwrap_or_default();
    // CRI log lines: "<time> <stream> F <text>". The shim reads stdout and
    // stderr from two pipes, so the order between the streams is not the
    // program's (a line on stdout after one on stderr may be logged first):
    // each stream is compared in its own order.
    let stream = |name: &str| -> Vec<&str> {
        log.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.splitn(4, ' ').collect();
                (f.len() == 4 && f[1] == name).then_some(f[3])
            })
            .collect()
    };
    assert_eq!(status["status"]["exitCode"], 0, "{status}");
    assert_eq!(stream("stdout"), ["hello from the pod", "mkdir 1"], "the pod's policy denied mkdir: {log}");
    assert_eq!(stream("stderr"), ["mkdir: can't create directory '/tmp/x': Permission denied"], "the pod's policy denied mkdir: {log}");

    // The CRI deletes an exited container's task (the shim's runtime
    // delete) before it reports it exited: the report is there.
    let stats = runc_root.join("k8s.io-shunt");
    let report = stats.join(&cid).join("stats.json");
    let st = Stats::parse(&std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{}: {e}", report.display())));
    assert_eq!(st.processes(), 2, "sh and the mkdir it forks: {}", st.0);
    assert_eq!(st.total("denied"), 1, "{}", st.0);
    assert_eq!(st.total("trapped"), 0, "{}", st.0);
    // Three lines, one write each.
    assert_eq!(calls(&st, "write"), 3, "{}", st.0);
    assert!(!stats.join(&pod_id).exists(), "the sandbox ran on shunt");
    cri(&["rm", &cid]);
    cri(&["stopp", &pod_id]);
    cri(&["rmp", &pod_id]);
    d.stop().unwrap();
}

