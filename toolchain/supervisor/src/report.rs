//! The stats of an instance: every process's segment in the instance
//! directory, summed. Readable while the instance runs (live counters) and
//! after it ended (final).

use std::path::Path;

use anyhow::{Context, Result};

/// The report of an instance: the one schema (`shunt_stats::Report`).
pub use shunt_stats::Report;

/// Reads the segments in `dir` (the processes may still be running).
pub fn read(dir: &Path) -> Result<Report> {
    shunt_stats::read_instance(dir)
        .with_context(|| format!("cannot read the instance's statistics in {}", dir.display()))
}

/// Writes `report` to `out` through a temporary file in the same directory
/// and `rename`, so a reader never sees half a report. `out` must be a new
/// path or a regular file (see [`check_stats_path`]).
pub fn write_to(report: &Report, out: &Path) -> Result<()> {
    check_stats_path(out)?;
    let name = out.file_name().with_context(|| format!("{}: not a file name", out.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    std::fs::write(&tmp, report.to_json()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", out.display())
    })
}

/// A stats report may replace only a regular file: never a device, a FIFO,
/// a directory or a symbolic link (a report path of `/dev/null` must not
/// destroy `/dev/null`), and its directory must exist.
pub fn check_stats_path(out: &Path) -> Result<()> {
    Ok(shunt_userfile::check_output(out)?)
}
