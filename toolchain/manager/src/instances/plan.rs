//! From a deployment and its image to what an instance is started with, and
//! the scaling rules its labels give.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::images::ResolvedImage;
use crate::model::FunctionDeployment;
use crate::names::Key;

/// The most replicas of one function.
pub const MAX_REPLICAS: u64 = 1000;

/// Where the function's secrets appear, as OpenFaaS promises.
pub const SECRETS_MOUNT: &str = "/var/openfaas/secrets";

/// Everything about a deployment that an instance start needs; immutable
/// (an update makes a new plan with a higher generation).
#[derive(Debug, Clone)]
pub struct Plan {
    pub key: Key,
    pub generation: u64,
    pub image: String,
    pub digest: String,
    pub program: PathBuf,
    pub argv0: OsString,
    pub args: Vec<OsString>,
    /// Image env, then `fprocess`, then the deployment's env vars.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub root: Option<PathBuf>,
    pub read_only_root: bool,
    /// The image's USER (`user[:group]`, names or numbers), for an image root.
    pub user: Option<String>,
    pub secrets: Vec<String>,
    pub memory_limit: Option<u64>,
    pub scale: ScaleRules,
    /// How long a replica being stopped may take to finish its requests,
    /// and then to exit after SIGTERM (the function's `write_timeout`).
    pub drain: Duration,
    /// Upstream timeout for one request.
    pub timeout: Duration,
    /// Why no instance can start (the image is gone or broken); set when a
    /// stored deployment is loaded at start-up and its image fails.
    pub error: Option<String>,
}

/// `com.openfaas.scale.*` labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRules {
    pub min: u64,
    pub max: u64,
    /// The most replicas a scale request gets: `max` when the label sets
    /// it, else [`MAX_REPLICAS`].
    pub cap: u64,
    /// Replicas added per scale-up step: `factor`% of `max`, at least one;
    /// 0 disables autoscaling.
    pub step: u64,
    /// Requests per second (over 10 s) above which the function scales up.
    pub target_rps: f64,
    /// Whether load scales the function between `min` and `max`: only when
    /// the labels give a range (`min` or `max` set, `max > min`).
    pub autoscale: bool,
    /// Scale to zero after this long without a request.
    pub zero_after: Option<Duration>,
}

/// How long a function labelled `com.openfaas.scale.zero=true` without
/// `com.openfaas.scale.zero-duration` may idle before it scales to zero, in
/// milliseconds: the daemon's `--scale-zero-after` (15 min, OpenFaaS's
/// default, unless set). Process-wide: one daemon per process.
static DEFAULT_ZERO_AFTER_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(15 * 60 * 1000);

pub fn set_default_zero_after(d: Duration) {
    DEFAULT_ZERO_AFTER_MS.store(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
}

pub fn default_zero_after() -> Duration {
    Duration::from_millis(DEFAULT_ZERO_AFTER_MS.load(std::sync::atomic::Ordering::Relaxed))
}

impl ScaleRules {
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<ScaleRules> {
        let num = |k: &str| -> Result<Option<u64>> {
            match labels.get(k) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) => Ok(Some(n)),
                    Err(_) => bail!("label {k}={v:?} is not a whole number"),
                },
            }
        };
        let min_l = num("com.openfaas.scale.min")?;
        let max_l = num("com.openfaas.scale.max")?;
        let min = min_l.unwrap_or(1);
        let max = max_l.unwrap_or(20);
        if max < min {
            bail!("label com.openfaas.scale.max={max} is below com.openfaas.scale.min={min}");
        }
        if max > MAX_REPLICAS {
            bail!("label com.openfaas.scale.max={max} is over {MAX_REPLICAS} replicas");
        }
        let factor = num("com.openfaas.scale.factor")?.unwrap_or(20);
        if factor > 100 {
            bail!("label com.openfaas.scale.factor={factor} is over 100 (percent)");
        }
        let step = if factor == 0 { 0 } else { ((max * factor).div_ceil(100)).max(1) };
        let target_rps = match labels.get("com.openfaas.scale.target") {
            None => 5.0,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(t) if t > 0.0 && t.is_finite() => t,
                _ => bail!("label com.openfaas.scale.target={v:?} is not a positive number"),
            },
        };
        let zero = match labels.get("com.openfaas.scale.zero").map(|v| v.trim()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => bail!("label com.openfaas.scale.zero={v:?} is neither true nor false"),
        };
        let zero_after = if zero {
            Some(match labels.get("com.openfaas.scale.zero-duration") {
                None => default_zero_after(),
                Some(v) => parse_duration(v)
                    .ok_or_else(|| anyhow::anyhow!("label com.openfaas.scale.zero-duration={v:?} is not a duration (like 30s or 15m)"))?,
            })
        } else {
            None
        };
        let autoscale = (min_l.is_some() || max_l.is_some()) && max > min && step > 0;
        let cap = max_l.unwrap_or(MAX_REPLICAS);
        Ok(ScaleRules { min, max, cap, step, target_rps, autoscale, zero_after })
    }
}

/// The longest duration Go's `time.Duration` holds (`i64::MAX` ns, about
/// 292 years): `time.ParseDuration` refuses anything longer, and so does
/// [`parse_duration`], which also keeps sums like `timeout + 1 s` and
/// `Instant::now() + timeout` far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Go-style durations (`10s`, `1m30s`, `500ms`) or plain seconds (`10`), as
/// of-watchdog reads its timeouts; `None` for anything else, and for more
/// than [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs)).filter(|d| *d <= MAX_DURATION);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(Duration::try_from_secs_f64(n * scale).ok()?)?;
    }
    Some(total).filter(|d| *d <= MAX_DURATION)
}

/// `limits.memory` in bytes (`64Mi`, `1Gi`, `128M`, `500000`).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000 * 1000,
        "G" => 1000 * 1000 * 1000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Splits `fprocess` the way the watchdogs do (on white space).
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl Plan {
    /// A plan that cannot start anything, for a stored deployment whose
    /// image or settings no longer work; `describe` shows `error`.
    pub fn broken(key: &Key, spec: &FunctionDeployment, generation: u64, error: String) -> Plan {
        Plan {
            key: key.clone(),
            generation,
            image: spec.image.clone(),
            digest: String::new(),
            program: PathBuf::new(),
            argv0: OsString::new(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            root: None,
            read_only_root: false,
            user: None,
            secrets: Vec::new(),
            memory_limit: None,
            scale: ScaleRules::from_labels(&spec.labels.clone().unwrap_or_default())
                .unwrap_or(ScaleRules { min: 1, max: 1, cap: 1, step: 0, target_rps: 5.0, autoscale: false, zero_after: None }),
            drain: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            error: Some(error),
        }
    }

    pub fn new(key: &Key, spec: &FunctionDeployment, image: &ResolvedImage, generation: u64, default_timeout: Duration) -> Result<Plan> {
        let labels = spec.labels.clone().unwrap_or_default();
        let scale = ScaleRules::from_labels(&labels)?;
        let mut command: Vec<String> = image.entrypoint.iter().chain(image.cmd.iter()).cloned().collect();
        if command.is_empty() {
            // An image with no entrypoint runs its fprocess directly.
            command = words(if spec.env_process.is_empty() { image.env_value("fprocess").unwrap_or("") } else { &spec.env_process });
        }
        let Some(program) = command.first().cloned() else {
            bail!("image {} has no entrypoint or cmd, and the deployment sets no envProcess", spec.image);
        };
        let mut env: Vec<(String, String)> = image.env.clone();
        if !spec.env_process.is_empty() {
            env.retain(|(k, _)| k != "fprocess");
            env.push(("fprocess".into(), spec.env_process.clone()));
        }
        for (k, v) in &spec.env_vars {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        let env_get = |k: &str| env.iter().rev().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        let write_timeout = env_get("write_timeout").and_then(parse_duration);
        let exec_timeout = env_get("exec_timeout").and_then(parse_duration);
        let timeout = match (write_timeout, exec_timeout) {
            (None, None) => default_timeout,
            (a, b) => a.unwrap_or_default().max(b.unwrap_or_default()) + Duration::from_secs(1),
        };
        let drain = write_timeout.unwrap_or(Duration::from_secs(10)).clamp(Duration::from_secs(1), Duration::from_secs(120));
        let memory_limit = match spec.limits.as_ref().map(|l| l.memory.as_str()).filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(parse_memory(m).ok_or_else(|| anyhow::anyhow!("limits.memory {m:?} is not a size (like 64Mi or 1Gi)"))?),
        };
        let cwd = match (&image.workdir, &image.root) {
            (Some(w), _) if !w.is_empty() => PathBuf::from(w),
            (_, Some(_)) => PathBuf::from("/"),
            (_, None) => image.host_dir.clone().unwrap_or_else(|| PathBuf::from("/")),
        };
        let program_path = if program.contains('/') && image.root.is_none() && !program.starts_with('/') {
            cwd.join(&program)
        } else {
            PathBuf::from(&program)
        };
        Ok(Plan {
            key: key.clone(),
            generation,
            image: spec.image.clone(),
            digest: image.digest.clone(),
            program: program_path,
            argv0: OsString::from(&program),
            args: command[1..].iter().map(OsString::from).collect(),
            env,
            cwd,
            root: image.root.clone(),
            read_only_root: spec.read_only_root_filesystem,
            user: image.root.as_ref().and(image.user.clone()),
            secrets: spec.secrets.clone(),
            memory_limit,
            scale,
            drain,
            timeout,
            error: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn scale_labels() {
        let r = ScaleRules::from_labels(&labels(&[])).unwrap();
        assert_eq!((r.min, r.max, r.autoscale, r.zero_after), (1, 20, false, None));
        let r = ScaleRules::from_labels(&labels(&[("com.openfaas.scale.min", "1"), ("com.openfaas.scale.max", "2")])).unwrap();
        assert!(r.autoscale);
        assert_eq!(r.step, 1);
        let r = ScaleRules::from_labels(&labels(&[("com.openfaas.scale.min", "2"), ("com.openfaas.scale.max", "2")])).unwrap();
        assert!(!r.autoscale, "min = max: scaling disabled");
        let r = ScaleRules::from_labels(&labels(&[("com.openfaas.scale.zero", "true"), ("com.openfaas.scale.zero-duration", "2s")])).unwrap();
        assert_eq!(r.zero_after, Some(Duration::from_secs(2)));
        for bad in [("com.openfaas.scale.min", "x"), ("com.openfaas.scale.zero", "yes"), ("com.openfaas.scale.target", "-1")] {
            assert!(ScaleRules::from_labels(&labels(&[bad])).is_err(), "{bad:?}");
        }
        assert!(ScaleRules::from_labels(&labels(&[("com.openfaas.scale.min", "3"), ("com.openfaas.scale.max", "2")])).is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5q"), None);
        // Past Go's limit, in one number or in a sum (once a panic in
        // Duration's `+=`, found by the manager_request fuzzer).
        assert_eq!(parse_duration("9223372036"), Some(Duration::from_secs(9_223_372_036)));
        assert_eq!(parse_duration("9223372037"), None);
        assert_eq!(parse_duration("18446744073709551615"), None);
        assert_eq!(parse_duration("10000000000000000000s10000000000000000000s"), None);
        assert_eq!(parse_duration("2562047h"), Some(Duration::from_secs(2_562_047 * 3600)));
        assert_eq!(parse_duration("2562048h"), None);
        assert_eq!(parse_memory("64Mi"), Some(64 << 20));
        assert_eq!(parse_memory("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory("12"), Some(12));
        assert_eq!(parse_memory("1Qi"), None);
        assert_eq!(parse_memory("99999999999999999999Gi"), None);
    }
}
