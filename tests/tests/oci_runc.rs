//! `shunt-oci` against runc, with no containerd: runc is the oracle. The
//! same bundle (busybox-static, runc's own default spec) is run through
//! runc and through `shunt-oci`, and what a container manager reads must
//! be the same — create/start/state/ps/kill/delete, the `state` fields,
//! stdout, the exit status — while the shunt one is counted: busybox is an
//! unmodified static binary, whose syscall sites are rewritten at load.
//! Then bad input: one line, non-zero, in runc's JSON log when asked.
//!
//! Needs root, runc and busybox-static (scripts/setup.sh installs them).
//! The container's exit status is read as containerd's shim reads it: the
//! test is the child subreaper, so the orphaned container process is its
//! child to wait for.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use shunt_tests::{Stats, maps_file, target_dir};

const BUSYBOX: &str = "/bin/busybox";

fn shunt_oci() -> PathBuf {
    let p = target_dir().join("shunt-oci");
    assert!(p.is_file(), "{} is missing: cargo build --release --workspace", p.display());
    p
}

fn runc() -> PathBuf {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("runc is missing: apt-get install runc (scripts/setup.sh does)")
}

/// A bundle in `dir` from `runc spec`, with busybox as its root and
/// `args` as its process.
fn bundle(dir: &Path, args: &[&str]) -> PathBuf {
    assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} is missing: apt-get install busybox-static (scripts/setup.sh does)");
    std::fs::create_dir_all(dir.join("rootfs/bin")).unwrap();
    std::fs::copy(BUSYBOX, dir.join("rootfs/bin/busybox")).unwrap();
    let out = Command::new(runc()).arg("spec").current_dir(dir).output().unwrap();
    assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["terminal"] = Value::Bool(false);
    c["process"]["args"] = serde_json::json!(args);
    c["annotations"] = serde_json::json!({"org.example.kept": "yes"});
    // A cgroup of its own (as containerd gives each container), which runc
    // removes at delete; `ps` lists its members.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c["linux"]["cgroupsPath"] = format!("/shunt-oci-test-{}-{n}", std::process::id()).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    dir.to_path_buf()
}

/// One OCI runtime (runc or shunt-oci) with its own state root.
struct Runtime {
    bin: PathBuf,
    root: PathBuf,
}

impl Runtime {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// Runs a command to completion: (exit code, stdout, stderr).
    fn call(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn state(&self, id: &str) -> Value {
        let (code, out, err) = self.call(&["state", id]);
        assert_eq!(code, 0, "{} state {id}: {err}", self.bin.display());
        serde_json::from_str(&out).unwrap()
    }
}

/// What a container manager sees of one container's life.
#[derive(Debug, PartialEq)]
struct Seen {
    created: Value,
    running_status: Value,
    ps_pids: usize,
    stdout: String,
    exit: (Option<i32>, Option<i32>),
    stopped_status: Value,
    delete: i32,
    state_after_delete: i32,
}

/// The `state` fields containerd reads, with the bundle's own paths made
/// relative (the two runs use two bundles).
fn fields(s: &Value, bundle: &Path) -> Value {
    let rel = |k: &str| s[k].as_str().map(|p| p.replacen(&bundle.display().to_string(), "<bundle>", 1));
    serde_json::json!({
        "ociVersion": s["ociVersion"], "id": s["id"], "status": s["status"], "bundle": rel("bundle"),
        "rootfs": rel("rootfs"), "annotations": s["annotations"], "owner": s["owner"], "has_pid": s["pid"].as_u64().is_some_and(|p| p > 0),
    })
}

/// Deletes the container (forced) when a failed assertion leaves it.
struct Removed<'a>(&'a Runtime, &'a str);

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = self.0.call(&["delete", "--force", self.1]);
    }
}

/// The files of the runtime's helper executable a process maps, of the
/// two it can be (`/.shunt/shunt-load`, or `/.shunt/shunt` without it).
fn helpers_mapped(pid: u32) -> Vec<&'static str> {
    ["/.shunt/shunt-load", "/.shunt/shunt"].into_iter().filter(|p| maps_file(pid, p)).collect()
}

/// One container's life; `running` sees its process while it runs.
fn life(rt: &Runtime, bundle: &Path, id: &str, running: impl FnOnce(u32)) -> Seen {
    let _removed = Removed(rt, id);
    // The container's stdout is this pipe; its process becomes our child.
    let mut create = rt.cmd(&["create", "--bundle", bundle.to_str().unwrap(), id]);
    // (stderr to a file: the container holds the pipe open as long as it runs)
    let err_file = bundle.join("create.err");
    let errs = std::fs::File::create(&err_file).unwrap();
    // stdin: a pipe held open, so the process waits in `read` until killed.
    let mut child = create.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(errs).spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let st = child.wait().unwrap();
    let err = std::fs::read_to_string(&err_file).unwrap();
    assert!(st.success(), "{} create: {err}", rt.bin.display());
    let created = rt.state(id);
    let pid = created["pid"].as_i64().unwrap() as i32;
    let (code, _, err) = rt.call(&["start", id]);
    assert_eq!(code, 0, "start: {err}");
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap(); // the process says it runs
    running(pid as u32);
    let running = rt.state(id);
    let (code, ps, err) = rt.call(&["ps", "--format", "json", id]);
    assert_eq!(code, 0, "ps: {err}");
    let ps: Vec<i64> = serde_json::from_str(&ps).unwrap_or_else(|e| panic!("ps {ps:?}: {e}; {}", std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()));
    assert!(ps.contains(&(pid as i64)), "ps {ps:?} lacks the init pid {pid}");
    let (code, _, err) = rt.call(&["kill", id, "KILL"]);
    assert_eq!(code, 0, "kill: {err}");
    let mut status = 0;
    // SAFETY: waiting for our own child (we are its subreaper).
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    let status = std::process::ExitStatus::from_raw(status);
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let stopped = rt.state(id);
    let (delete, _, err) = rt.call(&["delete", id]);
    assert_eq!(delete, 0, "delete: {err}");
    let (after, _, _) = rt.call(&["state", id]);
    Seen {
        created: fields(&created, bundle),
        running_status: running["status"].clone(),
        ps_pids: ps.len(),
        stdout: line + &rest,
        exit: (status.code(), status.signal()),
        stopped_status: stopped["status"].clone(),
        delete,
        state_after_delete: after,
    }
}

#[test]
fn runc_is_the_oracle_for_a_containers_life() {
    // SAFETY: prctl on this process; the test binary is ours.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    let work = tempfile::tempdir().unwrap();
    let args = ["/bin/busybox", "sh", "-c", "echo ready; read x; echo never"];
    let plain = Runtime { bin: runc(), root: work.path().join("runc-root") };
    let shunt = Runtime { bin: shunt_oci(), root: work.path().join("shunt-root") };
    let b1 = bundle(&work.path().join("b1"), &args);
    let b2 = bundle(&work.path().join("b2"), &args);
    let native = life(&plain, &b1, "c1", |pid| assert_eq!(helpers_mapped(pid), Vec::<&str>::new()));
    // busybox is static: it runs mapped into the small helper, as the
    // supervisor starts it, not into the whole shunt.
    let on_shunt = life(&shunt, &b2, "c1", |pid| assert_eq!(helpers_mapped(pid), ["/.shunt/shunt-load"], "pid {pid}"));
    assert_eq!(native, on_shunt);
    assert_eq!(native.exit, (None, Some(libc::SIGKILL)));

    // Counted: busybox is not shunt-built, but its syscall sites are
    // rewritten at load, so every call reaches the gate and none traps;
    // one `write` for the one line it printed.
    let stats_file = work.path().join("shunt-root-shunt/c1/stats.json");
    let stats = Stats::parse(&std::fs::read_to_string(&stats_file).unwrap());
    assert_eq!(stats.total("trapped"), 0, "{}", stats.0);
    assert!(stats.total("redirected") > 0, "{}", stats.0);
    assert_eq!(stats.get("write", "redirected"), 1, "one write for `echo ready`: {}", stats.0);
    assert_eq!(stats.processes(), 1);
    // runc's bundle itself was edited, the other fields kept.
    let edited: Value = serde_json::from_slice(&std::fs::read(b2.join("config.json")).unwrap()).unwrap();
    assert_eq!(edited["annotations"]["org.example.kept"], "yes");
    assert_eq!(
        edited["process"]["args"],
        serde_json::json!(["/.shunt/shunt-load", "load", "--argv0", "/bin/busybox", "--", "/bin/busybox", "sh", "-c", "echo ready; read x; echo never"]),
        "the supervisor's command line"
    );
    let env = edited["process"]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "SHUNT_EXE=/.shunt/shunt-load"), "{env:?}");
}

/// An installation without `shunt-load` (shunt-oci, shunt and
/// libshunt.so, as hard links of this build): the supervisor's fallback
/// rule holds in containers too — the static program runs in
/// `/.shunt/shunt load …` with the same arguments, and its life, output
/// and counts are what they are with shunt-load.
#[test]
fn without_shunt_load_a_static_program_runs_in_shunt() {
    // SAFETY: prctl on this process; the test binary is ours.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    // Beside the build (a hard link needs the same filesystem).
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let install = work.path().join("bin");
    std::fs::create_dir(&install).unwrap();
    for name in ["shunt-oci", "shunt", "libshunt.so"] {
        let from = target_dir().join(name);
        std::fs::hard_link(&from, install.join(name)).or_else(|_| std::fs::copy(&from, install.join(name)).map(drop)).unwrap();
    }
    assert!(target_dir().join("shunt-load").is_file(), "the workspace build has shunt-load; this installation leaves it out");
    let args = ["/bin/busybox", "sh", "-c", "echo ready; read x; echo never"];
    let plain = Runtime { bin: runc(), root: work.path().join("runc-root") };
    let shunt = Runtime { bin: install.join("shunt-oci"), root: work.path().join("shunt-root") };
    let b1 = bundle(&work.path().join("b1"), &args);
    let b2 = bundle(&work.path().join("b2"), &args);
    let native = life(&plain, &b1, "f1", |_| {});
    let on_shunt = life(&shunt, &b2, "f1", |pid| assert_eq!(helpers_mapped(pid), ["/.shunt/shunt"], "pid {pid}"));
    assert_eq!(native, on_shunt);
    let edited: Value = serde_json::from_slice(&std::fs::read(b2.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        edited["process"]["args"],
        serde_json::json!(["/.shunt/shunt", "load", "--argv0", "/bin/busybox", "--", "/bin/busybox", "sh", "-c", "echo ready; read x; echo never"])
    );
    let stats = Stats::parse(&std::fs::read_to_string(work.path().join("shunt-root-shunt/f1/stats.json")).unwrap());
    assert_eq!(stats.total("trapped"), 0, "{}", stats.0);
    assert_eq!(stats.get("write", "redirected"), 1, "one write for `echo ready`: {}", stats.0);
}

#[test]
fn the_same_run_gives_the_same_output_and_exit_code() {
    let work = tempfile::tempdir().unwrap();
    let args = ["/bin/busybox", "sh", "-c", "echo out; echo err >&2; exit 3"];
    let mut seen = Vec::new();
    for (i, bin) in [runc(), shunt_oci()].into_iter().enumerate() {
        let b = bundle(&work.path().join(format!("b{i}")), &args);
        let rt = Runtime { bin, root: work.path().join(format!("root{i}")) };
        let out = rt.cmd(&["run", "--bundle", b.to_str().unwrap(), "r1"]).stdin(Stdio::null()).output().unwrap();
        seen.push((out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    assert_eq!(seen[0], (Some(3), "out\n".into(), "err\n".into()));
    assert_eq!(seen[0], seen[1]);
}

/// Runs shunt-oci with a JSON log; returns (exit code, stderr, the log).
fn failing(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("log.json");
    let out = Command::new(shunt_oci())
        .args(["--root", work.path().join("root").to_str().unwrap(), "--log", log.to_str().unwrap(), "--log-format", "json"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(work.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into(), std::fs::read_to_string(&log).unwrap_or_default())
}

fn assert_one_line_error(what: &str, (code, stderr, log): (i32, String, String), says: &str) {
    assert_ne!(code, 0, "{what}: exit 0");
    assert_eq!(stderr.lines().count(), 1, "{what}: not one line: {stderr:?}");
    assert!(stderr.contains(says), "{what}: {stderr:?} does not say {says:?}");
    let entries: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: log line {l:?}: {e}"))).collect();
    assert_eq!(entries.len(), 1, "{what}: log {log:?}");
    assert_eq!(entries[0]["level"], "error");
    assert!(entries[0]["msg"].as_str().unwrap().contains(says), "{what}: {log}");
}

#[test]
fn bad_input_is_one_line_in_runcs_log_format() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_one_line_error("no config.json", failing(&["create", "--bundle", empty.to_str().unwrap(), "x"], &[]), "config.json");
    assert_one_line_error("unknown command", failing(&["frobnicate", "x"], &[]), "unknown command \"frobnicate\"");

    let b = bundle(&work.path().join("v2"), &["/bin/busybox", "true"]);
    let path = b.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["ociVersion"] = "2.0.0".into();
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    assert_one_line_error("spec version", failing(&["create", "--bundle", b.to_str().unwrap(), "x"], &[]), "\"2.0.0\" is not supported");

    let b = bundle(&work.path().join("ok"), &["/bin/busybox", "true"]);
    assert_one_line_error(
        "missing runc",
        failing(&["create", "--bundle", b.to_str().unwrap(), "x"], &[("SHUNT_OCI_RUNC", "/nonexistent/runc")]),
        "SHUNT_OCI_RUNC=/nonexistent/runc: no such file",
    );
    let b = bundle(&work.path().join("typo"), &["/bin/busybox", "true"]);
    let path = b.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["annotations"] = serde_json::json!({"io.shunt.polcy": "x"});
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    assert_one_line_error("annotation typo", failing(&["create", "--bundle", b.to_str().unwrap(), "x"], &[]), "unknown annotation io.shunt.polcy");
    // runc's own refusal (a bind mount of nothing), after shunt-oci's edit:
    // runc's error, and the delete that follows leaves no record behind.
    let b = bundle(&work.path().join("nomount"), &["/bin/busybox", "true"]);
    let path = b.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/x", "type": "bind", "source": "/nonexistent/src", "options": ["rbind"]}));
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    let rt = Runtime { bin: shunt_oci(), root: work.path().join("nomount-root") };
    let (code, _, err) = rt.call(&["create", "--bundle", b.to_str().unwrap(), "nm"]);
    assert_ne!(code, 0, "runc created a container with a missing bind source");
    assert!(err.contains("/nonexistent/src"), "{err}");
    let record = work.path().join("nomount-root-shunt/nm.json");
    assert!(record.is_file(), "the edit's record");
    let (code, _, _) = rt.call(&["delete", "nm"]);
    assert_ne!(code, 0, "runc has no container nm to delete");
    assert!(!record.exists(), "{} outlived the container", record.display());

    let b = bundle(&work.path().join("absent"), &["nosuchprogram"]);
    assert_one_line_error("no program", failing(&["create", "--bundle", b.to_str().unwrap(), "x"], &[]), "nosuchprogram: not found");
}
