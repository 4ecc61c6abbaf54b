//! The stats of an instance: every process's segment in the instance
//! directory, summed. Readable while the instance runs (live counters) and
//! after it ended (final).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use shunt_runtime::layout::Counter;
use shunt_runtime::stats::{merge_dir_by_program, programs_json, ProgramTotals, Totals};

/// Summed counters of an instance's processes.
#[derive(Clone)]
pub struct Report {
    pub totals: Box<Totals>,
    pub programs: BTreeMap<String, ProgramTotals>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("processes", &self.totals.processes)
            .field("redirected", &self.total(Counter::Redirected))
            .field("trapped", &self.total(Counter::Trapped))
            .finish_non_exhaustive()
    }
}

impl Report {
    /// Reads the segments in `dir` (the processes may still be running).
    pub fn read(dir: &Path) -> Result<Report> {
        let (totals, programs) = merge_dir_by_program(dir)
            .with_context(|| format!("cannot read the instance's statistics in {}", dir.display()))?;
        Ok(Report { totals: Box::new(totals), programs })
    }

    pub fn total(&self, class: Counter) -> u64 {
        self.totals.total(class)
    }

    /// The JSON report of DESIGN.md, with `processes` and `by_program`.
    pub fn to_json(&self) -> String {
        let mut json = String::new();
        let by_program = programs_json(&self.programs);
        self.totals
            .write_json_with(&mut json, Some(("by_program", &by_program)))
            .expect("writing to a String cannot fail");
        json
    }

    /// Writes [`to_json`](Self::to_json) to `out` through a temporary file
    /// in the same directory and `rename`, so a reader never sees half a
    /// report. `out` must be a new path or a regular file (see
    /// [`check_stats_path`]).
    pub fn write_to(&self, out: &Path) -> Result<()> {
        check_stats_path(out)?;
        let name = out.file_name().with_context(|| format!("{}: not a file name", out.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = out.with_file_name(tmp_name);
        std::fs::write(&tmp, self.to_json()).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, out).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::anyhow!("cannot write {}: {e}", out.display())
        })
    }
}

/// A stats report may replace only a regular file: never a device, a FIFO,
/// a directory or a symbolic link (a report path of `/dev/null` must not
/// destroy `/dev/null`), and its directory must exist.
pub fn check_stats_path(out: &Path) -> Result<()> {
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.file_type().is_file() => {
            if m.permissions().readonly() {
                bail!("{}: the stats file is read-only; remove it or name another", out.display());
            }
            Ok(())
        }
        Ok(m) => {
            let what = if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            bail!("{}: {what}; the stats report replaces only a regular file — name a new path", out.display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                bail!("{}: directory {} does not exist", out.display(), dir.display());
            }
            Ok(())
        }
        Err(e) => bail!("{}: {e}", out.display()),
    }
}
