//! Pulling from a real registry: Debian's `docker-registry` on 127.0.0.1,
//! images pushed to it by skopeo from umoci-made OCI layouts. A pulled
//! image is the one the registry serves (same manifest digest, same
//! config); a missing tag, an unreachable registry and an image for
//! another architecture are refused in one line, and nothing is stored.

use std::path::Path;

use shunt_tests::registry::{free_port, tool, Registry};
use shunt_tests::image::{busybox_layout, image, ok, refused};

/// A busybox layout (`layout:latest`), its config set; `arch` as the config says.
fn busybox_for(dir: &Path, arch: &str) {
    busybox_layout(
        dir,
        &["--architecture", arch, "--config.entrypoint", "/bin/busybox", "--config.cmd", "httpd", "--config.env", "fprocess=cat"],
    );
}

#[test]
fn images_pulled_from_a_local_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"));
    let layout = tmp.path().join("busy");
    busybox_for(&layout, "amd64");
    reg.push(&layout, "latest", "functions/busy:1.0");
    let arm = tmp.path().join("arm");
    busybox_for(&arm, "arm64");
    reg.push(&arm, "latest", "functions/busy:arm");

    let state = tmp.path().join("state");
    let name = format!("{}/functions/busy:1.0", reg.host);
    let out = ok(&image(&state, &["pull", &name]));
    let served = reg.digest("functions/busy:1.0");
    assert_eq!(out.trim(), format!("{name}\t{served}"), "the registry serves {served}");
    let i: serde_json::Value = serde_json::from_str(&ok(&image(&state, &["inspect", &name]))).unwrap();
    assert_eq!(i["digest"], served.as_str());
    assert_eq!(i["entrypoint"], serde_json::json!(["/bin/busybox"]));
    assert_eq!(i["cmd"], serde_json::json!(["httpd"]));
    assert!(i["env"].as_array().unwrap().iter().any(|e| e == "fprocess=cat"), "{i}");
    let layers = i["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    // Every blob stored is named by its own hash.
    for e in std::fs::read_dir(state.join("images/blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let hex = tool("sha256sum", &[p.to_str().unwrap()]);
        assert_eq!(hex.split_whitespace().next(), p.file_name().unwrap().to_str(), "{}", p.display());
    }
    // A second pull finds every blob stored and gives the same image.
    assert_eq!(ok(&image(&state, &["pull", &name])), out);

    let blobs = || std::fs::read_dir(state.join("images/blobs/sha256")).unwrap().count();
    let before = blobs();
    refused(&image(&state, &["pull", &format!("{}/functions/busy:nope", reg.host)]), "has no image");
    refused(&image(&state, &["pull", &format!("{}/functions/absent:1", reg.host)]), "has no image");
    refused(&image(&state, &["pull", &format!("{}/functions/busy:arm", reg.host)]), "linux/arm64, not linux/amd64");
    let dead = format!("127.0.0.1:{}", free_port());
    refused(&image(&state, &["pull", &format!("{dead}/functions/busy:1.0")]), &format!("cannot reach registry {dead}"));
    let listed: serde_json::Value = serde_json::from_str(&ok(&image(&state, &["list", "--json"]))).unwrap();
    let names: Vec<_> = listed.as_array().unwrap().iter().map(|i| i["reference"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, [name.clone()], "refused pulls name nothing");
    assert_eq!(blobs(), before, "refused pulls leave no blob");
}
