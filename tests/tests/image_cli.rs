//! `shunt image` against images written by other tools: an OCI layout made
//! with umoci (busybox inserted as a layer, its config set), and the
//! `docker save` archive skopeo makes of it. What the store reports is
//! compared with what those tools were told; bad input ends in one line.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shunt_tests::{run, shunt, Outcome};

fn tool(prog: &str, args: &[&str]) {
    let o = Command::new(prog).args(args).output().unwrap_or_else(|e| panic!("cannot run {prog} ({e}): run scripts/setup.sh"));
    assert!(o.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn image(state: &Path, args: &[&str]) -> Outcome {
    let mut c = Command::new(shunt());
    c.arg("image").arg("--state-dir").arg(state).args(args);
    run(c, None, Duration::from_secs(120))
}

fn ok(o: &Outcome) -> String {
    assert!(o.status.success(), "{}", o.stderr_str());
    o.stdout_str()
}

/// A one-line error (after at most the progress line) and exit status 2.
fn refused(o: &Outcome, says: &str) {
    assert_eq!(o.status.code(), Some(2), "stdout {} stderr {}", o.stdout_str(), o.stderr_str());
    let err = o.stderr_str();
    let lines: Vec<&str> = err.trim_end().lines().filter(|l| !l.starts_with("shunt image: importing")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("shunt: ") && lines[0].contains(says), "{err:?} lacks {says:?}");
}

#[test]
fn images_from_umoci_and_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let l = layout.to_str().unwrap();
    let tagged = format!("{l}:latest");
    tool("umoci", &["init", "--layout", l]);
    tool("umoci", &["new", "--image", &tagged]);
    tool("umoci", &["insert", "--image", &tagged, "/bin/busybox", "/bin/busybox"]);
    tool(
        "umoci",
        &["config", "--image", &tagged, "--config.entrypoint", "/bin/busybox", "--config.cmd", "echo", "--config.env", "fprocess=cat", "--config.workingdir", "/srv"],
    );
    let saved = tmp.path().join("saved.tar");
    tool("skopeo", &["copy", "--quiet", &format!("oci:{tagged}"), &format!("docker-archive:{}:functions/busy:saved", saved.display())]);

    let state = tmp.path().join("state");
    // umoci names the image only by its tag.
    refused(&image(&state, &["import", l]), "give its full name with --name");
    let out = ok(&image(&state, &["import", l, "--name", "functions/busy"]));
    assert!(out.starts_with("functions/busy:latest\tsha256:"), "{out}");
    let out = ok(&image(&state, &["import", saved.to_str().unwrap()]));
    assert!(out.starts_with("functions/busy:saved\tsha256:"), "{out}");

    let list: serde_json::Value = serde_json::from_str(&ok(&image(&state, &["list", "--json"]))).unwrap();
    let names: Vec<_> = list.as_array().unwrap().iter().map(|i| i["reference"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["functions/busy:latest", "functions/busy:saved"]);
    for name in ["functions/busy", "docker.io/functions/busy:saved"] {
        let i: serde_json::Value = serde_json::from_str(&ok(&image(&state, &["inspect", name]))).unwrap();
        assert_eq!(i["entrypoint"], serde_json::json!(["/bin/busybox"]), "{name}");
        assert_eq!(i["cmd"], serde_json::json!(["echo"]), "{name}");
        assert_eq!(i["workingDir"], "/srv", "{name}");
        assert!(i["env"].as_array().unwrap().iter().any(|e| e == "fprocess=cat"), "{name}: {i}");
        // One layer: busybox, whichever way it was stored.
        assert_eq!(i["layers"].as_array().unwrap().len(), 1, "{name}");
    }

    refused(&image(&state, &["inspect", "functions/none"]), "image functions/none:latest is not in the store");
    refused(&image(&state, &["inspect", "Bad:Name!"]), "image reference \"Bad:Name!\"");
    refused(&image(&state, &["import", tmp.path().to_str().unwrap()]), "is neither an OCI image layout");
    refused(&image(&state, &["import", "/nonexistent"]), "cannot read /nonexistent");

    ok(&image(&state, &["rm", "functions/busy", "functions/busy:saved"]));
    assert_eq!(ok(&image(&state, &["list", "--json"])).trim(), "[]");
    assert_eq!(std::fs::read_dir(state.join("images/blobs/sha256")).unwrap().count(), 0);
    let o = image(&state, &["rm", "functions/busy"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stderr_str().contains("image functions/busy:latest is not in the store"), "{}", o.stderr_str());
}
