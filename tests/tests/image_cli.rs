//! `shunt image` against images written by other tools: an OCI layout made
//! with umoci (busybox inserted as a layer, its config set), and the
//! `docker save` archive skopeo makes of it. What the store reports is
//! compared with what those tools were told; bad input ends in one line.

use shunt_tests::image::{busybox_layout, image, ok, refused};
use shunt_tests::registry::tool;

#[test]
fn images_from_umoci_and_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let l = layout.to_str().unwrap();
    let tagged = busybox_layout(
        &layout,
        &["--config.entrypoint", "/bin/busybox", "--config.cmd", "echo", "--config.env", "fprocess=cat", "--config.workingdir", "/srv"],
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
