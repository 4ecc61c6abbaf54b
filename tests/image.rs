//! Driving `shunt image` in the image tests: one state directory per test,
//! the one-line refusals the command promises, and the busybox layouts
//! umoci makes for them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::registry::tool;
use crate::{run, shunt, Outcome};

/// An OCI layout at `dir` made by umoci: one image, tagged `latest`, whose
/// one layer is this machine's `/bin/busybox`, configured with `config`
/// (`umoci config` flags). Returns the tagged reference, `DIR:latest`.
pub fn busybox_layout(dir: &Path, config: &[&str]) -> String {
    let l = dir.to_str().expect("a UTF-8 temporary path");
    let tagged = format!("{l}:latest");
    tool("umoci", &["init", "--layout", l]);
    tool("umoci", &["new", "--image", &tagged]);
    tool("umoci", &["insert", "--image", &tagged, "/bin/busybox", "/bin/busybox"]);
    let mut args = vec!["config", "--image", &tagged];
    args.extend_from_slice(config);
    tool("umoci", &args);
    tagged
}

/// `shunt image --state-dir STATE ARGS…`, with a Docker config of its own
/// (none of the test machine's account decides anything).
pub fn image(state: &Path, args: &[&str]) -> Outcome {
    let mut c = Command::new(shunt());
    c.env("DOCKER_CONFIG", state.join("no-docker-config"));
    c.arg("image").arg("--state-dir").arg(state).args(args);
    run(c, None, Duration::from_secs(120))
}

/// Its stdout, after asserting that it succeeded.
pub fn ok(o: &Outcome) -> String {
    assert!(o.status.success(), "{}", o.stderr_str());
    o.stdout_str()
}

/// Exit status 2 and one error line (`shunt: …` containing `says`), besides
/// the progress lines (`shunt image: importing/pulling …`).
pub fn refused(o: &Outcome, says: &str) {
    assert_eq!(o.status.code(), Some(2), "stdout {} stderr {}", o.stdout_str(), o.stderr_str());
    let err = o.stderr_str();
    let lines: Vec<&str> = err.trim_end().lines().filter(|l| !l.starts_with("shunt image: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("shunt: ") && lines[0].contains(says), "{err:?} lacks {says:?}");
}
