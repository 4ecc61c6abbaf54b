//! Writing images: a directory becomes a one-layer OCI image in the store
//! (`shunt faas build` makes one per function, named by the stack's
//! `image:`). The layer is reproducible — entries sorted, owner 0:0,
//! mtime 0 — so an unchanged build gives the same digest and shares its
//! blobs and unpacked root.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::image::{ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, RootFsBuilder};

use crate::store::{Image, Store};

/// What the image's config says besides its layer.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `(KEY, VALUE)` in order.
    pub env: Vec<(String, String)>,
    /// The absolute directory inside the image that `dir`'s files go to;
    /// also the working directory.
    pub workdir: String,
    pub labels: HashMap<String, String>,
}

/// Stores `dir` as the one layer of image `reference`, placed at
/// `config.workdir`.
pub fn image_from_dir(store: &Store, reference: &str, dir: &Path, config: &Config) -> Result<Image> {
    let prefix = config.workdir.trim_matches('/');
    if !config.workdir.starts_with('/') || prefix.split('/').any(|c| c == ".." || c == ".") {
        bail!("the image's directory {:?} must be an absolute path without . or ..", config.workdir);
    }
    let tar = layer_of(dir, prefix).with_context(|| format!("cannot make a layer of {}", dir.display()))?;
    let diff_id = crate::digest::of_bytes(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    let (layer_digest, layer_size) = store.put_bytes(&gz.finish()?)?;
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cfg = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .config(
            ConfigBuilder::default()
                .entrypoint(config.entrypoint.clone())
                .cmd(config.cmd.clone())
                .env(env)
                .working_dir(config.workdir.clone())
                .labels(config.labels.clone())
                .build()?,
        )
        .rootfs(RootFsBuilder::default().typ("layers").diff_ids(vec![diff_id]).build()?)
        .build()?;
    let (config_digest, config_size) = store.put_bytes(cfg.to_string()?.as_bytes())?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(MediaType::ImageConfig, config_size, oci_spec::image::Digest::try_from(config_digest.as_str())?))
        .layers(vec![Descriptor::new(MediaType::ImageLayerGzip, layer_size, oci_spec::image::Digest::try_from(layer_digest.as_str())?)])
        .build()?;
    store.put_manifest(reference, &manifest)
}

fn layer_of(dir: &Path, prefix: &str) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut path = String::new();
    for c in prefix.split('/').filter(|c| !c.is_empty()) {
        path.push_str(c);
        path.push('/');
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &path, std::io::empty())?;
    }
    add_sorted(&mut b, dir, Path::new(prefix))?;
    Ok(b.into_inner()?)
}

fn add_sorted(b: &mut tar::Builder<Vec<u8>>, dir: &Path, inside: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = inside.join(e.file_name());
        // append_path_with_name keeps symlinks as symlinks (follow_symlinks(false))
        // and takes the mode bits from the file.
        b.append_path_with_name(&path, &name).with_context(|| format!("cannot add {}", path.display()))?;
        if e.file_type()?.is_dir() {
            add_sorted(b, &path, &name)?;
        }
    }
    Ok(())
}
