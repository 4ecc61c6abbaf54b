//! `scripts/setup.sh` refuses a machine it cannot work on before it installs
//! anything: one line saying what to install or upgrade, and exit 1. The
//! machine's answers are replaced by stand-ins on PATH (an old kernel, an
//! old or too new Go); the real machine passes the same checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

fn setup_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup.sh")
}

/// A directory with `name` as a shell script printing `out` (for every
/// argument list) first on PATH.
fn shim(dir: &Path, name: &str, script: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

fn setup_with_path(path: &str) -> Outcome {
    let mut c = Command::new("sh");
    c.arg(setup_sh()).env("PATH", path);
    run(c, None, Duration::from_secs(600))
}

#[test]
fn an_old_kernel_is_one_line_and_exit_1_before_anything_is_installed() {
    let d = tempfile::tempdir().unwrap();
    let real = Command::new("uname").arg("-m").output().unwrap();
    let machine = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let path = shim(d.path(), "uname", &format!("case \"$1\" in -r) echo 5.10.0-28-amd64;; *) echo {machine};; esac"));
    let o = setup_with_path(&path);
    assert_eq!(o.status.code(), Some(1), "{}", o.stderr_str());
    let err = o.stderr_str();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("Linux 5.10.0 is too old") && lines[0].contains("5.11"), "{err}");
    assert!(!o.stdout_str().contains("installing"), "{}", o.stdout_str());
}

#[test]
fn a_go_outside_1_25_to_1_27_is_one_line_and_exit_1() {
    for (version, says) in [("go1.24.7", "Go 1.24.7 is too old"), ("go1.28.0", "Go 1.28.0 is newer than the Go target knows")] {
        let d = tempfile::tempdir().unwrap();
        let path = shim(d.path(), "go", &format!("[ \"$1 $2\" = \"env GOVERSION\" ] && echo {version} && exit 0; exit 3"));
        let o = setup_with_path(&path);
        assert_eq!(o.status.code(), Some(1), "{version}: {}", o.stderr_str());
        let err = o.stderr_str();
        assert_eq!(err.lines().count(), 1, "{version}: {err}");
        assert!(err.contains(says), "{version}: {err}");
    }
}

#[test]
fn this_machine_passes_the_checks() {
    let o = setup_with_path(&std::env::var("PATH").unwrap_or_default());
    assert!(o.status.success(), "{}{}", o.stdout_str(), o.stderr_str());
}
