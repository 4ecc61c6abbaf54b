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
    /// The working directory (absolute, inside the image).
    pub workdir: String,
    pub labels: HashMap<String, String>,
}

/// Stores the directories `dirs` — each `(host directory, absolute path
/// inside the image)` — as the one layer of image `reference`.
pub fn image_from_dirs(store: &Store, reference: &str, dirs: &[(&Path, &str)], config: &Config) -> Result<Image> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut made = std::collections::HashSet::new();
    for (dir, inside) in dirs {
        let prefix = inside.trim_matches('/');
        if !inside.starts_with('/') || prefix.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
            bail!("the image directory {inside:?} must be an absolute path without . or ..");
        }
        add_dir(&mut b, dir, prefix, &mut made).with_context(|| format!("cannot make a layer of {}", dir.display()))?;
    }
    let tar = b.into_inner()?;
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

fn add_dir(b: &mut tar::Builder<Vec<u8>>, dir: &Path, prefix: &str, made: &mut std::collections::HashSet<String>) -> Result<()> {
    let mut path = String::new();
    for c in prefix.split('/') {
        path.push_str(c);
        path.push('/');
        if made.insert(path.clone()) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, &path, std::io::empty())?;
        }
    }
    add_sorted(b, dir, Path::new(prefix))
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
