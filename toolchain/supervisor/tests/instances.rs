//! The supervisor with real programs: natively and on the runtime, one
//! supervisor hosting several instances, kills that stay inside their
//! instance, orphans that are the instance's, events while it runs.
//!
//! Runtime tests use the `shunt` binary and `libshunt.so` of the same cargo
//! profile (the workspace build makes them). Every wait is on an event or a
//! pidfd; nothing sleeps to synchronise.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shunt_supervisor::*;

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn on_runtime(policy: Option<&str>) -> Runtime {
    let dir = target_dir();
    let (exe, lib) = (dir.join("shunt"), dir.join("libshunt.so"));
    assert!(
        exe.is_file() && lib.is_file(),
        "{} or {} is missing: build the workspace first (`cargo build --release --workspace`)",
        exe.display(),
        lib.display()
    );
    Runtime::Shunt(ShuntOptions {
        policy: policy.map(|p| Policy::from_toml("test policy", p).unwrap()),
        exe: Some(exe),
        lib: Some(lib),
        ..Default::default()
    })
}

/// A supervisor whose instance directories are in a fresh directory.
fn supervisor() -> (Supervisor, tempfile::TempDir) {
    supervisor_with(true)
}

/// The same, without cgroups: containment by process group and reaper only.
fn supervisor_with(cgroups: bool) -> (Supervisor, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let sup = Supervisor::start_with(Options { instance_root: root.path().to_path_buf(), cgroups }).unwrap();
    if cgroups {
        assert_eq!(sup.cgroup_unavailable(), None, "this machine has a writable cgroup2 hierarchy");
    }
    (sup, root)
}

/// Events of one instance until it exits: (output lines by stream, other events, exit).
struct Seen {
    stdout: Vec<String>,
    stderr: Vec<String>,
    others: Vec<EventKind>,
    exit: Exit,
}

fn until_exit(events: &mut Events, id: InstanceId) -> Seen {
    let (mut stdout, mut stderr, mut others) = (vec![], vec![], vec![]);
    loop {
        let ev = events.blocking_recv().expect("the channel closed before the instance exited");
        if ev.instance != Some(id) {
            continue;
        }
        match ev.kind {
            EventKind::Output { stream: Stream::Stdout, line } => stdout.push(String::from_utf8_lossy(&line).into()),
            EventKind::Output { stream: Stream::Stderr, line } => stderr.push(String::from_utf8_lossy(&line).into()),
            EventKind::Exited(exit) => return Seen { stdout, stderr, others, exit },
            other => others.push(other),
        }
    }
}

/// The next output line of `id` on stdout.
fn next_line(events: &mut Events, id: InstanceId) -> String {
    loop {
        let ev = events.blocking_recv().expect("channel closed");
        match ev.kind {
            EventKind::Output { stream: Stream::Stdout, line } if ev.instance == Some(id) => {
                return String::from_utf8_lossy(&line).into()
            }
            EventKind::Exited(e) if ev.instance == Some(id) => panic!("exited before printing: {e:?}"),
            _ => {}
        }
    }
}

fn pidfd(pid: i32) -> OwnedFd {
    rustix::process::pidfd_open(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::PidfdFlags::empty())
        .unwrap_or_else(|e| panic!("pid {pid} is not running: {e}"))
}

/// Whether the process behind `fd` has ended (poll without waiting).
fn ended(fd: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    rustix::event::poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })).unwrap() == 1
}

#[test]
fn native_program_output_lines_and_exit_code() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    let spec = LaunchSpec::new("sh")
        .args(["-c", "echo one; echo two >&2; printf 'no newline'; exit 3"])
        .stdout(Stdio::Lines)
        .stderr(Stdio::Lines);
    let inst = sup.spawn(spec, &tx).unwrap();
    let seen = until_exit(&mut events, inst.id());
    assert_eq!(seen.stdout, ["one", "no newline"]);
    assert_eq!(seen.stderr, ["two"]);
    assert!(matches!(seen.others.first(), Some(EventKind::Started { pid }) if *pid == inst.pid()), "{:?}", seen.others);
    assert_eq!(seen.exit.status.code(), Some(3));
    assert!(seen.exit.killed.is_none() && seen.exit.stats.is_none());
    assert_eq!(inst.wait().status.code(), Some(3));
    assert!(inst.dir().is_some_and(|d| !d.exists()), "the instance directory is removed");
}

#[test]
fn policy_kill_in_one_instance_leaves_the_other_running() {
    policy_kill_leaves_the_other_instance(true);
}

#[test]
fn without_cgroups_a_policy_kill_leaves_the_other_instance_running() {
    policy_kill_leaves_the_other_instance(false);
}

fn policy_kill_leaves_the_other_instance(cgroups: bool) {
    let (sup, _root) = supervisor_with(cgroups);
    let (tx, mut events) = sup.events();
    // Two instances on the runtime under one supervisor; the second calls
    // what its policy kills for.
    let survivor = sup
        .spawn(LaunchSpec::new("sh").args(["-c", "echo up; exec sleep 1000"]).stdout(Stdio::Lines).runtime(on_runtime(None)), &tx)
        .unwrap();
    assert_eq!(next_line(&mut events, survivor.id()), "up");
    let victim = sup
        .spawn(
            LaunchSpec::new("unshare").args(["--uts", "true"]).runtime(on_runtime(Some("[syscalls]\nunshare = \"kill\"\n"))),
            &tx,
        )
        .unwrap();
    let seen = until_exit(&mut events, victim.id());
    assert!(
        matches!(&seen.exit.killed, Some(KillReason::Policy { syscall, .. }) if syscall == "unshare"),
        "{:?}",
        seen.exit
    );
    assert_eq!(seen.exit.status.signal(), Some(libc::SIGSYS), "a policy kill ends the instance as by SIGSYS");
    assert!(seen.others.iter().any(|e| matches!(e, EventKind::PolicyKill { syscall, .. } if syscall == "unshare")));

    // The other instance is untouched: still running, and it ends the way
    // it is asked to, not by a kill.
    assert!(survivor.exit().is_none(), "the other instance was ended: {:?}", survivor.exit());
    assert!(!ended(&pidfd(survivor.pid())));
    survivor.signal(libc::SIGTERM).unwrap();
    let seen = until_exit(&mut events, survivor.id());
    assert!(seen.exit.killed.is_none(), "{:?}", seen.exit);
    assert_eq!(seen.exit.status.signal(), Some(libc::SIGTERM));
    let stats = seen.exit.stats.expect("stats of the survivor");
    assert!(stats.processes >= 1);
}

#[test]
fn kill_rule_in_a_child_ends_the_whole_instance() {
    kill_rule_in_a_child(true);
}

#[test]
fn without_cgroups_a_kill_rule_in_a_child_ends_the_whole_instance() {
    kill_rule_in_a_child(false);
}

fn kill_rule_in_a_child(cgroups: bool) {
    let (sup, _root) = supervisor_with(cgroups);
    let (tx, mut events) = sup.events();
    // The parent outlives the child that is killed, and would run forever.
    let spec = LaunchSpec::new("sh")
        .args(["-c", "unshare --uts true; echo child gone; exec sleep 1000"])
        .stdout(Stdio::Lines)
        .runtime(on_runtime(Some("[syscalls]\nunshare = \"kill\"\n")));
    let inst = sup.spawn(spec, &tx).unwrap();
    let seen = until_exit(&mut events, inst.id());
    assert!(matches!(&seen.exit.killed, Some(KillReason::Policy { .. })), "{:?}", seen.exit);
    assert_eq!(seen.exit.status.signal(), Some(libc::SIGSYS));
    let stats = seen.exit.stats.unwrap();
    let denied = stats.get("unshare", shunt_stats::Class::Denied);
    assert_eq!(denied, 1, "the forbidden call is counted as denied");
}

#[test]
fn orphans_are_killed_with_the_instance_and_counted() {
    orphans_are_killed_and_counted(true);
}

#[test]
fn without_cgroups_orphans_are_killed_and_counted_too() {
    orphans_are_killed_and_counted(false);
}

fn orphans_are_killed_and_counted(cgroups: bool) {
    let (sup, _root) = supervisor_with(cgroups);
    let (tx, mut events) = sup.events();
    let work = tempfile::tempdir().unwrap();
    // A python process is orphaned (its subshell exits at once); it tells
    // the shell its pid once it runs. The shell then waits on a second fifo
    // until the test holds a pidfd of the orphan, and exits: without that
    // handshake the supervisor may kill the orphan (the instance ended)
    // before the test can open it.
    let orphan = r#"import os, time; f = open("ready", "w"); f.write(str(os.getpid())); f.close(); time.sleep(1000)"#;
    let script = format!("mkfifo ready go; (python3 -c '{orphan}' &); read pid < ready; echo $pid; read _ < go");
    let spec = LaunchSpec::new("sh").args(["-c", &script]).current_dir(work.path()).stdout(Stdio::Lines).runtime(on_runtime(None));
    let inst = sup.spawn(spec, &tx).unwrap();
    let orphan: i32 = next_line(&mut events, inst.id()).parse().unwrap();
    let orphan_fd = pidfd(orphan);
    // Opening the fifo for writing waits for the shell to open it for reading.
    std::fs::write(work.path().join("go"), "go\n").unwrap();
    let seen = until_exit(&mut events, inst.id());
    assert!(ended(&orphan_fd), "the orphan outlived its instance");
    assert_eq!(seen.exit.status.code(), Some(0), "the program's own status");
    assert!(seen.exit.killed.is_none());
    assert_eq!(seen.exit.leftovers, 1, "{:?}", seen.exit);
    let stats = seen.exit.stats.unwrap_or_else(|| panic!("no stats: {:?}", seen.exit.stats_error));
    let python = stats.by_program.iter().find(|(name, _)| name.starts_with("python")).map(|(_, p)| p.clone());
    let python = python.unwrap_or_else(|| panic!("the orphan is not counted: {:?}", stats.by_program));
    assert_eq!(python.processes, 1);
    assert!(python.counts.entries() > 100, "the orphan's calls are counted: {python:?}");
}

#[test]
fn kill_reaches_processes_that_left_the_process_group() {
    kill_reaches_setsid_escapees(true);
}

#[test]
fn without_cgroups_kill_reaches_processes_that_left_the_process_group() {
    kill_reaches_setsid_escapees(false);
}

fn kill_reaches_setsid_escapees(cgroups: bool) {
    let (sup, _root) = supervisor_with(cgroups);
    let (tx, mut events) = sup.events();
    let spec = LaunchSpec::new("sh").args(["-c", "setsid sleep 1000 & echo $!; wait"]).stdout(Stdio::Lines);
    let inst = sup.spawn(spec, &tx).unwrap();
    let escapee = pidfd(next_line(&mut events, inst.id()).parse().unwrap());
    inst.kill();
    let seen = until_exit(&mut events, inst.id());
    assert_eq!(seen.exit.killed, Some(KillReason::Requested));
    assert_eq!(seen.exit.status.signal(), Some(libc::SIGKILL));
    assert!(ended(&escapee), "a setsid'd process survived its instance's kill");
}

#[test]
fn terminate_kills_when_the_grace_expires() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    let spec = LaunchSpec::new("sh").args(["-c", "trap '' TERM; echo ready; while :; do read x; done"]).stdout(Stdio::Lines);
    let inst = sup.spawn(spec, &tx).unwrap();
    assert_eq!(next_line(&mut events, inst.id()), "ready");
    inst.terminate(Duration::from_millis(50));
    let seen = until_exit(&mut events, inst.id());
    assert_eq!(seen.exit.killed, Some(KillReason::GraceExpired));
    assert_eq!(seen.exit.status.signal(), Some(libc::SIGKILL));

    // A program that honours SIGTERM ends by it, not by the kill.
    let inst = sup.spawn(LaunchSpec::new("sh").args(["-c", "echo ready; exec sleep 1000"]).stdout(Stdio::Lines), &tx).unwrap();
    assert_eq!(next_line(&mut events, inst.id()), "ready");
    inst.terminate(Duration::from_secs(600));
    let seen = until_exit(&mut events, inst.id());
    assert_eq!(seen.exit.killed, None);
    assert_eq!(seen.exit.status.signal(), Some(libc::SIGTERM));
}

#[test]
fn stats_are_readable_while_the_instance_runs() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    let spec = LaunchSpec::new("sh").args(["-c", "echo ready; exec sleep 1000"]).stdout(Stdio::Lines).runtime(on_runtime(None));
    let inst = sup.spawn(spec, &tx).unwrap();
    assert_eq!(next_line(&mut events, inst.id()), "ready");
    let live = inst.stats().unwrap().expect("live stats");
    assert!(live.processes >= 1);
    assert!(live.total(shunt_stats::Class::Redirected) + live.total(shunt_stats::Class::Trapped) > 0);
    inst.kill();
    let exit = until_exit(&mut events, inst.id()).exit;
    let last = exit.stats.unwrap();
    assert!(last.processes >= live.processes);
}

#[test]
fn stats_file_is_written_and_bad_paths_are_refused() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("s.json");
    let Runtime::Shunt(mut o) = on_runtime(None) else { unreachable!() };
    o.stats_file = Some(file.clone());
    let inst = sup.spawn(LaunchSpec::new("true").runtime(Runtime::Shunt(o.clone())), &tx).unwrap();
    let exit = until_exit(&mut events, inst.id()).exit;
    assert!(exit.stats_error.is_none(), "{:?}", exit.stats_error);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["processes"], 1);

    for bad in ["/dev/null", out.path().to_str().unwrap()] {
        o.stats_file = Some(PathBuf::from(bad));
        let err = sup.spawn(LaunchSpec::new("true").runtime(Runtime::Shunt(o.clone())), &tx).unwrap_err();
        assert!(format!("{err:#}").contains("regular file"), "{bad}: {err:#}");
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(Path::new("/dev/null").metadata().unwrap().file_type().is_char_device(), "/dev/null was replaced");
}

#[test]
fn programs_that_cannot_start_are_refused_with_the_reason() {
    let (sup, root) = supervisor();
    let (tx, _events) = sup.events();
    let err = sup.spawn(LaunchSpec::new("no-such-program-here"), &tx).unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
    let err = sup.spawn(LaunchSpec::new("true").current_dir("/no/such/dir"), &tx).unwrap_err();
    assert!(format!("{err:#}").contains("working directory"), "{err:#}");
    let hook_fails = LaunchSpec::new("true").pre_exec(Box::new(|| Err(std::io::Error::from_raw_os_error(libc::EPERM))));
    let err = sup.spawn(hook_fails, &tx).unwrap_err();
    assert!(format!("{err:#}").contains("sandbox hook failed") && format!("{err:#}").contains("not permitted"), "{err:#}");
    let text = root.path().join("not-executable");
    std::fs::write(&text, "hello").unwrap();
    let err = sup.spawn(LaunchSpec::new(&text).runtime(on_runtime(None)), &tx).unwrap_err();
    assert!(format!("{err:#}").contains("not executable"), "{err:#}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "nothing left behind but the test's file");
}

#[test]
fn the_pre_exec_hook_runs_in_the_program_process() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    // The hook changes something only the program's process sees.
    let spec = LaunchSpec::new("sh")
        .args(["-c", "umask"])
        .stdout(Stdio::Lines)
        .pre_exec(Box::new(|| {
            // SAFETY: umask(2) only changes this process's file mode mask.
            unsafe { libc::umask(0o027) };
            Ok(())
        }));
    let inst = sup.spawn(spec, &tx).unwrap();
    assert_eq!(until_exit(&mut events, inst.id()).stdout, ["0027"]);
}

#[test]
fn memory_limit_is_enforced_or_reported() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    let spec = LaunchSpec::new("python3")
        .args(["-c", "x = bytearray(512 << 20); print('allocated')"])
        .stdout(Stdio::Lines)
        .memory_limit(64 << 20);
    let inst = sup.spawn(spec, &tx).unwrap();
    let seen = until_exit(&mut events, inst.id());
    eprintln!("memory limit: {:?}", inst.memory_limit());
    match inst.memory_limit() {
        MemoryLimit::Enforced { bytes, .. } => {
            assert_eq!(*bytes, 64 << 20);
            assert!(seen.stdout.is_empty(), "allocated past the limit");
            assert!(!seen.exit.status.success());
            assert_eq!(seen.exit.status.signal(), Some(libc::SIGKILL), "{:?}", seen.exit);
            assert!(seen.exit.oom_kills >= 1, "the OOM killer's kill is reported: {:?}", seen.exit);
        }
        MemoryLimit::NotEnforced { reason, .. } => {
            assert!(seen.others.iter().any(|e| matches!(e, EventKind::Warning { message } if message.contains(reason.as_str()))));
        }
        MemoryLimit::Unlimited => panic!("a limit was asked for"),
    }
}

#[test]
fn dropping_the_supervisor_ends_its_instances() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    let inst = sup.spawn(LaunchSpec::new("sh").args(["-c", "echo up; exec sleep 1000"]).stdout(Stdio::Lines), &tx).unwrap();
    assert_eq!(next_line(&mut events, inst.id()), "up");
    let fd = pidfd(inst.pid());
    drop(sup);
    assert!(ended(&fd), "the instance outlived its supervisor");
    assert_eq!(inst.exit().unwrap().killed, Some(KillReason::Shutdown));
}

#[test]
fn directories_left_by_a_dead_supervisor_are_removed_at_start() {
    let root = tempfile::tempdir().unwrap();
    // What a killed supervisor leaves: a directory with an unlocked owner
    // lock (and one of an older shunt, without a lock, which stays).
    let stale = root.path().join("shunt-stale1");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("owner.lock"), "").unwrap();
    std::fs::write(stale.join("1234-0.seg"), vec![0u8; 4096]).unwrap();
    let old = root.path().join("shunt-oldversion");
    std::fs::create_dir(&old).unwrap();
    let sup = Supervisor::start_with(Options { instance_root: root.path().to_path_buf(), cgroups: true }).unwrap();
    assert!(!stale.exists(), "stale instance directory kept");
    assert!(old.exists(), "a directory without an owner lock is not ours to remove");
    // A live supervisor's directory is not touched by another's start.
    let (tx, mut events) = sup.events();
    let inst = sup.spawn(LaunchSpec::new("sh").args(["-c", "echo up; exec sleep 1000"]).stdout(Stdio::Lines), &tx).unwrap();
    assert_eq!(next_line(&mut events, inst.id()), "up");
    let other = Supervisor::start_with(Options { instance_root: root.path().to_path_buf(), cgroups: true }).unwrap();
    assert!(inst.dir().unwrap().exists(), "another supervisor removed a live instance's directory");
    drop(other);
    inst.kill();
    until_exit(&mut events, inst.id());
}

#[test]
fn relayed_signals_arrive_as_events() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    sup.relay_signals(&[libc::SIGUSR2], &tx).unwrap();
    // An instance makes sure the relay is registered with the loop (the
    // registration is processed before the instance's own events).
    let inst = sup.spawn(LaunchSpec::new("true"), &tx).unwrap();
    until_exit(&mut events, inst.id());
    // SAFETY: kill(2) of our own process with a signal we handle.
    unsafe { libc::kill(std::process::id() as i32, libc::SIGUSR2) };
    loop {
        let ev = events.blocking_recv().unwrap();
        if let EventKind::Signal { signal, from_process } = ev.kind {
            assert_eq!(signal, libc::SIGUSR2);
            assert!(from_process);
            assert!(ev.instance.is_none());
            break;
        }
    }
}

#[test]
fn async_consumers_await_events_and_exit() {
    let (sup, _root) = supervisor();
    let (tx, mut events) = sup.events();
    let inst = sup.spawn(LaunchSpec::new("sh").args(["-c", "echo hi; exit 7"]).stdout(Stdio::Lines), &tx).unwrap();
    let inst2 = inst.clone();
    // A minimal executor: the futures here only wait on the channel and
    // the exit watch, both woken by the supervisor's thread.
    let (lines, code) = block_on(async move {
        let mut lines = Vec::new();
        while let Some(ev) = events.recv().await {
            match ev.kind {
                EventKind::Output { line, .. } => lines.push(String::from_utf8(line).unwrap()),
                EventKind::Exited(_) => break,
                _ => {}
            }
        }
        (lines, inst2.exited().await.status.code())
    });
    assert_eq!(lines, ["hi"]);
    assert_eq!(code, Some(7));
    assert!(inst.exit().is_some());
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A program in a root of its own: named by its path inside the root,
/// found through a symlink that is absolute inside the root, classified
/// there and exec'd there once the hook has entered the root (a chroot
/// here; the manager's is an image sandbox). A symlink that climbs out of
/// the root stops at its top instead.
#[test]
fn a_program_in_a_root_of_its_own() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("bin")).unwrap();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", r.join("usr/bin/sh")).unwrap();
    std::os::unix::fs::symlink("../../../../../../bin/busybox", r.join("usr/bin/up")).unwrap();
    assert_eq!(in_root(r, Path::new("/usr/bin/sh")).unwrap(), r.join("bin/busybox"));
    assert_eq!(in_root(r, Path::new("/usr/bin/up")).unwrap(), r.join("bin/busybox"), "`..` stops at the root");
    assert!(in_root(r, Path::new("/nothing")).unwrap_err().to_string().contains("no such file inside"));
    assert!(in_root(r, Path::new("usr/bin/sh")).is_err(), "relative paths are refused");

    let (sup, _dir) = supervisor();
    let (tx, mut events) = sup.events();
    let croot = std::ffi::CString::new(r.as_os_str().as_encoded_bytes()).unwrap();
    let spec = LaunchSpec::new("/usr/bin/sh")
        .arg0("sh")
        .args(["-c", "echo inside; test -e /bin/busybox && test ! -e /etc/passwd && echo rooted"])
        .env_clear()
        .stdout(Stdio::Lines)
        .stderr(Stdio::Lines)
        .root(r)
        .pre_exec(Box::new(move || {
            // SAFETY: chroot and chdir on C strings owned by the closure.
            unsafe {
                if libc::chroot(croot.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        }));
    let inst = sup.spawn(spec, &tx).unwrap();
    let seen = until_exit(&mut events, inst.id());
    assert!(seen.exit.success(), "{:?} {:?}", seen.exit, seen.stderr);
    assert_eq!(seen.stdout, ["inside", "rooted"]);
    let bad = LaunchSpec::new("/usr/bin/sh").root(r).current_dir("/");
    assert!(sup.spawn(bad, &tx).unwrap_err().to_string().contains("working directory"));
}
