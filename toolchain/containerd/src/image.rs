//! Making a one-layer OCI image from a root directory with `umoci`, for
//! tests and benchmarks that need an image containerd can import (the
//! stock function images, a busybox image).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The parts of an OCI image config that a function image sets.
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// `uid[:gid]` (numeric works without an /etc/passwd in the image).
    pub user: Option<String>,
}

fn umoci(args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new("umoci")
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run umoci ({e}): apt-get install umoci (scripts/setup.sh does)"))?;
    if !out.status.success() {
        let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        bail!("umoci {}: {}", shown.join(" "), crate::ctr::last_line(&out.stderr));
    }
    Ok(())
}

/// Writes `out`: a tar of an OCI image layout holding one image, tagged
/// `tag`, whose single layer is the contents of `rootfs` (owners and modes
/// kept) and whose config is `config`. `out` appears complete or not at all.
pub fn build_oci_archive(rootfs: &Path, config: &ImageConfig, tag: &str, out: &Path) -> Result<()> {
    if !rootfs.is_dir() {
        bail!("{}: not a directory", rootfs.display());
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let work = tempfile::Builder::new().prefix(".oci-").tempdir_in(parent)?;
    let layout = work.path().join("layout");
    let image = format!("{}:{tag}", layout.display());
    let os = |s: &str| std::ffi::OsString::from(s);
    umoci(&[&os("init"), &os("--layout"), layout.as_os_str()])?;
    umoci(&[&os("new"), &os("--image"), &os(&image)])?;
    umoci(&[&os("insert"), &os("--image"), &os(&image), rootfs.as_os_str(), &os("/")])?;
    let mut args: Vec<std::ffi::OsString> = vec![os("config"), os("--image"), os(&image)];
    for e in &config.entrypoint {
        args.push(os("--config.entrypoint"));
        args.push(os(e));
    }
    for c in &config.cmd {
        args.push(os("--config.cmd"));
        args.push(os(c));
    }
    for (k, v) in &config.env {
        args.push(os("--config.env"));
        args.push(os(&format!("{k}={v}")));
    }
    if let Some(w) = &config.workdir {
        args.push(os("--config.workingdir"));
        args.push(os(w));
    }
    if let Some(u) = &config.user {
        args.push(os("--config.user"));
        args.push(os(u));
    }
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    umoci(&refs)?;
    umoci(&[&os("gc"), &os("--layout"), layout.as_os_str()])?;

    let tmp = work.path().join("image.tar");
    {
        let f = std::fs::File::create(&tmp)?;
        let mut b = tar::Builder::new(f);
        b.follow_symlinks(false);
        b.append_dir_all(".", &layout).with_context(|| format!("cannot archive {}", layout.display()))?;
        b.into_inner()?.sync_all()?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// The tag part of `reference` (`latest` when it has none).
fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// A blob's path in an OCI layout, from its digest (`sha256:<hex>` only).
fn blob_path(layout: &Path, digest: &str) -> Result<std::path::PathBuf> {
    let hex = digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(hex) = hex else { bail!("{digest:?} is not a sha256 digest") };
    Ok(layout.join("blobs/sha256").join(hex))
}

impl crate::Containerd {
    /// Imports one image of the OCI image layout `layout` (which may hold
    /// many, such as shunt's image store): the manifest `manifest_digest`,
    /// its config and its layers, named `reference`. Only those blobs are
    /// handed to containerd, in a layout of their own (hard links where
    /// the filesystem allows, copies elsewhere).
    pub fn import_from_layout(&self, layout: &Path, manifest_digest: &str, reference: &str) -> Result<()> {
        let manifest_path = blob_path(layout, manifest_digest)?;
        let bytes = std::fs::read(&manifest_path)
            .with_context(|| format!("{}: no manifest {manifest_digest}", layout.display()))?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&bytes).with_context(|| format!("{manifest_digest} in {} is not JSON", layout.display()))?;
        let mut digests = vec![manifest_digest.to_string()];
        digests.extend(manifest["config"]["digest"].as_str().map(str::to_string));
        for l in manifest["layers"].as_array().map(Vec::as_slice).unwrap_or_default() {
            digests.extend(l["digest"].as_str().map(str::to_string));
        }
        if digests.len() < 2 {
            bail!("{manifest_digest} in {} is not an image manifest (no config)", layout.display());
        }
        let work = tempfile::Builder::new().prefix("layout-").tempdir_in(self.dir())?;
        let blobs = work.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        for d in &digests {
            let (from, to) = (blob_path(layout, d)?, blob_path(work.path(), d)?);
            if to.exists() {
                continue;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).with_context(|| format!("cannot copy blob {d} from {}", layout.display()))?;
            }
        }
        let media = manifest["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media, "digest": manifest_digest, "size": bytes.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag_of(reference)},
            }],
        });
        std::fs::write(work.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        std::fs::write(work.path().join("index.json"), serde_json::to_vec(&index)?)?;
        self.import(work.path(), reference)
    }
}

#[cfg(test)]
mod tests {
    use super::tag_of;

    #[test]
    fn tags_of_references() {
        assert_eq!(tag_of("bench-aes:v1"), "v1");
        assert_eq!(tag_of("localhost:5000/a/b:v2"), "v2");
        assert_eq!(tag_of("localhost:5000/a/b"), "latest");
        assert_eq!(tag_of("aes"), "latest");
    }
}
