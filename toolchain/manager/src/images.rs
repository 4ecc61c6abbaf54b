//! What the manager needs from an image: the command, environment and
//! root an instance of it starts with. The store itself (OCI layout under
//! `<state>/images`, digests, unpacking) is `shunt-image`'s; this is the
//! narrow interface the manager uses, so that tests can stand in for it.

use std::path::PathBuf;

/// An image found in the store, its blobs checked against their digests.
#[derive(Debug, Clone, Default)]
pub struct ResolvedImage {
    pub reference: String,
    /// The manifest digest (`sha256:…`).
    pub digest: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// The unpacked root the instance runs in; `None` runs it on the host's
    /// root (then `host_dir` holds the image's files).
    pub root: Option<PathBuf>,
    pub host_dir: Option<PathBuf>,
}

impl ResolvedImage {
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub trait Images: Send + Sync {
    /// Finds `reference` and checks it; the error is one line that says what
    /// is wrong (not in the store, a blob failing its digest, …).
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String>;
}

/// The store of functions built on this machine, until `shunt-image`'s OCI
/// store replaces it (see PLAN.md "Interfaces"): `shunt faas build` records
/// each built bundle under `<state>/images/bundles/<reference>.json` — its
/// binary (with the binary's SHA-256), directory and stack environment, per
/// variant (`shunt`, `native`) — and a deployment naming that reference runs
/// the binary on the host's root. A daemon run with `--native` runs the
/// `native` variant, else the `shunt` one.
pub mod bundles {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    use super::{Images, ResolvedImage};

    #[derive(Serialize, Deserialize, Debug, Clone)]
    pub struct Variant {
        pub binary: PathBuf,
        pub dir: PathBuf,
        /// `sha256:<hex>` of the binary when it was recorded.
        pub digest: String,
        #[serde(default)]
        pub environment: BTreeMap<String, String>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, Default)]
    pub struct Record {
        pub reference: String,
        /// By variant: `shunt` or `native`.
        pub variants: BTreeMap<String, Variant>,
    }

    /// Where the record of `reference` lives (the reference percent-escaped
    /// into one file name).
    pub fn record_path(state: &Path, reference: &str) -> PathBuf {
        let mut name = String::new();
        for b in reference.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02x}"));
            }
        }
        crate::state::dir::images_dir(state).join("bundles").join(format!("{name}.json"))
    }

    pub fn digest_of(file: &Path) -> std::io::Result<String> {
        let mut f = std::fs::File::open(file)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(format!("sha256:{}", h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()))
    }

    /// Records one built variant of `reference` (written whole, then renamed
    /// into place, so a reader never sees half a record).
    pub fn record(state: &Path, reference: &str, variant: &str, binary: &Path, dir: &Path, environment: BTreeMap<String, String>) -> anyhow::Result<()> {
        use anyhow::Context;
        crate::state::secrets::make_private_dir(state)?;
        let path = record_path(state, reference);
        let parent = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create the image store {}", parent.display()))?;
        let mut rec: Record = std::fs::read(&path).ok().and_then(|t| serde_json::from_slice(&t).ok()).unwrap_or_default();
        rec.reference = reference.to_string();
        let digest = digest_of(binary).with_context(|| format!("cannot read {}", binary.display()))?;
        rec.variants.insert(variant.to_string(), Variant { binary: binary.to_path_buf(), dir: dir.to_path_buf(), digest, environment });
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&rec)?).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub struct BundleStore {
        pub state: PathBuf,
        /// `native` or `shunt`.
        pub variant: &'static str,
    }

    impl BundleStore {
        pub fn new(state: &Path, native: bool) -> BundleStore {
            BundleStore { state: state.to_path_buf(), variant: if native { "native" } else { "shunt" } }
        }
    }

    impl Images for BundleStore {
        fn resolve(&self, reference: &str) -> Result<ResolvedImage, String> {
            let path = record_path(&self.state, reference);
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(format!(
                        "image {reference} is not in the store {} (build it with `shunt faas build` and the same SHUNT_STATE_DIR)",
                        crate::state::dir::images_dir(&self.state).display()
                    ))
                }
                Err(e) => return Err(format!("image {reference}: cannot read {}: {e}", path.display())),
            };
            let rec: Record = serde_json::from_slice(&text)
                .map_err(|e| format!("image {reference}: {} is damaged ({e}); build the function again", path.display()))?;
            let v = rec.variants.get(self.variant).ok_or_else(|| {
                format!(
                    "image {reference} has no {} build (build it with `shunt faas build{}`)",
                    self.variant,
                    if self.variant == "native" { " --native" } else { "" }
                )
            })?;
            let digest = digest_of(&v.binary).map_err(|e| format!("image {reference}: cannot read {}: {e}", v.binary.display()))?;
            if digest != v.digest {
                return Err(format!(
                    "image {reference}: {} fails its digest (recorded {}, now {digest}); build the function again",
                    v.binary.display(),
                    v.digest
                ));
            }
            Ok(ResolvedImage {
                reference: reference.to_string(),
                digest,
                entrypoint: vec![v.binary.display().to_string()],
                cmd: Vec::new(),
                env: v.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                workdir: Some(v.dir.display().to_string()),
                user: None,
                root: None,
                host_dir: Some(v.dir.clone()),
            })
        }
    }
}
