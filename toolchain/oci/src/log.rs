//! Reporting an error the way runc does, so that containerd's shim shows
//! it: runc writes its fatal error to stderr and, when `--log` names a
//! file, as an entry of that log — a JSON object per line with
//! `--log-format json` (the shim reads the last `"level":"error"` entry's
//! `msg` and makes it the error of `ctr run` / the pod event), else
//! logrus's text line.

use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Where runc's log goes (`--log`, `--log-format`).
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// `None`: stderr.
    pub file: Option<PathBuf>,
    pub format: Format,
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// One log entry for `msg` at level `error`, in `format`.
fn entry(format: Format, msg: &str) -> String {
    entry_at("error", format, msg)
}

/// One log entry for `msg` at `level`, in `format`.
fn entry_at(level: &str, format: Format, msg: &str) -> String {
    match format {
        Format::Json => serde_json::json!({"level": level, "msg": msg, "time": now()}).to_string(),
        Format::Text => format!("time={:?} level={level} msg={:?}", now(), msg),
    }
}

/// Reports a warning the way runc logs one: as an entry of the log when
/// `--log` names a file, and only there; on stderr when none is named.
/// Never on stderr beside a log: for `exec` the shim hands runc the new
/// process's stdio, so runc's stderr is the exec'd program's, and a
/// warning there would read as the program's own output.
pub fn warn(log: &Log, msg: &str) {
    warn_to(log, msg, &mut std::io::stderr());
}

fn warn_to(log: &Log, msg: &str, stderr: &mut dyn Write) {
    let line = format!("shunt-oci: warning: {}", msg.replace('\n', " "));
    let Some(file) = &log.file else {
        let _ = writeln!(stderr, "{line}");
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| writeln!(f, "{}", entry_at("warning", log.format, &line)));
    if let Err(err) = written {
        // Lost otherwise: stderr, as runc would have nowhere else either.
        let _ = writeln!(stderr, "{line} (cannot write the log {}: {err})", file.display());
    }
}

/// Reports `e` as one line: on stderr, and in the log when one is named
/// (in its format); with `--log-format json` and no file, stderr gets the
/// JSON entry, as runc's does.
pub fn report(log: &Log, e: &anyhow::Error) {
    // One line: the causes joined, newlines inside them flattened.
    let msg = format!("{e:#}").replace('\n', " ");
    match (&log.file, log.format) {
        (None, Format::Json) => eprintln!("{}", entry(Format::Json, &format!("shunt-oci: {msg}"))),
        (None, Format::Text) => eprintln!("shunt-oci: {msg}"),
        (Some(file), format) => {
            eprintln!("shunt-oci: {msg}");
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .and_then(|mut f| writeln!(f, "{}", entry(format, &format!("shunt-oci: {msg}"))));
            if let Err(err) = written {
                eprintln!("shunt-oci: cannot write the log {}: {err}", file.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_entries_are_what_the_shim_parses() {
        let v: serde_json::Value = serde_json::from_str(&entry(Format::Json, "a \"quoted\" thing")).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "a \"quoted\" thing");
        assert!(v["time"].as_str().unwrap().contains('T'));
    }

    #[test]
    fn warnings_go_to_the_log_not_to_stderr_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log.json");
        let log = Log { file: Some(file.clone()), format: Format::Json };
        let mut stderr = Vec::new();
        warn_to(&log, "cannot plan x", &mut stderr);
        assert!(stderr.is_empty(), "stderr got {:?}", String::from_utf8_lossy(&stderr));
        let text = std::fs::read_to_string(&file).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["level"], "warning");
        assert_eq!(v["msg"], "shunt-oci: warning: cannot plan x");
        // No log named: stderr, one line.
        let mut stderr = Vec::new();
        warn_to(&Log::default(), "a\nb", &mut stderr);
        assert_eq!(String::from_utf8(stderr).unwrap(), "shunt-oci: warning: a b\n");
    }
}
