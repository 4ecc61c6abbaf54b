//! What a container asks of shunt, in OCI annotations (a pod's
//! annotations reach the spec through the CRI; `ctr run --annotation`):
//!
//! | annotation | values | default |
//! |---|---|---|
//! | `io.shunt.runtime` | `shunt`, `native` (the spec goes to runc untouched) | `shunt` |
//! | `io.shunt.policy` | a policy file on the host (an absolute path), or the policy's TOML itself | the built-in FaaS profile |
//! | `io.shunt.stats` | a host directory for the container's stats | `<root>-shunt/<id>` |
//! | `io.shunt.transport` | `kernel` | `kernel` |
//! | `io.shunt.trap` | `on`, `off` (no trap fallback) | `on` |
//! | `io.shunt.patch` | `on`, `off` (glibc unpatched: its calls trap) | `on` |
//! | `io.shunt.rewrite` | `on`, `off` (static programs' syscall sites not rewritten at load: their calls trap) | `on` |
//!
//! An `io.shunt.*` annotation this list does not have is refused, so that
//! a misspelt one is not silently ignored.
//!
//! A Kubernetes pod's sandbox container (`io.kubernetes.cri.container-type`
//! = `sandbox`, the CRI's `pause` process, which holds the pod's
//! namespaces and only waits for signals) always goes to runc untouched:
//! the pod's `io.shunt.*` annotations reach it too (containerd's
//! `pod_annotations` passes them to every container of the pod), and
//! running it on shunt would only count `pause`'s calls into no one's
//! stats.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use shunt_policy::Compiled;

pub const PREFIX: &str = "io.shunt.";
/// The CRI's annotation saying which container of a pod this is.
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

pub struct Settings {
    pub enabled: bool,
    pub policy: Compiled,
    /// The stats directory chosen by annotation.
    pub stats_dir: Option<PathBuf>,
    pub trap: bool,
    pub patch: bool,
    pub rewrite: bool,
}

fn on_off(key: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => bail!("annotation {key}={v:?}: use on or off"),
    }
}

pub fn from_annotations(a: &HashMap<String, String>) -> Result<Settings> {
    let mut s = Settings { enabled: true, policy: Compiled::builtin(), stats_dir: None, trap: true, patch: true, rewrite: true };
    let mut keys: Vec<&String> = a.keys().filter(|k| k.starts_with(PREFIX)).collect();
    keys.sort();
    for key in keys {
        let v = a[key].as_str();
        match &key[PREFIX.len()..] {
            "runtime" => {
                s.enabled = match v {
                    "shunt" => true,
                    "native" => false,
                    _ => bail!("annotation {key}={v:?}: use shunt or native"),
                }
            }
            "policy" => {
                s.policy = if v.starts_with('/') {
                    let text = std::fs::read_to_string(v).with_context(|| format!("annotation {key}: cannot read the policy file {v}"))?;
                    Compiled::from_toml(v, &text).with_context(|| format!("annotation {key}"))?
                } else {
                    Compiled::from_toml(key, v).with_context(|| format!("annotation {key} (TOML, or an absolute path to a policy file)"))?
                }
            }
            "stats" => {
                if !v.starts_with('/') {
                    bail!("annotation {key}={v:?}: name an absolute directory on the host");
                }
                s.stats_dir = Some(PathBuf::from(v));
            }
            "transport" => match v {
                "kernel" => {}
                "shared-memory" | "shm" => {
                    bail!("annotation {key}={v:?}: the shared-memory transport cannot be chosen for a container yet; use kernel")
                }
                _ => bail!("annotation {key}={v:?}: use kernel"),
            },
            "trap" => s.trap = on_off(key, v)?,
            "patch" => s.patch = on_off(key, v)?,
            "rewrite" => s.rewrite = on_off(key, v)?,
            _ => bail!("unknown annotation {key}: shunt-oci reads io.shunt.runtime, policy, stats, transport, trap, patch and rewrite"),
        }
    }
    if a.get(CRI_CONTAINER_TYPE).is_some_and(|t| t == "sandbox") {
        s.enabled = false;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pairs: &[(&str, &str)]) -> Result<Settings> {
        from_annotations(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn defaults_and_choices() {
        let s = of(&[("org.other", "x")]).unwrap();
        assert!(s.enabled && s.trap && s.patch && s.stats_dir.is_none());
        assert!(s.rewrite);
        let s = of(&[("io.shunt.runtime", "native"), ("io.shunt.trap", "off"), ("io.shunt.stats", "/var/s"), ("io.shunt.rewrite", "off")]).unwrap();
        assert!(!s.enabled && !s.trap && !s.rewrite);
        assert_eq!(s.stats_dir, Some(PathBuf::from("/var/s")));
        let s = of(&[("io.shunt.policy", "base = \"none\"\n[syscalls]\nmkdirat = \"deny\"\n")]).unwrap();
        assert_eq!(s.policy.to_text().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(), ["258 deny 1"], "mkdirat (258) alone, denied with EPERM");
    }

    #[test]
    fn a_pods_sandbox_runs_on_plain_runc() {
        let s = of(&[("io.kubernetes.cri.container-type", "sandbox"), ("io.shunt.runtime", "shunt")]).unwrap();
        assert!(!s.enabled);
        let s = of(&[("io.kubernetes.cri.container-type", "container")]).unwrap();
        assert!(s.enabled);
    }

    #[test]
    fn mistakes_are_refused() {
        for bad in [
            ("io.shunt.runtime", "gvisor"),
            ("io.shunt.polcy", "x"),
            ("io.shunt.stats", "relative"),
            ("io.shunt.trap", "maybe"),
            ("io.shunt.transport", "rdma"),
            ("io.shunt.policy", "/no/such/policy.toml"),
            ("io.shunt.policy", "[syscalls]\nnosuchcall = \"deny\""),
        ] {
            assert!(of(&[bad]).is_err(), "{bad:?}");
        }
    }
}
