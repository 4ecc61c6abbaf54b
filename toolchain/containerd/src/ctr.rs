//! Running the `ctr` client against one private containerd.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long one `ctr` call may take. containerd can stall under load (seen
/// at ~1,000 containers on a 2-vCPU VM: its event forwarding times out and
/// `ctr run` never returns), and a benchmark must not hang with it.
pub(crate) const CTR_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `c` to completion with its output captured, killing it after `limit`.
fn output_within(c: &mut Command, limit: Duration) -> Result<std::process::Output> {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().context("cannot start ctr")?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    // A watchdog thread: kills ctr if it has not finished within the limit.
    let guard = std::thread::spawn(move || {
        if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: signalling the child we started; it is not reaped
            // before wait_with_output returns, so the pid is still ours.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return true;
        }
        false
    });
    let out = child.wait_with_output();
    let _ = tx.send(());
    let timed_out = guard.join().unwrap_or(false);
    if timed_out {
        bail!("no answer within {limit:?} (containerd stalled; see its log)");
    }
    Ok(out?)
}

/// `ctr` bound to one daemon's socket and namespace.
#[derive(Clone, Debug)]
pub(crate) struct Ctr {
    pub bin: PathBuf,
    pub socket: PathBuf,
    pub namespace: String,
}

impl Ctr {
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--address").arg(&self.socket).arg("--namespace").arg(&self.namespace);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `ctr ARGS…`; returns its stdout. A failure's error carries
    /// the command and ctr's own message (its last non-empty stderr line).
    pub fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut c = self.command();
        c.args(&args);
        let shown = args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let out = output_within(&mut c, CTR_TIMEOUT).with_context(|| format!("ctr {shown}"))?;
        if !out.status.success() {
            bail!("ctr {shown}: {}", last_line(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ctr images import` of an archive on disk.
    pub fn import(&self, archive: &Path, base_name: &str) -> Result<()> {
        let mut args: Vec<std::ffi::OsString> = vec!["images".into(), "import".into(), "--base-name".into(), base_name.into()];
        args.push(archive.into());
        self.run(args).map(|_| ())
    }
}

/// ctr's message: the last non-empty line of its stderr, without the
/// logrus prefix when there is one (`ctr: msg` or `time=… level=… msg="…"`).
pub(crate) fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no message)").trim();
    if let Some(i) = line.find("msg=\"") {
        let rest = &line[i + 5..];
        return rest.rsplit_once('"').map(|(m, _)| m).unwrap_or(rest).replace("\\\"", "\"");
    }
    line.strip_prefix("ctr: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::last_line;

    #[test]
    fn ctr_messages_lose_their_prefixes() {
        assert_eq!(last_line(b"ctr: image \"x\": not found\n"), "image \"x\": not found");
        assert_eq!(
            last_line(b"time=\"2026\" level=fatal msg=\"failed to \\\"x\\\" thing\" extra=1\n\n"),
            "failed to \"x\" thing"
        );
        assert_eq!(last_line(b""), "(no message)");
    }
}
