//! Starting, using and stopping one private containerd.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::cleanup;
use crate::ctr::Ctr;

/// How to start a [`Containerd`].
#[derive(Clone, Debug)]
pub struct Options {
    /// The directory that holds everything (root, state, sockets, runc
    /// root, logs); created if missing, removed by [`Containerd::stop`].
    /// Default: a fresh `/tmp/shunt-containerd-XXXXXX` (short, because
    /// the socket paths inside must fit a `sockaddr_un`).
    pub dir: Option<PathBuf>,
    /// The CPUs containerd, its shims and every container run on, as a
    /// cpuset list (`"1"`, `"0-1"`); default: all. Containers get it
    /// through the namespace's cpuset cgroup (cgroup v1 `cpuset`).
    pub cpus: Option<String>,
    /// How long containerd may take to boot.
    pub start_timeout: Duration,
    /// Runs containerd's CRI plugin (what the kubelet talks to), with its
    /// state under the directory, its streaming server on an ephemeral
    /// loopback port and no CNI configuration (so only pods on the host's
    /// network start); the text is added to the configuration (the CRI's
    /// runtime entries). Default: no CRI.
    pub cri: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { dir: None, cpus: None, start_timeout: Duration::from_secs(30), cri: None }
    }
}

/// One running containerd. Cheap to clone (shared); the daemon stops when
/// [`Containerd::stop`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Containerd {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub ctr: Ctr,
    pub runc_root: PathBuf,
    pub logs: PathBuf,
    child: Mutex<Option<Child>>,
    /// Containers started and not yet removed (ids).
    pub live: Mutex<BTreeSet<String>>,
    /// Every container id ever started here (their shim sockets are swept).
    pub started: Mutex<BTreeSet<String>>,
    pub stopped: AtomicBool,
}

/// The binaries the stock path needs, found on PATH (and in the sbin
/// directories, where Debian puts runc).
pub(crate) struct Binaries {
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    pub runc: PathBuf,
    pub shim: PathBuf,
}

fn find(name: &str) -> Option<PathBuf> {
    which::which(name).ok().or_else(|| {
        ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    })
}

pub(crate) fn binaries() -> Result<Binaries> {
    let mut missing = Vec::new();
    let mut get = |name: &str| {
        find(name).unwrap_or_else(|| {
            missing.push(name.to_string());
            PathBuf::new()
        })
    };
    let b = Binaries { containerd: get("containerd"), ctr: get("ctr"), runc: get("runc"), shim: get("containerd-shim-runc-v2") };
    if !missing.is_empty() {
        bail!(
            "{} not installed: apt-get install containerd runc (scripts/setup.sh does)",
            missing.join(", ") + if missing.len() == 1 { " is" } else { " are" }
        );
    }
    Ok(b)
}

/// The longest socket path a `sockaddr_un` holds, less room for the
/// `.ttrpc` suffix containerd adds.
const MAX_SOCKET_PATH: usize = 100;

impl Containerd {
    /// Starts a private containerd and waits until it serves.
    pub fn start(opts: &Options) -> Result<Containerd> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("containerd with runc needs root (it creates namespaces, mounts and cgroups)");
        }
        let bins = binaries()?;
        cleanup::sweep_stale(Path::new("/tmp"));
        let dir = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
                d.canonicalize()?
            }
            None => tempfile::Builder::new()
                .prefix(cleanup::DIR_PREFIX)
                .tempdir_in("/tmp")
                .context("cannot create a directory under /tmp")?
                .keep(),
        };
        let socket = dir.join("containerd.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!("{}: too long for containerd's socket path (at most {MAX_SOCKET_PATH} bytes); choose a shorter directory", socket.display());
        }
        // One containerd namespace per daemon: runc's cgroups are named
        // /<namespace>/<id>, so daemons running at once never share one.
        let suffix: String = dir
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches(cleanup::DIR_PREFIX).chars().filter(|c| c.is_ascii_alphanumeric()).collect())
            .unwrap_or_default();
        let namespace = format!("shunt-{}-{}", std::process::id(), if suffix.is_empty() { "x".into() } else { suffix });
        cleanup::write_owner(&dir, &namespace)?;

        let inner = Arc::new(Inner {
            ctr: Ctr { bin: bins.ctr.clone(), socket: socket.clone(), namespace: namespace.clone() },
            runc_root: dir.join("runc"),
            logs: dir.join("logs"),
            dir: dir.clone(),
            child: Mutex::new(None),
            live: Mutex::new(BTreeSet::new()),
            started: Mutex::new(BTreeSet::new()),
            stopped: AtomicBool::new(false),
        });
        let d = Containerd { inner };
        // From here on, a failure still cleans up (Drop of `d`).
        d.boot(opts, &bins).map_err(|e| {
            let tail = d.log_tail(12);
            if tail.is_empty() { e } else { e.context(format!("containerd's log:\n{tail}")) }
        })?;
        Ok(d)
    }

    fn boot(&self, opts: &Options, bins: &Binaries) -> Result<()> {
        let i = &self.inner;
        for sub in ["root", "state", "runc", "logs", "opt"] {
            std::fs::create_dir_all(i.dir.join(sub))?;
        }
        let config = i.dir.join("config.toml");
        let mut text = config_toml(&i.dir, &i.ctr.socket, opts.cri.is_some());
        if let Some(cri) = &opts.cri {
            for sub in ["cni/bin", "cni/conf"] {
                std::fs::create_dir_all(i.dir.join(sub))?;
            }
            text.push_str(&cri_toml(&i.dir));
            text.push_str(cri);
            text.push('\n');
        }
        std::fs::write(&config, text)?;
        let affinity = match &opts.cpus {
            Some(cpus) => {
                let set = parse_cpu_list(cpus)?;
                cleanup::prepare_cpuset(&i.ctr.namespace, cpus)?;
                Some(set)
            }
            None => None,
        };
        // containerd finds the shim and the shim finds runc on PATH.
        let mut path: Vec<PathBuf> = [&bins.runc, &bins.shim, &bins.containerd]
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        let mut cmd = Command::new(&bins.containerd);
        cmd.arg("--config")
            .arg(&config)
            .env("PATH", std::env::join_paths(path)?)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only async-signal-safe functions (setsid, sched_setaffinity).
        unsafe {
            cmd.pre_exec(move || {
                // Its own session: a terminal's Ctrl-C must not kill the
                // daemon under the shims before our clean-up runs.
                libc::setsid();
                if let Some(set) = &affinity {
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", bins.containerd.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("containerd's stderr is not a pipe"))?;
        *i.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);

        // containerd says when it serves; its log goes to a file.
        let (tx, rx) = mpsc::channel::<bool>();
        let log_path = i.dir.join("containerd.log");
        let mut log = std::fs::File::create(&log_path)?;
        std::thread::Builder::new().name("containerd-log".into()).spawn(move || {
            let mut booted = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if !booted && line.contains("containerd successfully booted") {
                    booted = true;
                    let _ = tx.send(true);
                }
            }
            let _ = tx.send(false); // EOF: containerd exited
        })?;
        match rx.recv_timeout(opts.start_timeout) {
            Ok(true) => {}
            Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => bail!("containerd exited while starting"),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("containerd did not start within {:?}", opts.start_timeout),
        }
        // The boot line comes after the socket is served; check anyway.
        i.ctr.run(["version"]).context("containerd started but does not answer")?;
        Ok(())
    }

    /// The directory that holds this daemon's state.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// containerd's gRPC socket (for `ctr --address`).
    pub fn socket(&self) -> &Path {
        &self.inner.ctr.socket
    }

    /// The containerd namespace every container of this daemon lives in.
    pub fn namespace(&self) -> &str {
        &self.inner.ctr.namespace
    }

    /// containerd's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.inner.child.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|c| c.id())
    }

    /// A `ctr` command bound to this daemon (address and namespace set),
    /// for what this crate does not wrap.
    pub fn ctr_command(&self) -> Command {
        self.inner.ctr.command()
    }

    /// The last `n` lines of containerd's own log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.inner.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Imports an image as `reference` (`name:tag`) from an OCI archive
    /// (a tar of an OCI image layout whose index tags the image `tag`, as
    /// `umoci` and [`crate::build_oci_archive`] write it) or a
    /// `docker save` tarball, or from an OCI image layout directory.
    pub fn import(&self, source: &Path, reference: &str) -> Result<()> {
        let (name, _tag) = split_reference(reference)?;
        let meta = std::fs::metadata(source).with_context(|| format!("cannot read {}", source.display()))?;
        let tarred;
        let archive = if meta.is_dir() {
            if !source.join("index.json").is_file() {
                bail!("{}: not an OCI image layout (no index.json)", source.display());
            }
            tarred = tempfile::Builder::new().prefix("import-").suffix(".tar").tempfile_in(&self.inner.dir)?;
            let mut b = tar::Builder::new(tarred.as_file());
            b.follow_symlinks(false);
            b.append_dir_all(".", source).with_context(|| format!("cannot archive {}", source.display()))?;
            b.finish()?;
            tarred.path().to_path_buf()
        } else {
            source.to_path_buf()
        };
        self.inner.ctr.import(&archive, name).with_context(|| format!("cannot import {}", source.display()))?;
        let have = self.images()?;
        if !have.iter().any(|r| r == reference) {
            bail!(
                "{} holds no image tagged {reference} (imported: {})",
                source.display(),
                if have.is_empty() { "nothing".to_string() } else { have.join(", ") }
            );
        }
        Ok(())
    }

    /// The image references in this daemon.
    pub fn images(&self) -> Result<Vec<String>> {
        Ok(self.inner.ctr.run(["images", "ls", "-q"])?.lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
    }

    /// Removes every container, stops containerd and removes its
    /// directory. Every step runs even when an earlier one fails; the
    /// errors are reported together. Later calls do nothing.
    pub fn stop(&self) -> Result<()> {
        self.inner.stop()
    }
}

impl Inner {
    fn stop(&self) -> Result<()> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut errors = Vec::new();
        let ids: Vec<String> = self.live.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        for id in ids {
            if let Err(e) = crate::container::remove_by_id(self, &id) {
                errors.push(format!("{e:#}"));
            }
        }
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if let Err(e) = cleanup::terminate(&mut child, Duration::from_secs(10)) {
                errors.push(format!("stopping containerd: {e:#}"));
            }
        }
        let started: Vec<String> = self.started.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        errors.extend(cleanup::sweep(&self.dir, &self.ctr.socket, &self.ctr.namespace, &started));
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("cleaning up containerd in {}: {}", self.dir.display(), errors.join("; "))
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop what is left, best effort.
        if let Err(e) = self.stop() {
            eprintln!("shunt-containerd: {e:#}");
        }
    }
}

/// `name:tag` → (name, tag); the tag is required (ctr tags imports with it).
fn split_reference(reference: &str) -> Result<(&str, &str)> {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) if i > 0 && slash + i + 1 < reference.len() => Ok((&reference[..slash + i], &reference[slash + i + 1..])),
        _ => bail!("image reference {reference:?}: expected NAME:TAG"),
    }
}

/// A cpuset list (`1`, `0-1,3`) as a cpu_set_t.
fn parse_cpu_list(list: &str) -> Result<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let bad = || anyhow!("cpus {list:?}: expected a CPU list such as 1 or 0-1,3");
    for part in list.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().map_err(|_| bad())?, b.trim().parse::<usize>().map_err(|_| bad())?),
            None => {
                let a = part.trim().parse::<usize>().map_err(|_| bad())?;
                (a, a)
            }
        };
        if a > b || b >= libc::CPU_SETSIZE as usize {
            return Err(bad());
        }
        for cpu in a..=b {
            // SAFETY: cpu < CPU_SETSIZE (checked above), inside `set`.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
    }
    Ok(set)
}

/// containerd's configuration: everything under `dir`, no CRI (so no CNI),
/// no metrics or debug listeners.
fn config_toml(dir: &Path, socket: &Path, cri: bool) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    format!(
        r#"# Written by shunt-containerd: a private daemon, nothing shared with the host's.
version = 2
root = {root}
state = {state}
disabled_plugins = [{cri}"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}
"#,
        root = q(&dir.join("root")),
        state = q(&dir.join("state")),
        sock = q(socket),
        ttrpc = q(&socket.with_extension("sock.ttrpc")),
        opt = q(&dir.join("opt")),
        cri = if cri { "" } else { "\"io.containerd.grpc.v1.cri\", " },
    )
}

/// The CRI plugin's own settings: private CNI directories (left empty),
/// the streaming server on an ephemeral loopback port, a sandbox image
/// the caller imports (`shunt.test/pause:latest`: nothing is pulled), and
/// the default runtime `runc` with its root in the directory.
fn cri_toml(dir: &Path) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    format!(
        r#"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "shunt.test/pause:latest"
  # Never below containerd's own OOM score (lowering it needs
  # CAP_SYS_RESOURCE, which a test's session may lack).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {bin}
    conf_dir = {conf}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    Root = {runc}
"#,
        bin = q(&dir.join("cni/bin")),
        conf = q(&dir.join("cni/conf")),
        runc = q(&dir.join("runc")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(split_reference("shunt.local/aes-go:1").unwrap(), ("shunt.local/aes-go", "1"));
        assert_eq!(split_reference("localhost:5000/x:latest").unwrap(), ("localhost:5000/x", "latest"));
        assert!(split_reference("localhost:5000/x").is_err());
        assert!(split_reference("x:").is_err());
    }

    #[test]
    fn cpu_lists_parse() {
        let s = parse_cpu_list("0-1,3").unwrap();
        // SAFETY: CPU numbers below CPU_SETSIZE, read from a valid set.
        let has = |c| unsafe { libc::CPU_ISSET(c, &s) };
        assert!(has(0) && has(1) && !has(2) && has(3));
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}
