//! The store against layers and images made here, hostile ones included:
//! what lands in the unpacked root is read back and compared with what the
//! layers say, and nothing may appear outside the store.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use shunt_image::{import::import, Store};

/// One tar entry, its name written raw (the tar crate refuses hostile
/// names, which these tests need).
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, kind, data, mode, link): (&str, tar::EntryType, &[u8], u32, &str) = match *e {
            E::Dir(n) => (n, tar::EntryType::Directory, b"", 0o755, ""),
            E::File(n, d, m) => (n, tar::EntryType::Regular, d, m, ""),
            E::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", 0o777, t),
            E::Hardlink(n, t) => (n, tar::EntryType::Link, b"", 0o644, t),
            E::Char(n) => (n, tar::EntryType::Char, b"", 0o666, ""),
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(bytes).unwrap();
    g.finish().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    shunt_image::digest::of_bytes(bytes)
}

fn put(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let d = sha(bytes);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(d.trim_start_matches("sha256:")), bytes).unwrap();
    (d, bytes.len())
}

/// An OCI layout at `dir` holding one image named `name`, its layers the
/// tars given (the odd ones gzip-compressed, to have both kinds).
fn layout(dir: &Path, name: &str, layers: &[Vec<u8>], config: serde_json::Value) -> String {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        diff_ids.push(sha(l));
        let (blob, media) = if i % 2 == 1 { (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip") } else { (l.clone(), "application/vnd.oci.image.layer.v1.tar") };
        let (d, n) = put(dir, &blob);
        descs.push(serde_json::json!({"mediaType": media, "digest": d, "size": n}));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": config, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cn) = put(dir, config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": descs});
    let (md, mn) = put(dir, manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": name}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    store: Store,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let store = Store::open(&base.join("state")).unwrap();
    Fixture { _tmp: tmp, base, store }
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            out.push(e.path().strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn layers_apply_in_order_with_whiteouts_links_and_config() {
    let f = fixture();
    let l1 = tar_of(&[
        E::Dir("etc/"),
        E::File("etc/keep", b"keep", 0o644),
        E::File("etc/gone", b"gone", 0o644),
        E::Dir("opq/"),
        E::File("opq/lower", b"lower", 0o644),
        E::File("bin/tool", b"#!/bin/sh\n", 0o4755),
        E::Symlink("lib", "usr/lib"),
        E::Dir("usr/lib/"),
        E::File("usr/lib/libx.so", b"elf", 0o644),
    ]);
    let l2 = tar_of(&[
        E::File("etc/.wh.gone", b"", 0o644),
        E::File("opq/upper", b"upper", 0o644),
        E::File("opq/.wh..wh..opq", b"", 0o644),
        E::Hardlink("etc/keep-link", "etc/keep"),
        E::File("lib/liby.so", b"through the symlink", 0o644),
        E::Char("dev/null"),
    ]);
    let src = f.base.join("layout");
    let md = layout(&src, "example.com/demo/app:v1", &[l1, l2], serde_json::json!({
        "Entrypoint": ["/bin/tool"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "fprocess=cat", "EMPTY="],
        "WorkingDir": "/srv", "User": "1000:1000"}));
    let imported = import(&f.store, &src, None).unwrap();
    assert_eq!(imported.len(), 1);
    let img = f.store.get("example.com/demo/app:v1").unwrap();
    assert_eq!(img.digest, md);
    assert_eq!(img.entrypoint(), ["/bin/tool"]);
    assert_eq!(img.cmd(), ["--serve"]);
    assert_eq!(img.env(), [("PATH".into(), "/bin".into()), ("fprocess".into(), "cat".into()), ("EMPTY".into(), String::new())]);
    assert_eq!(img.workdir().as_deref(), Some("/srv"));
    assert_eq!(img.user().as_deref(), Some("1000:1000"));

    let root = f.store.rootfs(&img).unwrap();
    assert_eq!(
        tree(&root),
        ["bin", "bin/tool", "dev", "etc", "etc/keep", "etc/keep-link", "lib", "opq", "opq/upper", "usr", "usr/lib", "usr/lib/libx.so", "usr/lib/liby.so"]
    );
    assert_eq!(std::fs::read(root.join("usr/lib/liby.so")).unwrap(), b"through the symlink");
    assert_eq!(std::fs::read_link(root.join("lib")).unwrap(), Path::new("usr/lib"));
    let (a, b) = (root.join("etc/keep").metadata().unwrap(), root.join("etc/keep-link").metadata().unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    // setuid is cleared by default, the rest of the mode kept.
    assert_eq!(root.join("bin/tool").metadata().unwrap().permissions().mode() & 0o7777, 0o755);
    let report = f.store.unpack_report(&img).unwrap();
    assert_eq!(report["skipped_devices"], serde_json::json!(["dev/null"]));
    assert_eq!(report["cleared_setid"], serde_json::json!(["bin/tool"]));
    // Unpacked once: the second call finds the same directory.
    assert_eq!(f.store.rootfs(&img).unwrap(), root);
    let listed = f.store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reference, "example.com/demo/app:v1");
}

#[test]
fn dotdot_names_and_link_targets_are_refused() {
    for (what, layer) in [
        ("a name", tar_of(&[E::File("../../escaped", b"x", 0o644)])),
        ("a hard link target", tar_of(&[E::Hardlink("passwd", "../../../../etc/passwd")])),
    ] {
        let f = fixture();
        let src = f.base.join("layout");
        layout(&src, "hostile/dotdot:latest", &[layer], serde_json::json!({}));
        import(&f.store, &src, None).unwrap();
        let img = f.store.get("hostile/dotdot").unwrap();
        let err = format!("{:#}", f.store.rootfs(&img).unwrap_err());
        assert!(err.contains("climbs with .."), "{what}: {err}");
        assert!(!f.base.join("escaped").exists() && !f.base.join("state/escaped").exists(), "{what}");
        // No half-unpacked root is left for the next instance to use.
        assert!(tree(&f.store.dir().join("rootfs")).is_empty(), "{what}: {:?}", tree(&f.store.dir().join("rootfs")));
    }
}

#[test]
fn writes_through_symlinks_stay_inside_the_root() {
    let f = fixture();
    let outside = f.base.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let out = outside.to_str().unwrap().trim_start_matches('/').to_string();
    let mirror = format!("{out}/");
    let through_abs = "abs/pwned";
    let l1 = tar_of(&[
        // The root's own copy of the outside directory's path, so that
        // the absolute symlink has somewhere to land inside.
        E::Dir(&mirror),
        E::Symlink("abs", outside.to_str().unwrap()),
        E::Symlink("rel", "../../../../../../../.."),
        E::Symlink("top", "/"),
    ]);
    let l2 = tar_of(&[
        E::File(through_abs, b"1", 0o644),
        E::File("rel/pwned-rel", b"2", 0o644),
        E::File("top/pwned-top", b"3", 0o644),
        // A hard link through a symlink to the outside links the root's file.
        E::Hardlink("linked", "abs/pwned"),
    ]);
    let src = f.base.join("layout");
    layout(&src, "hostile/symlinks", &[l1, l2], serde_json::json!({}));
    import(&f.store, &src, None).unwrap();
    let img = f.store.get("hostile/symlinks").unwrap();
    let root = f.store.rootfs(&img).unwrap();
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "something was written outside the root");
    assert_eq!(std::fs::read(root.join(&out).join("pwned")).unwrap(), b"1");
    assert_eq!(std::fs::read(root.join("pwned-rel")).unwrap(), b"2");
    assert_eq!(std::fs::read(root.join("pwned-top")).unwrap(), b"3");
    assert_eq!(root.join("linked").metadata().unwrap().ino(), root.join(&out).join("pwned").metadata().unwrap().ino());
    assert!(!Path::new("/pwned-rel").exists() && !Path::new("/pwned-top").exists());
}

#[test]
fn damaged_blobs_are_refused() {
    // A layout whose layer does not match its descriptor.
    let f = fixture();
    let src = f.base.join("layout");
    layout(&src, "bad/layer", &[tar_of(&[E::File("a", b"a", 0o644)])], serde_json::json!({}));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("blobs/sha256").join(&md)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let layer_path = src.join("blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&layer_path).unwrap();
    bytes[600] ^= 1; // inside the file's data
    std::fs::write(&layer_path, &bytes).unwrap();
    let err = format!("{:#}", import(&f.store, &src, None).unwrap_err());
    assert!(err.contains(&format!("blob sha256:{layer} has the digest")), "{err}");
    assert!(f.store.list().unwrap().is_empty());
    assert!(!f.store.dir().join("blobs/sha256").join(&layer).exists());

    // A blob damaged in the store after a good import.
    let f = fixture();
    let src = f.base.join("layout");
    layout(&src, "bad/later", &[tar_of(&[E::File("a", b"a", 0o644)])], serde_json::json!({}));
    import(&f.store, &src, None).unwrap();
    let stored = f.store.dir().join("blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();
    let img = f.store.get("bad/later").unwrap();
    let err = format!("{:#}", f.store.rootfs(&img).unwrap_err());
    assert!(err.contains("is damaged"), "{err}");
}

#[test]
fn docker_save_archives_import() {
    let f = fixture();
    let l1 = tar_of(&[E::File("hello", b"hello from docker save", 0o644)]);
    let l2 = tar_of(&[E::File("second", b"2", 0o644)]);
    let l2gz = gzip(&l2);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(&l1), sha(&l2)]}}).to_string();
    let id = sha(config.as_bytes()).trim_start_matches("sha256:").to_string();
    let manifest = serde_json::json!([{"Config": format!("{id}.json"), "RepoTags": ["functions/hello:latest", "hello:1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).to_string();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("manifest.json", manifest.as_bytes()), (&format!("{id}.json")[..], config.as_bytes()), ("aaa/layer.tar", &l1[..]), ("bbb/layer.tar", &l2gz[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    let archive = f.base.join("saved.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let imported = import(&f.store, &archive, None).unwrap();
    let names: Vec<_> = imported.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(names, ["functions/hello:latest", "hello:1"]);
    assert_eq!(imported[0].digest, imported[1].digest);
    let img = f.store.get("docker.io/functions/hello").unwrap();
    assert_eq!(img.cmd(), ["/hello"]);
    let root = f.store.rootfs(&img).unwrap();
    assert_eq!(std::fs::read(root.join("hello")).unwrap(), b"hello from docker save");
    assert_eq!(std::fs::read(root.join("second")).unwrap(), b"2");
    // The scratch copy of the archive is gone.
    assert!(tree(&f.store.dir().join("tmp")).is_empty());

    // Removing one name keeps the image for the other; removing both
    // leaves no blob and no unpacked root.
    f.store.remove("functions/hello").unwrap();
    assert!(f.store.rootfs(&f.store.get("hello:1").unwrap()).is_ok());
    f.store.remove("hello:1").unwrap();
    assert!(tree(&f.store.dir().join("blobs/sha256")).is_empty());
    assert!(tree(&f.store.dir().join("rootfs")).is_empty());
    let err = format!("{:#}", f.store.remove("hello:1").unwrap_err());
    assert!(err.contains("is not in the store"), "{err}");
}

#[test]
fn indexes_give_their_amd64_image_and_names_are_required() {
    let f = fixture();
    let src = f.base.join("layout");
    let md = layout(&src, "x/y:z", &[tar_of(&[E::File("a", b"a", 0o644)])], serde_json::json!({}));
    let size = std::fs::read(src.join("blobs/sha256").join(md.trim_start_matches("sha256:"))).unwrap().len();
    let multi = |arch: &str| serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": size,
                       "platform": {"architecture": arch, "os": "linux"}}]});
    let mut names = HashMap::new();
    for arch in ["amd64", "arm64"] {
        let (d, n) = put(&src, multi(arch).to_string().as_bytes());
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": d, "size": n, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
        std::fs::write(src.join("index.json"), index.to_string()).unwrap();
        let err = format!("{:#}", import(&f.store, &src, None).unwrap_err());
        assert!(err.contains("only by the tag \"latest\"") && err.contains("--name"), "{err}");
        names.insert(arch, import(&f.store, &src, Some(&format!("multi/{arch}"))).map(|v| v[0].digest.clone()).map_err(|e| format!("{e:#}")));
    }
    assert_eq!(names["amd64"].as_deref(), Ok(md.as_str()));
    let err = names["arm64"].as_ref().unwrap_err();
    assert!(err.contains("has no linux/amd64 variant (it has linux/arm64)"), "{err}");
}
