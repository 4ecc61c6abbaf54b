//! What an instance is under `shunt run`: the program and everything it
//! starts. A kill rule hit in any of its processes ends all of them; what
//! the program leaves running ends with it and is counted; nothing of it
//! outlives `shunt run` — not a process, not its directory in /dev/shm —
//! even when `shunt run` itself is killed.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use shunt_tests::*;

const LIMIT: Duration = Duration::from_secs(120);

fn kill_policy(dir: &Path) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, "[syscalls]\nunshare = \"kill\"\n").unwrap();
    p.to_string_lossy().into_owned()
}

/// `shunt run` with its instance directories in `root`.
fn shunt_run(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(shunt());
    cmd.env("SHUNT_INSTANCE_ROOT", root).arg("run").args(args);
    cmd
}

fn instance_dirs(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("shunt-")).collect())
        .unwrap_or_default()
}

/// A pidfd for `pid`, or `None` if it is not running.
fn pidfd(pid: i32) -> Option<i32> {
    // SAFETY: pidfd_open(2) takes no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then_some(fd as i32)
}

/// Waits (at most `limit`) for the process behind `fd` to end.
fn ends_within(fd: i32, limit: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd on the stack.
    unsafe { libc::poll(&mut p, 1, limit.as_millis() as i32) == 1 }
}

#[test]
fn a_kill_rule_hit_in_a_child_ends_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let policy = kill_policy(dir.path());
    // The child dies of the rule; its parent would carry on for ever.
    let mut cmd = shunt_run(dir.path(), &["--policy", &policy, "--", "sh", "-c", "unshare --uts true; exec sleep 1000"]);
    let o = run(cmd, None, LIMIT);
    assert_eq!(o.status.signal(), Some(libc::SIGSYS), "the instance ends as by SIGSYS: {:?}\n{}", o.status, o.stderr_str());
    let err = o.stderr_str();
    assert!(err.contains("policy killed the instance") && err.contains("called unshare"), "{err}");

    // A parent that exits normally afterwards does not make it a success.
    cmd = shunt_run(dir.path(), &["--policy", &policy, "--", "sh", "-c", "unshare --uts true; exit 0"]);
    let o = run(cmd, None, LIMIT);
    assert_eq!(o.status.signal(), Some(libc::SIGSYS), "{:?}\n{}", o.status, o.stderr_str());
    assert!(instance_dirs(dir.path()).is_empty());
}

#[test]
fn what_the_program_leaves_running_ends_with_it_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    // A python process is orphaned (its subshell exits at once); once it
    // runs it tells the shell its pid, and the shell exits.
    let orphan = r#"import os, time; f = open("ready", "w"); f.write(str(os.getpid())); f.close(); time.sleep(1000)"#;
    let script = format!("mkfifo ready; (python3 -c '{orphan}' &); read pid < ready; echo $pid");
    let mut cmd = shunt_run(dir.path(), &["--stats", stats.to_str().unwrap(), "--", "sh", "-c", &script]);
    cmd.current_dir(dir.path());
    let o = run(cmd, None, LIMIT);
    assert!(o.status.success(), "{}", o.stderr_str());
    let pid: i32 = o.stdout_str().trim().parse().unwrap();
    if let Some(fd) = pidfd(pid) {
        let gone = ends_within(fd, Duration::ZERO);
        // SAFETY: kill(2) of the orphan this test made, so it does not linger.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(gone, "the orphan (pid {pid}) outlived shunt run");
    }
    assert!(
        o.stderr_str().contains("1 process the program left running was killed with it"),
        "{}",
        o.stderr_str()
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let by_program = v["by_program"].as_object().unwrap();
    let (name, python) = by_program.iter().find(|(n, _)| n.starts_with("python")).expect("the orphan is counted");
    assert_eq!(python["processes"], 1, "{name}: {python}");
    assert!(python["redirected"].as_u64().unwrap() + python["trapped"].as_u64().unwrap() > 100, "{python}");
    assert!(instance_dirs(dir.path()).is_empty());
}

#[test]
fn a_late_exec_cannot_bring_the_instance_directory_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("instances");
    std::fs::create_dir(&root).unwrap();
    // A child waits on a FIFO, then execs: after shunt run, that exec would
    // install the runtime again and recreate the instance directory.
    let mut cmd = shunt_run(&root, &["--", "sh", "-c", "mkfifo go; (read x < go; exec true) & echo $!"]);
    cmd.current_dir(dir.path());
    let o = run(cmd, None, LIMIT);
    assert!(o.status.success(), "{}", o.stderr_str());
    let pid: i32 = o.stdout_str().trim().parse().unwrap();
    let fd = pidfd(pid);
    // O_NONBLOCK: succeeds only if the child is still there to read.
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(dir.path().join("go"));
    match opened {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "{e}"),
        Ok(mut f) => {
            use std::io::Write;
            let _ = f.write_all(b"x\n");
            drop(f);
            if let Some(fd) = fd {
                ends_within(fd, LIMIT);
            }
            panic!("the child outlived shunt run; instance directories now: {:?}", instance_dirs(&root));
        }
    }
    assert!(instance_dirs(&root).is_empty(), "{:?}", instance_dirs(&root));
}

#[test]
fn a_killed_shunt_run_takes_its_instance_along_and_the_next_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = shunt_run(dir.path(), &["--", "sh", "-c", "echo $$; exec sleep 1000"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let pid: i32 = line.trim().parse().unwrap();
    let fd = pidfd(pid).expect("the program runs");
    assert_eq!(instance_dirs(dir.path()).len(), 1);
    child.kill().unwrap(); // SIGKILL: shunt cannot clean up
    child.wait().unwrap();
    let gone = ends_within(fd, LIMIT);
    if !gone {
        // SAFETY: kill(2) of the program this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(gone, "the program outlived its supervisor");
    // The dead supervisor's directory (32 MiB segments) is still there …
    assert_eq!(instance_dirs(dir.path()).len(), 1);
    // … until the next shunt run starts.
    let o = run(shunt_run(dir.path(), &["--", "true"]), None, LIMIT);
    assert!(o.status.success(), "{}", o.stderr_str());
    assert!(instance_dirs(dir.path()).is_empty(), "{:?}", instance_dirs(dir.path()));
}

#[test]
fn the_stats_report_replaces_only_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.txt");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (bad, what) in [(&link, "symbolic link"), (&fifo, "not a regular file"), (&dir.path().to_path_buf(), "directory")] {
        let o = run(shunt_run(dir.path(), &["--stats", bad.to_str().unwrap(), "--", "true"]), None, LIMIT);
        assert_eq!(o.status.code(), Some(2), "{}: {}", bad.display(), o.stderr_str());
        assert!(o.stderr_str().contains(what), "{}: {}", bad.display(), o.stderr_str());
        let mut env = shunt_run(dir.path(), &["--", "true"]);
        env.env("SHUNT_STATS", bad);
        let o = run(env, None, LIMIT);
        assert_eq!(o.status.code(), Some(2), "SHUNT_STATS={}: {}", bad.display(), o.stderr_str());
    }
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // A regular file is replaced whole.
    let o = run(shunt_run(dir.path(), &["--stats", target.to_str().unwrap(), "--", "true"]), None, LIMIT);
    assert!(o.status.success(), "{}", o.stderr_str());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(v["processes"], 1);
    assert!(instance_dirs(dir.path()).is_empty());
}

/// The same in the default root, /dev/shm, where other tests' instances
/// live too (so it looks at this instance's directory by name), with a
/// cgroup below the instance's own — what a program that runs shunt (or
/// any cgroup manager) itself leaves. `rmdir` of a cgroup with a child
/// fails, and the next start used to keep the dead instance's directory,
/// 32 MiB segments and all, for ever.
#[test]
fn a_killed_shunt_run_in_dev_shm_is_cleaned_up_by_name_even_with_nested_cgroups() {
    let cg2 = "/sys/fs/cgroup/unified";
    assert!(Path::new(cg2).join("cgroup.procs").exists(), "this test needs the cgroup2 hierarchy at {cg2}");
    // The program names its cgroup (= the instance's name), nests one below
    // it, then waits.
    let script = format!(
        "c=$(sed -n 's/^0:://p' /proc/self/cgroup); mkdir {cg2}$c/shunt {cg2}$c/shunt/inner || exit 9; echo $$ $c; exec sleep 1000"
    );
    let mut cmd = Command::new(shunt());
    cmd.env_remove("SHUNT_INSTANCE_ROOT").args(["run", "--", "sh", "-c", &script]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let (pid, cgroup) = line.trim().split_once(' ').unwrap_or_else(|| panic!("the program said {line:?}"));
    let pid: i32 = pid.parse().unwrap();
    let name = cgroup.rsplit('/').next().unwrap().to_string();
    assert!(name.starts_with("shunt-"), "the instance's cgroup: {cgroup}");
    let dir = Path::new("/dev/shm").join(&name);
    let cg = format!("{cg2}{cgroup}");
    assert!(dir.join("owner.lock").is_file(), "{} is the instance's directory", dir.display());
    let fd = pidfd(pid).expect("the program runs");
    child.kill().unwrap(); // SIGKILL: shunt cannot clean up
    child.wait().unwrap();
    let gone = ends_within(fd, LIMIT);
    if !gone {
        // SAFETY: kill(2) of the program this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(gone, "the program outlived its supervisor");
    let o = run({
        let mut c = Command::new(shunt());
        c.env_remove("SHUNT_INSTANCE_ROOT").args(["run", "--", "true"]);
        c
    }, None, LIMIT);
    assert!(o.status.success(), "{}", o.stderr_str());
    assert!(!dir.exists(), "{} outlived the next start: {:?}", dir.display(), std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()));
    assert!(!Path::new(&cg).exists(), "its cgroup {cg} outlived the next start");
}
