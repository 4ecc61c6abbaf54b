//! A process of an instance that changes its user (`setpriv --reuid`, Go's
//! `SysProcAttr.Credential`) and execs or forks: the instance directory
//! belongs to the instance's first user, so the new process may not create
//! its stats segment there itself. It asks the instance's segment broker
//! (the reaper, over the inherited `SHUNT_SEGMENT_BROKER` socket), which
//! creates the segment for it, owned by its new user, and passes it back:
//! every process stays counted. (Before the broker such a process ran on
//! uncounted, with a warning; before that it died with "could not map the
//! stats segment (errno 13)".)

use shunt_tests::*;

fn root() -> bool {
    // SAFETY: geteuid(2) takes no arguments.
    unsafe { libc::geteuid() == 0 }
}

const MODES: [&[&str]; 3] = [&[], &["--no-rewrite"], &["--isolate"]];

#[test]
fn programs_exec_after_a_uid_change_run_and_are_counted() {
    assert!(root(), "this test needs root (it changes its user with setpriv)");
    assert!(std::path::Path::new("/usr/bin/setpriv").exists(), "setpriv missing: apt-get install util-linux");
    let argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", "id -u; /bin/echo hi; exit 3"];
    for mode in MODES {
        let (o, stats) = under_shunt(&argv, None, mode);
        let err = o.stderr_str();
        assert_eq!(o.status.code(), Some(3), "{mode:?}: the program's own status: {:?}\n{err}", o.status);
        assert_eq!(o.stdout_str(), "65534\nhi\n", "{mode:?}\n{err}");
        assert!(!err.contains("could not map the stats segment"), "{mode:?}: {err}");
        assert!(!err.contains("changed its user"), "{mode:?}: every process is counted, none is told as uncounted: {err}");
        // setpriv before the change; sh (dash here), id and echo after it.
        assert_eq!(stats.processes(), 4, "{mode:?}: {err}\n{}", stats.0);
        for p in ["setpriv", "dash", "id", "echo"] {
            assert_eq!(stats.1.by_program.get(p).map(|c| c.processes), Some(1), "{mode:?}: {p}: {}", stats.0);
        }
        assert!(stats.get("setresuid", "passthrough") + stats.get("setreuid", "passthrough") >= 1, "{mode:?}: {}", stats.0);
    }
}

/// The counts of the processes after the change against an independent
/// count: the known-calls probe, run as the new user, makes exactly known
/// numbers of getppid calls in its threads, its forked children (whose
/// segments the broker makes too) and an exec'd image of itself.
#[test]
fn calls_after_a_uid_change_match_a_known_count() {
    assert!(root(), "this test needs root (it changes its user with setpriv)");
    let p = program(env!("PROG_KNOWN_CALLS"));
    let probe = [p.as_str(), "100", "50", "2", "2", "1"];
    let argv: Vec<&str> = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"].into_iter().chain(probe).collect();
    let n = native(&argv, None);
    // Per image: 1 + (1 main + 2 threads + 2 children) rounds of 150.
    let line = "raw 100 via 50 threads 2 forks 2: calls 751, same in this process 450, children ok\n";
    assert_eq!(n.stdout_str(), line.repeat(2), "the probe natively: {}", n.stderr_str());
    for mode in MODES {
        let (s, stats) = under_shunt(&argv, None, mode);
        assert_same(&format!("known calls after setpriv {mode:?}"), &n, &s);
        let err = s.stderr_str();
        assert!(!err.contains("changed its user"), "{mode:?}: {err}");
        let getppid = stats.0["by_syscall"]["getppid"].to_string();
        assert_eq!(stats.get("getppid", "passthrough"), 2 * 751, "{mode:?}: every call counted once: {getppid}");
        assert_eq!(stats.get("getppid", "redirected") + stats.get("getppid", "trapped"), 2 * 751, "{mode:?}: {getppid}");
        // setpriv, 2 images of the probe and their 2 children each.
        assert_eq!(stats.processes(), 1 + 2 + 4, "{mode:?}: {}", stats.0);
        assert_eq!(stats.1.by_program.get("known_calls").map(|c| c.processes), Some(6), "{mode:?}: {}", stats.0);
    }
}

/// The instance's policy holds for a process after its user changed, also
/// when `shunt` runs with umask 077: the shell that setpriv execs as uid
/// 65534 reads the policy like the first process did, so its mkdir is
/// denied. (With umask 077 the instance directory and the policy were
/// private to the first user; the new user's processes found no policy
/// and ran without one, silently; only `--isolate`'s kernel filter held.)
#[test]
fn the_policy_holds_after_a_uid_change() {
    assert!(root(), "this test needs root (it changes its user with setpriv)");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "base = \"none\"\n[syscalls]\nmkdir = \"deny:EACCES\"\nmkdirat = \"deny:EACCES\"\n").unwrap();
    // A directory uid 65534 may write in, so that only the policy refuses.
    let target = dir.path().join("made");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = format!("mkdir {} && echo made || echo refused", target.display());
    let argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script.as_str()];
    let n = native(&argv, None);
    assert_eq!(n.stdout_str(), "made\n", "natively the new user may create it: {}", n.stderr_str());
    std::fs::remove_dir(&target).unwrap();
    let shunt_bin = shunt();
    for umask in ["022", "077"] {
        for mode in MODES {
            // sh sets the umask, then becomes `shunt run` (umask is per process:
            // setting it in this test would change the other tests' files).
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &format!("umask {umask}; exec \"$0\" \"$@\"")]).arg(&shunt_bin).args(["run", "--policy"]).arg(&policy);
            c.args(mode.iter()).arg("--").args(argv);
            let o = run(c, None, std::time::Duration::from_secs(120));
            let err = o.stderr_str();
            assert_eq!(o.stdout_str(), "refused\n", "umask {umask} {mode:?}: the policy's deny after the uid change\n{err}");
            assert!(!target.exists(), "umask {umask} {mode:?}: the denied mkdir made {}", target.display());
            assert!(err.contains("policy denied mkdir"), "umask {umask} {mode:?}: shunt tells the denial: {err}");
        }
    }
}
