//! The store: one OCI image layout under `<state>/images` (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), whose index names every image by its
//! normalized reference (annotation `org.opencontainers.image.ref.name`),
//! plus `rootfs/<manifest hex>/`, each image's layers unpacked once and
//! shared by every instance of it.
//!
//! Invariants: a blob file's name is the SHA-256 of its content (blobs are
//! hashed while written and renamed into place only when they match); the
//! index is replaced atomically under `lock`; a `rootfs/<hex>` directory
//! exists only complete (unpacked into a temporary directory beside it,
//! then renamed). Manifests and configs are re-hashed whenever they are
//! read, layers whenever they are unpacked.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Serialize;

use crate::digest::{self, sha256_hex, Hashing};
use crate::reference::normalize;
use crate::unpack;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub struct Store {
    dir: PathBuf,
}

/// An image of the store, its manifest and config checked against their
/// digests.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
    /// The manifest's digest (`sha256:…`).
    pub digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

/// A line of `shunt image list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub reference: String,
    pub digest: String,
    /// Config and layers, compressed as stored.
    pub size: u64,
    pub created: Option<String>,
}

impl Image {
    fn cfg(&self) -> Option<&oci_spec::image::Config> {
        self.config.config().as_ref()
    }
    pub fn entrypoint(&self) -> Vec<String> {
        self.cfg().and_then(|c| c.entrypoint().clone()).unwrap_or_default()
    }
    pub fn cmd(&self) -> Vec<String> {
        self.cfg().and_then(|c| c.cmd().clone()).unwrap_or_default()
    }
    /// `KEY=VALUE` entries split at the first `=`, in the image's order.
    pub fn env(&self) -> Vec<(String, String)> {
        let env = self.cfg().and_then(|c| c.env().clone()).unwrap_or_default();
        env.iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }
    pub fn workdir(&self) -> Option<String> {
        self.cfg().and_then(|c| c.working_dir().clone()).filter(|w| !w.is_empty())
    }
    pub fn user(&self) -> Option<String> {
        self.cfg().and_then(|c| c.user().clone()).filter(|u| !u.is_empty())
    }
    pub fn size(&self) -> u64 {
        self.manifest.config().size() + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
    }
}

/// Holds the store's lock (flock) while alive.
struct Lock(#[allow(dead_code)] File);

impl Store {
    /// The store of a state directory (`<state>/images`), created if needed.
    pub fn open(state_dir: &Path) -> Result<Store> {
        Self::at(state_dir.join("images"))
    }

    /// A store at `dir` itself.
    pub fn at(dir: PathBuf) -> Result<Store> {
        for sub in ["blobs/sha256", "rootfs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("cannot create the image store in {}", dir.display()))?;
        }
        let store = Store { dir };
        let layout = store.dir.join("oci-layout");
        if !layout.exists() {
            write_atomic(&store.dir, &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Lock> {
        let f = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("lock"))
            .with_context(|| format!("cannot open the image store's lock in {}", self.dir.display()))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).context("cannot lock the image store")?;
        Ok(Lock(f))
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("blobs/sha256").join(sha256_hex(digest)?))
    }

    /// A temporary directory inside the store (same file system as the blobs).
    pub fn temp_dir(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix("work-").tempdir_in(self.dir.join("tmp")).context("cannot make a temporary directory in the image store")
    }

    /// Stores the bytes `from` gives; when `expect` names a digest (and
    /// size), they must match it or nothing is stored. Gives the digest and
    /// size.
    pub fn put_blob(&self, from: impl Read, expect: Option<(&str, u64)>) -> Result<(String, u64)> {
        if let Some((d, size)) = expect {
            let path = self.blob_path(d)?;
            if path.metadata().is_ok_and(|m| m.len() == size) {
                return Ok((d.to_string(), size)); // verified when it was stored
            }
        }
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.join("tmp")).context("cannot write in the image store")?;
        let mut hashing = Hashing::new(from);
        std::io::copy(&mut hashing, tmp.as_file_mut()).context("cannot copy a blob into the image store")?;
        let (got, len) = hashing.finish()?;
        if let Some((d, size)) = expect {
            if got != d {
                bail!("blob {d} has the digest {got}: it is damaged or not what its manifest names; nothing was stored");
            }
            if len != size {
                bail!("blob {d} is {len} bytes, its descriptor says {size}; nothing was stored");
            }
        }
        let path = self.blob_path(&got)?;
        tmp.persist(&path).map_err(|e| e.error).with_context(|| format!("cannot store blob {got}"))?;
        Ok((got, len))
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(String, u64)> {
        self.put_blob(bytes, None)
    }

    /// A blob's bytes, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = std::fs::read(&path).with_context(|| format!("blob {digest} is missing from the image store ({})", path.display()))?;
        let got = digest::of_bytes(&bytes);
        if got != digest {
            bail!("blob {digest} in the image store is damaged (its content hashes to {got}); remove the image and import it again");
        }
        Ok(bytes)
    }

    /// Checks a stored blob (a layer) against its digest by reading it whole.
    pub fn verify_blob(&self, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        let f = File::open(&path).with_context(|| format!("blob {digest} is missing from the image store ({})", path.display()))?;
        let (got, _) = Hashing::new(f).finish().with_context(|| format!("cannot read blob {digest}"))?;
        if got != digest {
            bail!("blob {digest} in the image store is damaged (its content hashes to {got}); remove the image and import it again");
        }
        Ok(())
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.dir.join("index.json");
        if !path.exists() {
            return Ok(oci_spec::image::ImageIndexBuilder::default().schema_version(2u32).manifests(Vec::<Descriptor>::new()).build()?);
        }
        ImageIndex::from_file(&path).with_context(|| format!("the image store's index {} is damaged", path.display()))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let json = index.to_string().context("cannot encode the image index")?;
        write_atomic(&self.dir, &self.dir.join("index.json"), json.as_bytes())
    }

    /// Names the manifest `manifest` (a stored blob) `reference`, replacing
    /// what the name named before.
    pub fn tag(&self, reference: &str, manifest: &Descriptor) -> Result<String> {
        let name = normalize(reference)?;
        self.read_blob(manifest.digest().as_ref())?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut d = manifest.clone();
        d.set_media_type(MediaType::ImageManifest);
        d.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name.clone())])));
        d.set_platform(None);
        let mut manifests: Vec<Descriptor> = index.manifests().iter().filter(|m| ref_name(m) != Some(name.as_str())).cloned().collect();
        manifests.push(d);
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(name)
    }

    /// Stores `manifest` (and nothing else: its blobs must be stored) and
    /// names it `reference`.
    pub fn put_manifest(&self, reference: &str, manifest: &ImageManifest) -> Result<Image> {
        let json = manifest.to_string().context("cannot encode a manifest")?;
        let (digest, size) = self.put_bytes(json.as_bytes())?;
        for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
            let p = self.blob_path(d.digest().as_ref())?;
            if !p.exists() {
                bail!("the manifest for {reference} names blob {}, which is not in the store", d.digest());
            }
        }
        let desc = Descriptor::new(MediaType::ImageManifest, size, oci_spec::image::Digest::try_from(digest.as_str())?);
        let name = self.tag(reference, &desc)?;
        self.get(&name)
    }

    /// Whether the index names `reference` (whatever state its blobs are in).
    pub fn has(&self, reference: &str) -> bool {
        let Ok(name) = normalize(reference) else { return false };
        self.read_index().is_ok_and(|i| i.manifests().iter().any(|m| ref_name(m) == Some(name.as_str())))
    }

    /// The image `reference` names.
    pub fn get(&self, reference: &str) -> Result<Image> {
        let name = normalize(reference)?;
        let index = self.read_index()?;
        let Some(desc) = index.manifests().iter().find(|m| ref_name(m) == Some(name.as_str())) else {
            bail!("image {name} is not in the store (import it with `shunt image import`, or name it with its registry to pull it)");
        };
        let digest = desc.digest().to_string();
        let manifest = ImageManifest::from_reader(&self.read_blob(&digest)?[..]).with_context(|| format!("the manifest of {name} is not an OCI image manifest"))?;
        let config_digest = manifest.config().digest().to_string();
        let config = ImageConfiguration::from_reader(&self.read_blob(&config_digest)?[..])
            .with_context(|| format!("the config of {name} is not an OCI image config"))?;
        if config.rootfs().diff_ids().len() != manifest.layers().len() {
            bail!("image {name} is inconsistent: its config lists {} layers, its manifest {}", config.rootfs().diff_ids().len(), manifest.layers().len());
        }
        Ok(Image { reference: name, digest, manifest, config })
    }

    pub fn list(&self) -> Result<Vec<Listed>> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for m in index.manifests() {
            let Some(name) = ref_name(m) else { continue };
            match self.get(name) {
                Ok(img) => out.push(Listed {
                    reference: img.reference.clone(),
                    digest: img.digest.clone(),
                    size: img.size(),
                    created: img.config.created().clone(),
                }),
                Err(e) => bail!("{e:#}"),
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Removes the name `reference`, then every blob and unpacked root no
    /// name needs any more.
    pub fn remove(&self, reference: &str) -> Result<()> {
        let name = normalize(reference)?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests().len();
        let manifests: Vec<Descriptor> = index.manifests().iter().filter(|m| ref_name(m) != Some(name.as_str())).cloned().collect();
        if manifests.len() == before {
            bail!("image {name} is not in the store (see `shunt image list`)");
        }
        index.set_manifests(manifests);
        self.write_index(&index)?;
        self.collect_garbage(&index)
    }

    fn collect_garbage(&self, index: &ImageIndex) -> Result<()> {
        let mut live: HashSet<String> = HashSet::new();
        let mut roots: HashSet<String> = HashSet::new();
        for m in index.manifests() {
            let d = m.digest().to_string();
            let Ok(bytes) = self.read_blob(&d) else { continue };
            live.insert(sha256_hex(&d)?.to_string());
            roots.insert(sha256_hex(&d)?.to_string());
            if let Ok(man) = ImageManifest::from_reader(&bytes[..]) {
                for b in std::iter::once(man.config()).chain(man.layers()) {
                    if let Ok(h) = sha256_hex(b.digest().as_ref()) {
                        live.insert(h.to_string());
                    }
                }
            }
        }
        for (sub, keep) in [("blobs/sha256", &live), ("rootfs", &roots)] {
            let dir = self.dir.join(sub);
            for e in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
                let e = e?;
                let n = e.file_name().to_string_lossy().into_owned();
                let hex = n.strip_suffix(".json").unwrap_or(&n);
                if n.starts_with('.') || keep.contains(hex) {
                    continue;
                }
                let p = e.path();
                let r = if e.file_type()?.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                r.with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        Ok(())
    }

    /// The root filesystem of `image`: its layers applied in order, each
    /// checked against its digest and diff ID; made once per manifest.
    pub fn rootfs(&self, image: &Image) -> Result<PathBuf> {
        let hex = sha256_hex(&image.digest)?.to_string();
        let dir = self.dir.join("rootfs").join(&hex);
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".unpack-{hex}-"))
            .tempdir_in(self.dir.join("rootfs"))
            .context("cannot make a directory in the image store")?;
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let root: std::os::fd::OwnedFd = File::open(tmp.path())?.into();
        let mut report = unpack::Report::default();
        let options = unpack::Options::default();
        for (layer, diff_id) in image.manifest.layers().iter().zip(image.config.rootfs().diff_ids()) {
            let d = layer.digest().to_string();
            self.verify_blob(&d)?;
            let f = File::open(self.blob_path(&d)?)?;
            let (got, _) = unpack::apply_layer(&root, f, &options, &mut report)
                .with_context(|| format!("cannot unpack layer {d} of {}", image.reference))?;
            if &got != diff_id {
                bail!("layer {d} of {} unpacks to {got}, but the config says {diff_id}: the image is damaged", image.reference);
            }
        }
        let json = serde_json::to_vec_pretty(&report)?;
        write_atomic(&self.dir.join("rootfs"), &self.dir.join("rootfs").join(format!("{hex}.json")), &json)?;
        let path = tmp.keep();
        match std::fs::rename(&path, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if dir.is_dir() => {
                // Another process unpacked the same image meanwhile.
                let _ = std::fs::remove_dir_all(&path);
                Ok(dir)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e).with_context(|| format!("cannot move the unpacked root into {}", dir.display()))
            }
        }
    }

    /// What unpacking `image` reported, if it is unpacked.
    pub fn unpack_report(&self, image: &Image) -> Option<serde_json::Value> {
        let hex = sha256_hex(&image.digest).ok()?;
        let bytes = std::fs::read(self.dir.join("rootfs").join(format!("{hex}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

/// Writes `path` whole or not at all.
pub fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
