//! The backends the daemon uses: every instance is a `shunt-supervisor`
//! instance — on the shunt runtime (the default) or as a plain process
//! (`--native`) — with its own process group and cgroup, its output lines
//! and exit delivered by the supervisor's one event loop.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use shunt_supervisor as sup;

use super::backend::{Backend, Calls, Endpoint, Event, Exit, Instance, LaunchSpec, Sink, Stream};

pub struct Supervised {
    sup: sup::Supervisor,
    runtime: sup::Runtime,
    kind: &'static str,
    rt: tokio::runtime::Handle,
    /// The daemon's own cache root (`shunt_paths::cache_root`), given to
    /// instances on the runtime whose `HOME` is their scratch directory
    /// (see [`cache_env`]).
    cache: Option<std::path::PathBuf>,
}

/// `SHUNT_CACHE` for an instance on the runtime, on the host's root, whose
/// `HOME` the daemon made (its scratch directory) and whose environment
/// names no cache of its own: the daemon's cache root. The loader keeps
/// the plan of a static program (a Go function) there, made once per build
/// (`shunt_glibc_patch::cached_or_new_plan`); in a fresh `HOME` that cache
/// is empty at every start, and planning a Go program again cost ~400 ms
/// of every cold start. An image's root does not see the host's paths:
/// nothing is given there.
fn cache_env(spec: &LaunchSpec, cache: Option<&std::path::Path>) -> Option<std::ffi::OsString> {
    let cache = cache?;
    if spec.root.is_some() {
        return None;
    }
    let get = |k: &str| spec.env.iter().rev().find(|(ek, _)| ek == k).map(|(_, v)| v);
    if get("SHUNT_CACHE").is_some() || get("XDG_CACHE_HOME").is_some() {
        return None;
    }
    let home = get("HOME")?;
    std::path::Path::new(home).starts_with(&spec.scratch).then(|| cache.as_os_str().to_owned())
}

impl Supervised {
    /// `options` `None`: plain processes; `Some`: on the runtime.
    pub fn new(sup: sup::Supervisor, options: Option<sup::ShuntOptions>, rt: tokio::runtime::Handle) -> Supervised {
        match options {
            None => Supervised { sup, runtime: sup::Runtime::Native, kind: "native", rt, cache: None },
            Some(o) => Supervised { sup, runtime: sup::Runtime::Shunt(o), kind: "shunt", rt, cache: shunt_paths::cache_root() },
        }
    }
}

struct Supervisee {
    inner: sup::Instance,
    port: u16,
    /// The instance's own network namespace (image roots), where its port is.
    netns: Option<Arc<std::os::fd::OwnedFd>>,
}

pub fn calls_of(r: &sup::Report) -> Calls {
    let t = &r.totals;
    Calls {
        redirected: t.redirected,
        emulated: t.emulated,
        passthrough: t.passthrough,
        trapped: t.trapped,
        denied: t.denied,
        ..transport_of(r)
    }
}

/// The transport counters of a report (zero when the transport was off).
pub fn transport_of(r: &sup::Report) -> Calls {
    match &r.transport {
        Some(t) => Calls {
            shm_connections: t.shm_connections,
            kernel_connections: t.kernel_connections,
            shm_bytes: t.shm_bytes,
            ..Default::default()
        },
        None => Calls::default(),
    }
}

impl Instance for Supervisee {
    fn pid(&self) -> i32 {
        self.inner.pid()
    }

    fn endpoint(&self) -> Endpoint {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        match &self.netns {
            None => Endpoint::Tcp(addr),
            Some(ns) => {
                let ns = Arc::clone(ns);
                Endpoint::Dial(Arc::new(move || shunt_containerd::netns::connect_in(&ns, addr)))
            }
        }
    }

    fn terminate(&self, grace: Duration) {
        self.inner.terminate(grace);
    }

    fn kill(&self) {
        self.inner.kill();
    }

    fn calls(&self) -> Option<Calls> {
        self.inner.stats().ok().flatten().map(|r| calls_of(&r))
    }

    fn start_parts(&self) -> Vec<(&'static str, Duration)> {
        self.inner.start_parts().to_vec()
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGSYS => "SIGSYS".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGINT => "SIGINT".into(),
        n => format!("signal {n}"),
    }
}

fn exit_of(e: &sup::Exit) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    let code = e.status.code();
    let signal = e.status.signal();
    let mut reason = match (code, signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by {}", signal_name(s)),
        _ => "ended".into(),
    };
    match &e.killed {
        Some(sup::KillReason::Policy { pid, syscall }) => reason = format!("the policy killed it: pid {pid} called {syscall}"),
        Some(sup::KillReason::GraceExpired) => reason.push_str(" (did not stop after SIGTERM)"),
        Some(sup::KillReason::Requested) | Some(sup::KillReason::Shutdown) | None => {}
    }
    if e.oom_kills > 0 {
        reason.push_str(&format!(" ({} process(es) killed for the memory limit)", e.oom_kills));
    }
    Exit { code, signal, reason, calls: e.stats.as_ref().map(calls_of) }
}

/// The program of an instance in an image root, as an absolute path inside
/// it: a bare name is looked up in the instance's `PATH` there, as a
/// container runtime does.
fn program_in_root(root: &std::path::Path, spec: &LaunchSpec) -> Result<std::path::PathBuf> {
    let p = &spec.program;
    if p.is_absolute() {
        return Ok(p.clone());
    }
    if p.as_os_str().as_encoded_bytes().contains(&b'/') {
        return Ok(spec.cwd.join(p));
    }
    let path = spec.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.to_string_lossy().into_owned()).unwrap_or_default();
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = std::path::Path::new(dir).join(p);
        if sup::in_root(root, &candidate).is_ok_and(|f| f.is_file()) {
            return Ok(candidate);
        }
    }
    anyhow::bail!("{}: not found in the image's PATH ({path})", p.display())
}

impl Backend for Supervised {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn launch(&self, spec: LaunchSpec, sink: Sink) -> Result<Arc<dyn Instance>> {
        let (tx, mut events) = self.sup.events();
        let program = match &spec.root {
            Some(root) => program_in_root(root, &spec)?,
            None => spec.program.clone(),
        };
        let mut ls = sup::LaunchSpec::new(&program)
            .arg0(&spec.argv0)
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .envs(cache_env(&spec, self.cache.as_deref()).map(|c| ("SHUNT_CACHE", c)))
            .stdin(sup::Stdio::Null)
            .stdout(sup::Stdio::Lines)
            .stderr(sup::Stdio::Lines)
            .runtime(self.runtime.clone());
        if let Some(m) = spec.memory_limit {
            ls = ls.memory_limit(m);
        }
        // In an image root the sandbox's hook sets the working directory.
        ls = match &spec.root {
            Some(root) => ls.root(root),
            None => ls.current_dir(&spec.cwd),
        };
        let mut runtime_dirs = Vec::new();
        if matches!(self.runtime, sup::Runtime::Shunt(_)) {
            runtime_dirs.push(self.sup.instance_root().to_path_buf());
            if let Some(dir) = sup::runtime_library()?.parent() {
                runtime_dirs.push(dir.to_path_buf());
            }
        }
        let netns = match &spec.root {
            Some(_) => Some(Arc::new(
                shunt_containerd::netns::new_loopback().context("cannot make the instance's network namespace (needs root)")?,
            )),
            None => None,
        };
        if let Some(ns) = &netns {
            ls = ls.netns(Arc::clone(ns));
        }
        if let (Some(root), Some(user)) = (&spec.root, &spec.user) {
            let ids = super::sandbox::resolve_user(root, user)?;
            ls = ls.owner(ids.uid, ids.gid);
        }
        if let Some(hook) = super::sandbox::hook(&spec, &runtime_dirs)? {
            ls = ls.pre_exec(hook);
        }
        let inner = self.sup.spawn(ls, &tx)?;
        drop(tx);
        self.rt.spawn(async move {
            while let Some(ev) = events.recv().await {
                let at = ev.at;
                let line = |text: String| Event::Output { stream: Stream::Stderr, time: at, line: format!("shunt: {text}").into_bytes() };
                match ev.kind {
                    sup::EventKind::Output { stream, line } => {
                        let stream = match stream {
                            sup::Stream::Stdout => Stream::Stdout,
                            sup::Stream::Stderr => Stream::Stderr,
                        };
                        sink(Event::Output { stream, time: at, line });
                    }
                    sup::EventKind::Denied { pid, syscall, errno } => {
                        sink(line(format!("policy denied {syscall} (errno {errno}) to pid {pid}")))
                    }
                    sup::EventKind::PolicyKill { pid, syscall } => {
                        sink(line(format!("policy kills the instance: pid {pid} called {syscall}")))
                    }
                    sup::EventKind::RuntimeError { pid, message } => sink(line(format!("runtime error in pid {pid}: {message}"))),
                    sup::EventKind::Warning { message } => sink(line(message)),
                    sup::EventKind::Exited(e) => {
                        sink(Event::Exited(exit_of(&e)));
                        return;
                    }
                    _ => {}
                }
            }
        });
        Ok(Arc::new(Supervisee { inner, port: spec.port, netns }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{cache_env, LaunchSpec};

    fn spec(env: &[(&str, &str)], root: Option<&str>) -> LaunchSpec {
        LaunchSpec {
            id: "f-1".into(),
            function: "f.openfaas-fn".into(),
            image: "f:latest".into(),
            digest: "sha256:0".into(),
            program: "/bin/true".into(),
            argv0: "true".into(),
            args: Vec::new(),
            env: env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
            cwd: "/".into(),
            root: root.map(PathBuf::from),
            binds: Vec::new(),
            read_only_root: false,
            user: None,
            memory_limit: None,
            scratch: "/run/shunt/f-1".into(),
            port: 8080,
        }
    }

    #[test]
    fn an_instance_in_its_scratch_home_gets_the_daemons_cache() {
        let cache = Some(Path::new("/root/.cache/shunt"));
        let home = ("HOME", "/run/shunt/f-1/tmp");
        assert_eq!(cache_env(&spec(&[home], None), cache), Some("/root/.cache/shunt".into()));
        // The function's own HOME or cache, an image's root, or no cache: nothing.
        assert_eq!(cache_env(&spec(&[("HOME", "/home/app")], None), cache), None);
        assert_eq!(cache_env(&spec(&[home, ("SHUNT_CACHE", "/c")], None), cache), None);
        assert_eq!(cache_env(&spec(&[home, ("XDG_CACHE_HOME", "/x")], None), cache), None);
        assert_eq!(cache_env(&spec(&[home], Some("/images/r")), cache), None);
        assert_eq!(cache_env(&spec(&[home], None), None), None);
    }
}
