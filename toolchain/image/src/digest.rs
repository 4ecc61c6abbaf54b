//! Content digests: every blob is named by the SHA-256 of its bytes, and
//! nothing is trusted that was not hashed on the way in.

use std::io::{self, Read};

use anyhow::{bail, Result};
use sha2::{Digest as _, Sha256};

/// The lowercase hex of a `sha256:<hex>` digest, checked for shape (an
/// unchecked name could be a path: `sha256:../../x`).
pub fn sha256_hex(digest: &str) -> Result<&str> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        bail!("digest {digest:?} is not a sha256 digest (only sha256 is supported)");
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("digest {digest:?} is not 64 lowercase hex digits after sha256:");
    }
    Ok(hex)
}

/// `sha256:<hex>` of `bytes`.
pub fn of_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A reader that hashes and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Reads the rest, then gives `(sha256:<hex>, bytes read)`.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format!("sha256:{}", hex::encode(self.hasher.finalize())), self.len))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(sha256_hex("sha256:../../etc/passwd").is_err());
        assert!(sha256_hex("md5:abc").is_err());
        let d = of_bytes(b"abc");
        assert_eq!(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_hex(&d).unwrap().len(), 64);
        let (h, n) = Hashing::new(&b"abc"[..]).finish().unwrap();
        assert_eq!((h.as_str(), n), (d.as_str(), 3));
    }
}
