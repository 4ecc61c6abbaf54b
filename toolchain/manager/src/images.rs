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

