//! `shunt image import`: OCI image layouts (a directory, or a tar of one as
//! `skopeo copy … oci-archive:` writes) and `docker save` archives (plain
//! or gzip), into the store. Every blob is hashed on the way in; a layout's
//! blobs must match their descriptors, a `docker save` archive's
//! uncompressed layers its config's diff IDs (compressed ones are checked
//! against them when unpacked). Multi-platform indexes give their
//! linux/amd64 image.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType};
use serde::Deserialize;

use crate::store::{ref_name, Image, Store, REF_NAME};
use crate::unpack::{self, open_in_root};

const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Imports what `path` holds; `name` names the image (needed when the
/// input does not name it, refused when it holds several).
pub fn import(store: &Store, path: &Path, name: Option<&str>) -> Result<Vec<Image>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let root: OwnedFd = File::open(path).with_context(|| format!("cannot open {}", path.display()))?.into();
        return import_dir(store, &root, path, name);
    }
    // An archive: unpacked (with the layer unpacker's containment) into
    // the store's scratch space, then read like a directory.
    let work = store.temp_dir()?;
    let root: OwnedFd = File::open(work.path())?.into();
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    unpack::apply_layer(&root, f, &unpack::Options::default(), &mut unpack::Report::default())
        .with_context(|| format!("{} is not a readable tar archive", path.display()))?;
    import_dir(store, &root, path, name)
}

fn import_dir(store: &Store, root: &OwnedFd, shown: &Path, name: Option<&str>) -> Result<Vec<Image>> {
    let has = |p: &str| open_in_root(root, p).is_ok();
    if has("index.json") {
        import_layout(store, root, shown, name)
    } else if has("manifest.json") {
        import_docker(store, root, shown, name)
    } else {
        bail!("{} is neither an OCI image layout (no index.json) nor a `docker save` archive (no manifest.json)", shown.display())
    }
}

fn read_all(root: &OwnedFd, path: &str, shown: &Path) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    open_in_root(root, path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .with_context(|| format!("cannot read {path} in {}", shown.display()))?;
    Ok(v)
}

fn blob_rel(d: &Descriptor) -> Result<String> {
    Ok(format!("blobs/sha256/{}", crate::digest::sha256_hex(d.digest().as_ref())?))
}

/// Copies the blob `d` of a layout into the store, checked.
fn copy_blob(store: &Store, root: &OwnedFd, shown: &Path, d: &Descriptor) -> Result<()> {
    let rel = blob_rel(d)?;
    let f = open_in_root(root, &rel).with_context(|| format!("{} lacks blob {} ({rel})", shown.display(), d.digest()))?;
    store.put_blob(f, Some((d.digest().as_ref(), d.size()))).with_context(|| format!("in {}", shown.display()))?;
    Ok(())
}

fn import_layout(store: &Store, root: &OwnedFd, shown: &Path, name: Option<&str>) -> Result<Vec<Image>> {
    let index = ImageIndex::from_reader(&read_all(root, "index.json", shown)?[..])
        .with_context(|| format!("{}'s index.json is not an OCI image index", shown.display()))?;
    let entries = index.manifests();
    if entries.is_empty() {
        bail!("the layout {} holds no image", shown.display());
    }
    if name.is_some() && entries.len() > 1 {
        bail!("the layout {} holds {} images; --name can name only one (import without --name to use their own names)", shown.display(), entries.len());
    }
    let mut out = Vec::new();
    for top in entries {
        let own = top
            .annotations()
            .as_ref()
            .and_then(|a| a.get(CONTAINERD_NAME).cloned())
            .or_else(|| ref_name(top).filter(|r| r.contains(['/', ':'])).map(str::to_string));
        let Some(reference) = name.map(str::to_string).or(own) else {
            let tag = ref_name(top).unwrap_or("(none)");
            bail!("the layout {} names image {} only by the tag {tag:?}; give its full name with --name REF", shown.display(), top.digest());
        };
        let manifest = pick_manifest(store, root, shown, top, 0)?;
        let m = ImageManifest::from_reader(&store.read_blob(manifest.digest().as_ref())?[..])
            .with_context(|| format!("{}: {} is not an image manifest", shown.display(), manifest.digest()))?;
        copy_blob(store, root, shown, m.config())?;
        for l in m.layers() {
            copy_blob(store, root, shown, l)?;
        }
        let tagged = store.tag(&reference, &manifest)?;
        out.push(store.get(&tagged)?);
    }
    Ok(out)
}

/// The image manifest `d` leads to (stored in the store): `d` itself, or
/// the linux/amd64 entry of the index it names.
fn pick_manifest(store: &Store, root: &OwnedFd, shown: &Path, d: &Descriptor, depth: u32) -> Result<Descriptor> {
    if depth > 4 {
        bail!("{}: image indexes nest too deep", shown.display());
    }
    copy_blob(store, root, shown, d)?;
    let bytes = store.read_blob(d.digest().as_ref())?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{}: blob {} is not JSON", shown.display(), d.digest()))?;
    if json.get("manifests").is_none() {
        return Ok(d.clone());
    }
    let index = ImageIndex::from_reader(&bytes[..]).with_context(|| format!("{}: {} is not an image index", shown.display(), d.digest()))?;
    let mut seen = Vec::new();
    for m in index.manifests() {
        match m.platform() {
            Some(p) => {
                let (os, arch) = (p.os().to_string(), p.architecture().to_string());
                if os == "linux" && arch == "amd64" {
                    return pick_manifest(store, root, shown, m, depth + 1);
                }
                seen.push(format!("{os}/{arch}"));
            }
            None => seen.push("(no platform)".into()),
        }
    }
    bail!("{}: image {} has no linux/amd64 variant (it has {})", shown.display(), d.digest(), seen.join(", "))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker(store: &Store, root: &OwnedFd, shown: &Path, name: Option<&str>) -> Result<Vec<Image>> {
    let saved: Vec<SavedImage> = serde_json::from_slice(&read_all(root, "manifest.json", shown)?)
        .with_context(|| format!("{}'s manifest.json is not a `docker save` manifest", shown.display()))?;
    if saved.is_empty() {
        bail!("the archive {} holds no image", shown.display());
    }
    if name.is_some() && saved.len() > 1 {
        bail!("the archive {} holds {} images; --name can name only one", shown.display(), saved.len());
    }
    let mut out = Vec::new();
    for img in &saved {
        let open = |p: &str| open_in_root(root, p).with_context(|| format!("{} lacks {p}", shown.display()));
        let (config_digest, config_size) = store.put_blob(open(&img.config)?, None)?;
        // The config's file name is the image ID, its digest.
        let id = img.config.trim_end_matches(".json").rsplit('/').next().unwrap_or("");
        if id.len() == 64 && format!("sha256:{id}") != config_digest {
            bail!("{}: the config {} hashes to {config_digest}: the archive is damaged", shown.display(), img.config);
        }
        let config = ImageConfiguration::from_reader(&store.read_blob(&config_digest)?[..])
            .with_context(|| format!("{}: {} is not an image config", shown.display(), img.config))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != img.layers.len() {
            bail!("{}: the config lists {} layers, manifest.json {}", shown.display(), diff_ids.len(), img.layers.len());
        }
        let mut layers = Vec::new();
        for (path, diff_id) in img.layers.iter().zip(diff_ids) {
            let mut magic = [0u8; 2];
            let gzip = open(path)?.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
            let (digest, size) = store.put_blob(open(path)?, None)?;
            if !gzip && &digest != diff_id {
                bail!("{}: layer {path} hashes to {digest}, but the config says {diff_id}: the archive is damaged", shown.display());
            }
            let media = if gzip { MediaType::ImageLayerGzip } else { MediaType::ImageLayer };
            layers.push(Descriptor::new(media, size, oci_spec::image::Digest::try_from(digest.as_str())?));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(MediaType::ImageConfig, config_size, oci_spec::image::Digest::try_from(config_digest.as_str())?))
            .layers(layers)
            .build()?;
        let names: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => img.repo_tags.clone().unwrap_or_default(),
        };
        if names.is_empty() {
            bail!("{}: image {} has no tag; give it a name with --name REF", shown.display(), img.config);
        }
        for n in names {
            out.push(store.put_manifest(&n, &manifest)?);
        }
    }
    let _ = REF_NAME;
    Ok(out)
}
