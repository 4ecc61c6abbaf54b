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
