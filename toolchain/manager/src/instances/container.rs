//! The stock path's backend (`shunt daemon --native --containerd`): every
//! instance a container of a private containerd with runc
//! (`shunt-containerd`), as faasd runs functions — the baseline of `shunt
//! bench platform`.
//!
//! Each container gets containerd's defaults and its default seccomp
//! profile, and a network namespace of its own that holds only `lo`
//! (faasd gives each container a CNI bridge address; no bridge is made
//! here, ever): the function listens on its ports inside it, and the
//! gateway reaches it through a dialer that connects from inside that
//! namespace. An image is imported into containerd from the daemon's image
//! store on its first launch (once per manifest digest), as faasd pulls
//! once.
//!
//! Departures, for the benchmark's sake: the container's output goes to a
//! file (its path is logged), not to the function's log stream; secrets
//! and bind mounts are not given to containers (a deployment that has
//! secrets is refused); no syscall counts (no runtime).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use shunt_containerd::{Container, Containerd, Network, RunSpec};

use super::backend::{Backend, Calls, Endpoint, Event, Exit, Instance, LaunchSpec, Sink, Stream};

pub struct Containers {
    containerd: Containerd,
    /// The daemon's image store (an OCI image layout).
    store: PathBuf,
    /// Manifest digests imported into containerd.
    imported: Mutex<HashSet<String>>,
}

impl Containers {
    /// Starts a private containerd for the daemon's containers; `store` is
    /// the image store the deployments' images are imported from.
    pub fn start(store: PathBuf) -> Result<Containers> {
        let containerd = Containerd::start(&shunt_containerd::Options::default())?;
        Ok(Containers { containerd, store, imported: Mutex::new(HashSet::new()) })
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// containerd's name for the image of `spec`: one per manifest, so that
    /// an image the store re-tags is imported again.
    fn image_ref(spec: &LaunchSpec) -> String {
        let hex = spec.digest.strip_prefix("sha256:").unwrap_or(&spec.digest);
        format!("shunt.local/image:{}", &hex[..hex.len().min(32)])
    }
}

struct ContainerInstance {
    /// Shared with the dialer, which connects inside its network namespace.
    container: Arc<Mutex<Option<Container>>>,
    pid: i32,
    port: u16,
}

/// Kills and deletes the container, once (later calls find it gone).
fn remove(container: &Mutex<Option<Container>>) {
    let taken = container.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(c) = taken {
        if let Err(e) = c.remove() {
            eprintln!("shunt daemon: {e:#}");
        }
    }
}

/// Waits up to `limit` for `pidfd` to turn readable (its process exited).
fn wait_exit(pidfd: i32, limit: Option<Duration>) -> bool {
    let mut p = libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 };
    let ms = limit.map(|d| d.as_millis().min(i32::MAX as u128) as i32).unwrap_or(-1);
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return n == 1;
        }
    }
}

fn pidfd_open(pid: i32) -> Option<i32> {
    // SAFETY: pidfd_open takes a pid and flags; returns an fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    (fd >= 0).then_some(fd)
}

impl Instance for ContainerInstance {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn endpoint(&self) -> Endpoint {
        let (container, port) = (self.container.clone(), self.port);
        Endpoint::Dial(Arc::new(move || match container.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(c) => c.connect(port),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the container was removed")),
        }))
    }

    fn terminate(&self, grace: Duration) {
        // ctr takes a while: off the caller's (async) thread.
        let (container, pid) = (self.container.clone(), self.pid);
        let _ = std::thread::Builder::new().name(format!("stop-{pid}")).spawn(move || {
            let signalled = container.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|c| c.kill(libc::SIGTERM));
            if let (Some(Ok(())), Some(fd)) = (signalled, pidfd_open(pid)) {
                wait_exit(fd, Some(grace));
                // SAFETY: closing the pidfd we opened.
                unsafe { libc::close(fd) };
            }
            remove(&container);
        });
    }

    fn kill(&self) {
        let container = self.container.clone();
        let _ = std::thread::Builder::new().name(format!("kill-{}", self.pid)).spawn(move || remove(&container));
    }

    fn calls(&self) -> Option<Calls> {
        None
    }
}

impl Backend for Containers {
    fn kind(&self) -> &'static str {
        "containerd"
    }

    fn launch(&self, spec: LaunchSpec, sink: Sink) -> Result<Arc<dyn Instance>> {
        if !spec.binds.is_empty() {
            bail!("{}: containers get no secrets or bind mounts from this daemon (the benchmark's stock path)", spec.function);
        }
        if spec.root.is_none() {
            bail!("{}: image {} runs on the host's root (a `shunt faas build` image); a container needs an ordinary image", spec.function, spec.image);
        }
        let image = Self::image_ref(&spec);
        {
            let mut imported = self.imported.lock().unwrap_or_else(|p| p.into_inner());
            if !imported.contains(&spec.digest) {
                self.containerd.import_from_layout(&self.store, &spec.digest, &image)?;
                imported.insert(spec.digest.clone());
            }
        }
        let id = spec.id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
        let mut run = RunSpec::new(&id, &image, Network::Loopback);
        run.args = std::iter::once(spec.program.clone().into_os_string())
            .chain(spec.args.iter().cloned())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for (k, v) in &spec.env {
            run = run.env(&k.to_string_lossy(), &v.to_string_lossy());
        }
        run.memory_limit = spec.memory_limit;
        run.read_only = spec.read_only_root;
        let container = self.containerd.run(&run)?;
        let (pid, log) = (container.pid() as i32, container.log_path().to_path_buf());
        let line = format!("shunt: container {id} (pid {pid}), its output in {}", log.display());
        sink(Event::Output { stream: Stream::Stderr, time: SystemTime::now(), line: line.into_bytes() });
        let inst = Arc::new(ContainerInstance { container: Arc::new(Mutex::new(Some(container))), pid, port: spec.port });
        let Some(pidfd) = pidfd_open(pid) else {
            remove(&inst.container);
            bail!("{}: container {id} ended at once (its output: {})", spec.function, log.display());
        };
        let watched = inst.clone();
        std::thread::Builder::new().name(format!("wait-{id}")).spawn(move || {
            wait_exit(pidfd, None);
            // SAFETY: closing the pidfd this thread owns.
            unsafe { libc::close(pidfd) };
            remove(&watched.container);
            sink(Event::Exited(Exit { code: None, signal: None, reason: "the container ended".into(), calls: None }));
        })?;
        Ok(inst)
    }
}
