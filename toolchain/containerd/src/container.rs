//! Containers: `ctr run -d` with containerd's defaults, and their removal.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};

use crate::daemon::{Containerd, Inner};
use crate::netns;

/// Where a container's network lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace (`ctr run --net-host`): its ports are
    /// the host's, so two containers cannot listen on the same one.
    Host,
    /// A network namespace of its own that holds only `lo` (no CNI, no
    /// bridge, nothing routed): ports never collide with the host's or
    /// another container's; the host reaches them with
    /// [`Container::connect`].
    Loopback,
}

/// What to run. [`RunSpec::new`] gives containerd's defaults plus its
/// default seccomp profile, as a faasd function gets.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The container id (letters, digits and `._-` between them).
    pub id: String,
    /// An image reference imported into this daemon.
    pub image: String,
    pub network: Network,
    /// Variables added to the image's environment.
    pub env: Vec<(String, String)>,
    /// The command; empty: the image's entrypoint and cmd.
    pub args: Vec<String>,
    /// containerd's default seccomp profile (`ctr run --seccomp`).
    pub seccomp: bool,
    /// A memory limit in bytes (the memory cgroup).
    pub memory_limit: Option<u64>,
    /// A read-only root filesystem.
    pub read_only: bool,
    /// The OCI runtime the runc shim runs in runc's place (`ctr run
    /// --runc-binary`: the `io.containerd.runc.v2` shim's `BinaryName`
    /// option), e.g. `shunt-oci`; default: runc.
    pub runtime_binary: Option<PathBuf>,
    /// OCI annotations added to the container's spec (`ctr run --annotation`).
    pub annotations: Vec<(String, String)>,
    /// Directories that get a fresh tmpfs (`ctr run --mount type=tmpfs`),
    /// as a Kubernetes `emptyDir` with `medium: Memory` would.
    pub tmpfs: Vec<String>,
}

impl RunSpec {
    pub fn new(id: &str, image: &str, network: Network) -> RunSpec {
        RunSpec {
            id: id.into(),
            image: image.into(),
            network,
            env: Vec::new(),
            args: Vec::new(),
            seccomp: true,
            memory_limit: None,
            read_only: false,
            runtime_binary: None,
            annotations: Vec::new(),
            tmpfs: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> RunSpec {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// containerd's rule for ids (and a length that keeps paths short).
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.split(['.', '_', '-']).all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !ok {
        bail!("container id {id:?}: use 1-64 letters and digits, with single '.', '_' or '-' between them");
    }
    Ok(())
}

/// A running container. [`Container::remove`] (or `Drop`) kills and
/// deletes it, with its snapshot.
pub struct Container {
    inner: Arc<Inner>,
    id: String,
    pid: u32,
    network: Network,
    /// The container's network namespace, held open (Loopback only).
    netns: Option<OwnedFd>,
    log: PathBuf,
    removed: bool,
}

impl Containerd {
    /// Creates and starts a container (`ctr run -d`); returns once its
    /// first process runs (not once it serves: that is the caller's
    /// health check). Its stdout and stderr go to [`Container::log_path`].
    pub fn run(&self, spec: &RunSpec) -> Result<Container> {
        let i = &self.inner;
        if i.stopped.load(Ordering::SeqCst) {
            bail!("containerd in {} is stopped", i.dir.display());
        }
        check_id(&spec.id)?;
        if i.live.lock().unwrap_or_else(|p| p.into_inner()).contains(&spec.id) {
            bail!("a container {} runs already", spec.id);
        }
        let log = i.logs.join(format!("{}.log", spec.id));
        let pid_file = i.logs.join(format!("{}.pid", spec.id));
        let _ = std::fs::remove_file(&pid_file);
        let mut args: Vec<String> = vec!["run".into(), "--detach".into()];
        args.push("--log-uri".into());
        args.push(format!("file://{}", log.display()));
        args.push("--pid-file".into());
        args.push(pid_file.display().to_string());
        args.extend(run_options(i, spec)?);
        i.started.lock().unwrap_or_else(|p| p.into_inner()).insert(spec.id.clone());
        let ran = i.ctr.run(&args).and_then(|_| {
            let text = std::fs::read_to_string(&pid_file).with_context(|| format!("ctr wrote no pid file {}", pid_file.display()))?;
            let pid: u32 = text.trim().parse().with_context(|| format!("{}: not a pid: {text:?}", pid_file.display()))?;
            let netns = match spec.network {
                Network::Host => None,
                Network::Loopback => Some(netns::open(pid).with_context(|| format!("container {}: its network namespace", spec.id))?),
            };
            Ok((pid, netns))
        });
        let (pid, netns) = match ran {
            Ok(r) => r,
            Err(e) => {
                // A half-made container (created, task not started) goes too.
                let _ = remove_by_id(i, &spec.id);
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                let out = out.trim();
                return Err(if out.is_empty() { e } else { e.context(format!("the container's output:\n{out}")) })
                    .with_context(|| format!("cannot run container {} from {}", spec.id, spec.image));
            }
        };
        i.live.lock().unwrap_or_else(|p| p.into_inner()).insert(spec.id.clone());
        Ok(Container { inner: Arc::clone(i), id: spec.id.clone(), pid, network: spec.network, netns, log, removed: false })
    }
}

/// `ctr run`'s arguments after its mode options: the spec's options, the
/// image, the id and the command.
fn run_options(i: &Inner, spec: &RunSpec) -> Result<Vec<String>> {
    let mut args: Vec<String> = vec!["--runc-root".into(), i.runc_root.display().to_string()];
    if let Some(bin) = &spec.runtime_binary {
        if !bin.is_absolute() {
            bail!("runtime binary {}: give an absolute path (the shim does not search PATH as this process does)", bin.display());
        }
        args.push("--runc-binary".into());
        args.push(bin.display().to_string());
    }
    for (k, v) in &spec.annotations {
        if k.is_empty() || k.contains('=') {
            bail!("annotation name {k:?} is not valid");
        }
        args.push("--annotation".into());
        args.push(format!("{k}={v}"));
    }
    for dir in &spec.tmpfs {
        if !dir.starts_with('/') || dir.contains([',', ':', '=']) {
            bail!("tmpfs mount point {dir:?}: give an absolute path without ',', ':' or '='");
        }
        args.push("--mount".into());
        args.push(format!("type=tmpfs,src=tmpfs,dst={dir},options=nosuid:nodev:mode=1777"));
    }
    if spec.network == Network::Host {
        args.push("--net-host".into());
    }
    if spec.seccomp {
        args.push("--seccomp".into());
    }
    if spec.read_only {
        args.push("--read-only".into());
    }
    if let Some(m) = spec.memory_limit {
        args.push("--memory-limit".into());
        args.push(m.to_string());
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            bail!("environment variable name {k:?} is not valid");
        }
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    args.push(spec.image.clone());
    args.push(spec.id.clone());
    args.extend(spec.args.iter().cloned());
    Ok(args)
}

impl Containerd {
    /// `ctr run --rm` of `spec` in the foreground, not started: the caller
    /// runs it, owns its stdin, stdout and stderr (the container's), and
    /// gets the container's exit status as ctr's (128 + signal for a
    /// killed one). ctr removes the container when it ends; should it not
    /// (ctr killed), [`Containerd::stop`] does.
    pub fn run_command(&self, spec: &RunSpec) -> Result<Command> {
        let i = &self.inner;
        if i.stopped.load(Ordering::SeqCst) {
            bail!("containerd in {} is stopped", i.dir.display());
        }
        check_id(&spec.id)?;
        let mut c = i.ctr.command();
        c.args(["run", "--rm"]).args(run_options(i, spec)?);
        let mut live = i.live.lock().unwrap_or_else(|p| p.into_inner());
        if !live.insert(spec.id.clone()) {
            bail!("a container {} runs already", spec.id);
        }
        i.started.lock().unwrap_or_else(|p| p.into_inner()).insert(spec.id.clone());
        Ok(c)
    }

    /// The state root the shim gives the OCI runtime of this daemon's
    /// containers (`--root`): runc's, and `shunt-oci`'s beside it.
    pub fn runtime_root(&self) -> PathBuf {
        self.inner.runc_root.join(&self.inner.ctr.namespace)
    }
}

/// Kills and deletes a container and its snapshot; a container or task
/// that is already gone is not an error.
pub(crate) fn remove_by_id(i: &Inner, id: &str) -> Result<()> {
    let gone = |e: &anyhow::Error| {
        let m = format!("{e:#}");
        m.contains("not found") || m.contains("no such")
    };
    let mut errors = Vec::new();
    // `--force` kills the task's processes and waits for them.
    if let Err(e) = i.ctr.run(["tasks", "delete", "--force", id]) {
        if !gone(&e) {
            errors.push(format!("{e:#}"));
        }
    }
    if let Err(e) = i.ctr.run(["containers", "delete", id]) {
        if !gone(&e) {
            errors.push(format!("{e:#}"));
        }
    }
    i.live.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    if errors.is_empty() { Ok(()) } else { bail!("removing container {id}: {}", errors.join("; ")) }
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pid (in the host's pid namespace) of the container's first process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn network(&self) -> Network {
        self.network
    }

    /// The file that receives the container's stdout and stderr.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// Every process in the container (its cgroup's members).
    pub fn processes(&self) -> Vec<u32> {
        let ns = &self.inner.ctr.namespace;
        for controller in ["pids", "memory", "freezer", "unified", ""] {
            let f = PathBuf::from("/sys/fs/cgroup").join(controller).join(ns).join(&self.id).join("cgroup.procs");
            if let Ok(text) = std::fs::read_to_string(&f) {
                return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        Vec::new()
    }

    /// Connects to `port` on the container's 127.0.0.1: in its own network
    /// namespace for [`Network::Loopback`], on the host's for [`Network::Host`].
    pub fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        match &self.netns {
            Some(ns) => netns::connect_in(ns, addr),
            None => TcpStream::connect(addr),
        }
    }

    /// The container's own network namespace ([`Network::Loopback`]), for
    /// a program that must run inside it (`setns` in a `pre_exec`).
    pub fn netns(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.netns.as_ref().map(|f| f.as_fd())
    }

    /// Whether the container's first process still runs.
    pub fn is_running(&self) -> bool {
        // SAFETY: signal 0 only checks that the pid exists.
        unsafe { libc::kill(self.pid as i32, 0) == 0 }
    }

    /// Sends `signal` to the container's first process (`ctr tasks kill`).
    pub fn kill(&self, signal: i32) -> Result<()> {
        self.inner.ctr.run(["tasks", "kill", "--signal", &signal.to_string(), &self.id]).map(|_| ())
    }

    /// Kills the container's processes, deletes the task, the container
    /// and its snapshot.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        remove_by_id(&self.inner, &self.id)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.removed && !self.inner.stopped.load(Ordering::SeqCst) {
            if let Err(e) = remove_by_id(&self.inner, &self.id) {
                eprintln!("shunt-containerd: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_id;

    #[test]
    fn ids_follow_containerds_rule() {
        for ok in ["aes-go", "a.b_c-1", "x"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
