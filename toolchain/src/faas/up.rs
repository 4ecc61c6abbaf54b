//! `shunt faas up`: a stack's bundles as instances of one supervisor.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use shunt_policy::errno_name;
use shunt_supervisor::{Event, EventKind, EventSender, Exit, Instance, LaunchSpec, Runtime, ShuntOptions, Spin, Stdio, Supervisor, Transport};

use super::build::manifest_path;
use super::stack::{load_stack, selected, Bundle};
use super::UpArgs;

/// A supervisor for tools that start functions without watching their
/// events (the benchmarks): the functions' output goes to the terminal.
pub struct Host {
    pub sup: Supervisor,
    pub events: EventSender,
    _unread: shunt_supervisor::Events,
}

impl Host {
    pub fn start() -> Result<Host> {
        let sup = Supervisor::start()?;
        let (events, unread) = sup.events();
        Ok(Host { sup, events, _unread: unread })
    }

    /// [`start`] on this host.
    pub fn start_function(&self, b: &Bundle, port: u16, extra_env: &[(&str, String)]) -> Result<Running> {
        start(&self.sup, &self.events, b, port, None, extra_env)
    }

    /// [`start_function`](Host::start_function) of a shunt build with the
    /// given socket transport and spin (the benchmarks' bypass rows), its
    /// stats written to `stats` when it exits.
    pub fn start_function_with(
        &self,
        b: &Bundle,
        port: u16,
        extra_env: &[(&str, String)],
        stats: Option<PathBuf>,
        transport: Transport,
        spin: Spin,
    ) -> Result<Running> {
        start_on(&self.sup, &self.events, b, port, stats, extra_env, Some((transport, spin)))
    }
}

/// A started function.
pub struct Running {
    pub bundle: Bundle,
    pub port: u16,
    pub instance: Instance,
    pub stats: Option<PathBuf>,
}

/// Starts one bundle on `port` as an instance of `sup` (on the runtime, or
/// natively for a native build); its TMPDIR is private (the lock file).
pub fn start(
    sup: &Supervisor,
    events: &EventSender,
    b: &Bundle,
    port: u16,
    stats: Option<PathBuf>,
    extra_env: &[(&str, String)],
) -> Result<Running> {
    start_on(sup, events, b, port, stats, extra_env, None)
}

fn start_on(
    sup: &Supervisor,
    events: &EventSender,
    b: &Bundle,
    port: u16,
    stats: Option<PathBuf>,
    extra_env: &[(&str, String)],
    transport: Option<(Transport, Spin)>,
) -> Result<Running> {
    let tmp = b.dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let _ = std::fs::remove_file(tmp.join(".lock"));
    let runtime = if b.variant == "native" {
        Runtime::Native
    } else {
        let mut o = ShuntOptions { stats_file: stats.clone(), ..Default::default() };
        if let Some((t, s)) = transport {
            (o.transport, o.spin) = (t, s);
        }
        Runtime::Shunt(o)
    };
    let spec = LaunchSpec::new(&b.binary)
        .current_dir(&b.dir)
        .env("TMPDIR", &tmp)
        .envs(&b.environment)
        .env("port", port.to_string())
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::Null)
        .runtime(runtime);
    let instance = sup.spawn(spec, events).with_context(|| format!("cannot start {}", b.name))?;
    Ok(Running { bundle: b.clone(), port, instance, stats })
}

/// Waits until `/_/health` answers 200 (or the function ends, or `limit`).
pub fn wait_healthy(r: &Running, limit: Duration) -> Result<()> {
    let url = format!("http://127.0.0.1:{}/_/health", r.port);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into();
    let start = Instant::now();
    loop {
        if let Some(exit) = r.instance.exit() {
            bail!("{} exited before it was healthy ({})", r.bundle.name, exit.status);
        }
        if let Ok(resp) = agent.get(&url).call() {
            if resp.status() == 200 {
                return Ok(());
            }
        }
        if start.elapsed() > limit {
            bail!("{} did not become healthy within {limit:?} ({url})", r.bundle.name);
        }
        // A readiness probe (as an orchestrator's): the function gives no
        // other sign that it listens.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops one function (see [`stop_all`]).
pub fn stop(r: &Running, limit: Duration) -> Exit {
    stop_all(&[r], limit).remove(0)
}

/// SIGTERM to every function at once (each drains in parallel: a front
/// waits out its healthcheck_interval before it stops accepting), then how
/// each ended, in order; a function still running after `limit` is killed
/// with everything it started.
pub fn stop_all(rs: &[&Running], limit: Duration) -> Vec<Exit> {
    for r in rs {
        r.instance.terminate(limit);
    }
    rs.iter().map(|r| r.instance.wait()).collect()
}

/// Prints what the runtime reports about a function (its policy's denials
/// and kills, runtime errors, warnings), as `shunt run` does for a program.
fn report_event(running: &[Running], ev: &Event) {
    let name = ev
        .instance
        .and_then(|id| running.iter().find(|r| r.instance.id() == id))
        .map_or("?", |r| r.bundle.name.as_str());
    match &ev.kind {
        EventKind::Warning { message } => eprintln!("shunt faas: {name}: warning: {message}"),
        EventKind::Denied { pid, syscall, errno } => {
            eprintln!("shunt faas: {name}: policy denied {syscall} ({}) to pid {pid}", errno_name(*errno))
        }
        EventKind::PolicyKill { pid, syscall } => eprintln!(
            "shunt faas: {name}: policy killed the instance: pid {pid} called {syscall}, which the policy forbids"
        ),
        EventKind::RuntimeError { pid, message } => eprintln!("shunt faas: {name}: runtime error in pid {pid}: {message}"),
        _ => {}
    }
}

pub(crate) fn up(a: &UpArgs) -> Result<ExitCode> {
    let l = load_stack(a.stack.file.as_deref())?;
    let fns = selected(&l, &a.stack.filter)?;
    let manifest = manifest_path(&l);
    let all: Vec<Bundle> = super::build::read_manifest(&manifest)?;
    if all.is_empty() {
        bail!("{}: no built functions; run `shunt faas build -f {}` first", manifest.display(), l.path.display());
    }
    let variant = if a.native { "native" } else { "shunt" };
    let mut bundles = Vec::new();
    for (name, _) in &fns {
        let b = all.iter().find(|b| &b.name == *name && b.variant == variant).ok_or_else(|| {
            anyhow!("function {name}: no {variant} build; run `shunt faas build -f {}{}`", l.path.display(),
                    if a.native { " --native" } else { "" })
        })?;
        bundles.push(b.clone());
    }
    if let Some(d) = &a.stats_dir {
        std::fs::create_dir_all(d)?;
    }
    let sup = Supervisor::start()?;
    let (tx, mut events) = sup.events();
    sup.relay_signals(&[libc::SIGINT, libc::SIGTERM], &tx)?;
    let mut running: Vec<Running> = Vec::new();
    let result = (|| -> Result<()> {
        for (i, b) in bundles.iter().enumerate() {
            let port = b.environment.get("port").and_then(|p| p.parse().ok()).unwrap_or(a.base_port + i as u16);
            let stats = a.stats_dir.as_ref().map(|d| d.join(format!("{}.json", b.name)));
            let r = start(&sup, &tx, b, port, stats, &[])?;
            let healthy = wait_healthy(&r, Duration::from_secs(60));
            running.push(r);
            healthy?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let all: Vec<&Running> = running.iter().collect();
        stop_all(&all, Duration::from_secs(10));
        while let Some(ev) = events.try_recv() {
            report_event(&running, &ev);
        }
        return Err(e);
    }
    for r in &running {
        println!("{:<20} {:<7} http://127.0.0.1:{}/", r.bundle.name, r.bundle.variant, r.port);
    }
    // A shell's background job starts with SIGINT ignored, and the relay
    // leaves it so: say what does stop the stack then.
    let stop_hint = if sigint_ignored() { "SIGTERM stops them (SIGINT is ignored: started in the background)" } else { "Ctrl-C stops them" };
    println!("shunt faas: {} function(s) up; {stop_hint}", running.len());
    // Until Ctrl-C, SIGTERM, or a function ending on its own.
    while let Some(ev) = events.blocking_recv() {
        report_event(&running, &ev);
        match &ev.kind {
            EventKind::Signal { .. } => break,
            EventKind::Exited(exit) => {
                let name = running.iter().find(|r| Some(r.instance.id()) == ev.instance).map_or("?", |r| &r.bundle.name);
                eprintln!("shunt faas: {name} stopped on its own ({}); stopping the others", exit.status);
                break;
            }
            _ => {}
        }
    }
    eprintln!("shunt faas: stopping (SIGTERM: each front drains its requests)");
    let all: Vec<&Running> = running.iter().collect();
    let exits = stop_all(&all, Duration::from_secs(90));
    while let Some(ev) = events.try_recv() {
        report_event(&running, &ev);
    }
    let mut ok = true;
    for (r, exit) in running.iter().zip(exits) {
        ok &= exit.success();
        match (&r.stats, &exit.stats_error) {
            (Some(s), None) => eprintln!("shunt faas: {} exited ({}); stats in {}", r.bundle.name, exit.status, s.display()),
            (Some(_), Some(e)) => {
                ok = false;
                eprintln!("shunt faas: {} exited ({}); no stats: {e}", r.bundle.name, exit.status)
            }
            (None, _) => eprintln!("shunt faas: {} exited ({})", r.bundle.name, exit.status),
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}


/// Whether this process was started with SIGINT ignored (then
/// `Supervisor::relay_signals` does not take it over).
fn sigint_ignored() -> bool {
    // SAFETY: sigaction with a null new action only reads the disposition
    // into a local of libc's layout.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}
