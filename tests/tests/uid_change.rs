//! A process of an instance that changes its user (`setpriv --reuid`, Go's
//! `SysProcAttr.Credential`) and execs: the instance directory belongs to
//! the instance's first user, so the new image may not create its stats
//! segment there. It must run on (it died with "could not map the stats
//! segment (errno 13)"), say that its calls are not counted, and leave the
//! rest of the instance counted.

use shunt_tests::*;

fn root() -> bool {
    // SAFETY: geteuid(2) takes no arguments.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn programs_exec_after_a_uid_change_run() {
    if !root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", "id -u; /bin/echo hi; exit 3"];
    for mode in [&[][..], &["--no-rewrite"][..], &["--isolate"][..]] {
        let (o, stats) = under_shunt(&argv, None, mode);
        let err = o.stderr_str();
        assert_eq!(o.status.code(), Some(3), "{mode:?}: the program's own status: {:?}\n{err}", o.status);
        assert_eq!(o.stdout_str(), "65534\nhi\n", "{mode:?}\n{err}");
        assert!(!err.contains("could not map the stats segment"), "{mode:?}: {err}");
        // sh, id and echo, after the uid change, are told as not counted.
        assert_eq!(err.matches("changed its user and may not create its stats segment").count(), 3, "{mode:?}: {err}");
        // setpriv, before it, is counted: one process, its setresuid included.
        assert_eq!(stats.processes(), 1, "{mode:?}: {err}");
        assert!(stats.get("setresuid", "passthrough") + stats.get("setreuid", "passthrough") >= 1, "{mode:?}: {stats:?}");
    }
}
