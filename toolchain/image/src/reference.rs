//! Image references (`[registry/]repository[:tag][@digest]`) in the form
//! the store keys them by: Docker Hub's implicit `docker.io/` and
//! `library/` dropped, `:latest` added when neither tag nor digest is given,
//! so that `alpine`, `docker.io/library/alpine:latest` and `alpine:latest`
//! name one image.

use std::fmt;

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`; `None` is Docker Hub.
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |why: &str| anyhow::anyhow!("image reference {s:?} {why}");
        if s.is_empty() {
            bail!("the image reference is empty");
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                crate::digest::sha256_hex(d).map_err(|e| bad(&format!("has a bad digest: {e}")))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("has a tag that is not [A-Za-z0-9_.-]{1,128}"));
            }
        }
        let (mut registry, mut repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (Some(first.to_string()), rest.to_string()),
            _ => (None, name.to_string()),
        };
        if let Some(r) = &registry {
            let (host, port) = match r.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (r.as_str(), None),
            };
            let host_ok = host.starts_with(|c: char| c.is_ascii_alphanumeric())
                && host.ends_with(|c: char| c.is_ascii_alphanumeric())
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b));
            let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
            if !host_ok || !port_ok {
                return Err(bad("has a registry that is not host[:port]"));
            }
        }
        if matches!(registry.as_deref(), Some("docker.io" | "index.docker.io" | "registry-1.docker.io")) {
            registry = None;
        }
        if registry.is_none() {
            if let Some(r) = repository.strip_prefix("library/") {
                repository = r.to_string();
            }
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad("has a repository name that is not lowercase letters, digits and ._- separated by /"));
        }
        if tag.is_none() && digest.is_none() {
            return Ok(Reference { registry, repository, tag: Some("latest".into()), digest });
        }
        Ok(Reference { registry, repository, tag, digest })
    }

    /// Whether the registry is on this machine's loopback, the only place
    /// plain HTTP is allowed.
    pub fn is_loopback_registry(&self) -> bool {
        let Some(r) = &self.registry else { return false };
        let host = match r.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => r.as_str(),
        };
        host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback()) || host == "[::1]"
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The store's key for `s`.
pub fn normalize(s: &str) -> Result<String> {
    Ok(Reference::parse(s)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_one_name_agree() {
        for s in ["alpine", "alpine:latest", "docker.io/library/alpine", "library/alpine:latest", "index.docker.io/library/alpine:latest"] {
            assert_eq!(normalize(s).unwrap(), "alpine:latest", "{s}");
        }
        assert_eq!(normalize("functions/alpine").unwrap(), "functions/alpine:latest");
        assert_eq!(normalize("127.0.0.1:5000/functions/alpine:1.2").unwrap(), "127.0.0.1:5000/functions/alpine:1.2");
        let r = Reference::parse("localhost:5000/x/y").unwrap();
        assert!(r.is_loopback_registry());
        assert!(!Reference::parse("ghcr.io/x/y").unwrap().is_loopback_registry());
        assert!(!Reference::parse("x/y").unwrap().is_loopback_registry());
    }

    #[test]
    fn bad_names_are_refused() {
        for s in ["", "Alpine", "alpine:", "alpine:bad/tag", "a//b", "alpine@sha256:xyz", "../x", "x:-t"] {
            assert!(normalize(s).is_err(), "{s:?} accepted");
        }
    }
}
