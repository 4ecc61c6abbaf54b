//! `shunt faas`: OpenFaaS stacks built and run with shunt, without Docker.
//!
//! `shunt faas build -f stack.yml` shrink-wraps every function the way
//! `faas-cli build --shrinkwrap` does — with the real faas-cli when it is on
//! PATH, else with the same layout done here (faas-cli is not installable on
//! machines whose Go proxy refuses OpenFaaS modules) — then builds each
//! context with the recipe of its template's `shunt:` section into a bundle:
//!
//! ```text
//! build/<fn>/                        the shrink-wrapped context (faas-cli layout)
//! build/.shunt/<fn>/{shunt,native}/  a copy of it, built (the binary inside)
//! build/.shunt/bundles.json          the manifest `shunt faas up` reads
//! ```
//!
//! `shunt faas up -f stack.yml` starts every function of the stack on its own
//! port, each an instance of one supervisor (`shunt-supervisor`: on the
//! runtime, or natively with `--native`), each with its own TMPDIR (the
//! front's lock file is per function, as in a container), waits for
//! `/_/health`, prints where each listens, and on Ctrl-C or SIGTERM stops
//! them with SIGTERM so that each front drains its requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use shunt_runtime::policy::errno_name;
use shunt_supervisor::{Event, EventKind, EventSender, Exit, Instance, LaunchSpec, Runtime, ShuntOptions, Stdio, Supervisor};

#[derive(Subcommand)]
pub enum FaasCommand {
    /// Shrink-wrap and build every function of a stack.
    Build(BuildArgs),
    /// Start every function of a stack (built by `shunt faas build`).
    Up(UpArgs),
}

#[derive(Args)]
pub struct StackArgs {
    /// The stack file [default: stack.yaml, else stack.yml, as faas-cli].
    #[arg(short = 'f', long = "yaml", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only this function (repeatable).
    #[arg(long, value_name = "NAME")]
    pub filter: Vec<String>,
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Also build each function natively (the benchmark's baseline).
    #[arg(long)]
    pub native: bool,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Run the natively built functions, without shunt.
    #[arg(long)]
    pub native: bool,
    /// Port of the first function; the others follow.
    #[arg(long, default_value_t = 8080)]
    pub base_port: u16,
    /// Write each function's stats report here when it stops.
    #[arg(long, value_name = "DIR")]
    pub stats_dir: Option<PathBuf>,
}

pub fn run(cmd: FaasCommand) -> Result<ExitCode> {
    match cmd {
        FaasCommand::Build(a) => build(&a).map(|_| ExitCode::SUCCESS),
        FaasCommand::Up(a) => up(&a),
    }
}

// ------------------------------------------------------------------ model

/// The parts of an OpenFaaS stack file shunt uses (unknown keys ignored).
#[derive(Deserialize)]
pub struct Stack {
    #[serde(default)]
    pub functions: BTreeMap<String, Function>,
}

#[derive(Deserialize, Clone)]
pub struct Function {
    pub lang: Option<String>,
    pub handler: Option<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    pub build_options: Vec<String>,
}

/// `template/<lang>/template.yml`.
#[derive(Deserialize)]
pub struct Template {
    #[allow(dead_code)]
    pub language: Option<String>,
    #[serde(default)]
    pub build_options: Vec<BuildOption>,
    pub handler_folder: Option<String>,
    /// shunt's build recipe (faas-cli ignores this key).
    pub shunt: Option<Recipe>,
}

#[derive(Deserialize)]
pub struct BuildOption {
    pub name: String,
    #[serde(default)]
    pub packages: Vec<String>,
}

#[derive(Deserialize, Clone)]
pub struct Recipe {
    pub build: Vec<String>,
    pub native_build: Vec<String>,
    pub binary: String,
}

/// One built function, as `shunt faas up` needs it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Bundle {
    pub name: String,
    pub lang: String,
    /// "shunt" or "native".
    pub variant: String,
    pub dir: PathBuf,
    pub binary: PathBuf,
    pub environment: BTreeMap<String, String>,
}

/// A stack file and the directory its paths are relative to.
pub struct Loaded {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub stack: Stack,
}

pub fn load_stack(file: Option<&Path>) -> Result<Loaded> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => ["stack.yaml", "stack.yml"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow!("no stack.yaml or stack.yml here; name one with -f"))?,
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let stack: Stack = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow!("{}: not a valid stack file: {}", path.display(), one_line(&e.to_string())))?;
    if stack.functions.is_empty() {
        bail!("{}: no functions", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok(Loaded { path, dir, stack })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn selected<'a>(l: &'a Loaded, filter: &[String]) -> Result<Vec<(&'a String, &'a Function)>> {
    for f in filter {
        if !l.stack.functions.contains_key(f) {
            bail!("{}: no function named {f:?}", l.path.display());
        }
    }
    Ok(l.stack.functions.iter().filter(|(n, _)| filter.is_empty() || filter.contains(n)).collect())
}

/// A function's template, checked to be a shunt template.
fn template_of(l: &Loaded, name: &str, f: &Function) -> Result<(String, PathBuf, Template)> {
    let stack = l.path.display();
    let lang = f.lang.clone().ok_or_else(|| anyhow!("{stack}: function {name}: no `lang`"))?;
    let dir = l.dir.join("template").join(&lang);
    let file = dir.join("template.yml");
    if !file.is_file() {
        bail!(
            "{stack}: function {name}: lang `{lang}` has no template ({} is missing); \
             copy the shunt templates next to the stack (`cp -r faasd-templates/template .`) or pull them",
            file.display()
        );
    }
    let text = std::fs::read_to_string(&file)?;
    let t: Template = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow!("{}: not a valid template.yml: {}", file.display(), one_line(&e.to_string())))?;
    if t.shunt.is_none() {
        bail!("{stack}: function {name}: template `{lang}` is not a shunt template ({} has no `shunt:` section)", file.display());
    }
    Ok((lang, dir, t))
}

// ---------------------------------------------------------- shrink-wrap

pub fn copy_tree(from: &Path, to: &Path, skip_top: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        let name = e.file_name();
        if skip_top.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let ty = e.file_type()?;
        if ty.is_dir() {
            copy_tree(&src, &dst, &[])?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&src)?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(target, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    Ok(())
}

/// `build/<fn>/` as `faas-cli build --shrinkwrap` makes it: the template,
/// then the handler over its handler folder (top-level `build` and
/// `template` entries of the handler skipped).
/// The function's handler directory, checked.
fn handler_dir(l: &Loaded, name: &str, f: &Function) -> Result<PathBuf> {
    let stack = l.path.display();
    let handler = f.handler.as_deref().ok_or_else(|| anyhow!("{stack}: function {name}: no `handler`"))?;
    let hdir = if l.dir == Path::new(".") { PathBuf::from(handler) } else { l.dir.join(handler) };
    if !hdir.is_dir() {
        bail!("{stack}: function {name}: handler `{handler}` is not a directory ({})", hdir.display());
    }
    Ok(hdir)
}

fn shrinkwrap(l: &Loaded, name: &str, f: &Function, tdir: &Path, t: &Template) -> Result<PathBuf> {
    let hdir = handler_dir(l, name, f)?;
    let out = l.dir.join("build").join(name);
    if which::which("faas-cli").is_ok() {
        let mut cmd = Command::new("faas-cli");
        cmd.current_dir(&l.dir)
            .args(["build", "--shrinkwrap", "-f"])
            .arg(l.path.file_name().unwrap_or_default())
            .args(["--filter", name]);
        run_step(&mut cmd, &format!("faas-cli build --shrinkwrap ({name})"))?;
        return Ok(out);
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    copy_tree(tdir, &out, &[])?;
    let folder = t.handler_folder.as_deref().unwrap_or("function");
    copy_tree(&hdir, &out.join(folder), &["build", "template"])?;
    Ok(out)
}

pub fn run_step(cmd: &mut Command, what: &str) -> Result<()> {
    let o = cmd.output().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let out = String::from_utf8_lossy(&o.stdout);
        let tail: Vec<&str> = err.lines().chain(out.lines()).filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(12)..].join("\n  ");
        bail!("{what} failed ({}):\n  {tail}", o.status);
    }
    Ok(())
}

/// Debian packages of the function's build options that are not installed.
fn missing_packages(name: &str, f: &Function, lang: &str, t: &Template) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for opt in &f.build_options {
        let o = t.build_options.iter().find(|o| &o.name == opt).ok_or_else(|| {
            anyhow!("function {name}: build option `{opt}` is not offered by template `{lang}` (see its template.yml)")
        })?;
        for p in &o.packages {
            let ok = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false);
            if !ok {
                missing.push(p.clone());
            }
        }
    }
    Ok(missing)
}

/// Builds one variant of a shrink-wrapped context into its bundle dir.
pub fn build_variant(name: &str, lang: &str, ctx: &Path, recipe: &Recipe, native: bool, f: &Function) -> Result<Bundle> {
    let variant = if native { "native" } else { "shunt" };
    let root = ctx.parent().unwrap_or(Path::new(".")).join(".shunt").join(name);
    let dir = root.join(variant);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    copy_tree(ctx, &dir, &[])?;
    // Absolute: `shunt faas up` runs each bundle from its own directory.
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let argv = if native { &recipe.native_build } else { &recipe.build };
    let (prog, args) = argv.split_first().ok_or_else(|| anyhow!("template `{lang}`: empty build recipe"))?;
    let exe = std::env::current_exe()?;
    let exe_dir = exe.parent().unwrap_or(Path::new("/"));
    let path = std::env::join_paths(
        std::iter::once(exe_dir.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let prog = if prog == "shunt" { exe.clone() } else { PathBuf::from(prog) };
    let mut cmd = Command::new(&prog);
    cmd.current_dir(&dir)
        .args(args)
        .env("SHUNT", &exe)
        .env("PATH", path)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local");
    run_step(&mut cmd, &format!("building {name} ({lang}, {variant})"))?;
    let binary = dir.join(&recipe.binary);
    if !binary.is_file() {
        bail!("building {name}: the recipe did not produce {}", binary.display());
    }
    let environment = f.environment.iter().map(|(k, v)| (k.clone(), yaml_to_env(v))).collect();
    Ok(Bundle { name: name.into(), lang: lang.into(), variant: variant.into(), dir, binary, environment })
}

fn yaml_to_env(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

fn manifest_path(l: &Loaded) -> PathBuf {
    l.dir.join("build").join(".shunt").join("bundles.json")
}

/// `shunt faas build`: returns the bundles made.
pub fn build(a: &BuildArgs) -> Result<Vec<Bundle>> {
    let l = load_stack(a.stack.file.as_deref())?;
    let fns = selected(&l, &a.stack.filter)?;
    // Check everything before building anything.
    let mut plan = Vec::new();
    for (name, f) in &fns {
        let (lang, tdir, t) = template_of(&l, name, f)?;
        handler_dir(&l, name, f)?;
        let missing = missing_packages(name, f, &lang, &t)?;
        if !missing.is_empty() {
            bail!(
                "function {name}: build options need Debian packages that are not installed: {} (apt-get install {})",
                missing.join(", "),
                missing.join(" ")
            );
        }
        plan.push((*name, *f, lang, tdir, t));
    }
    let mut bundles = Vec::new();
    for (name, f, lang, tdir, t) in plan {
        eprintln!("shunt faas: {name}: shrink-wrapping ({lang})");
        let ctx = shrinkwrap(&l, name, f, &tdir, &t)?;
        let recipe = t.shunt.clone().expect("checked in template_of");
        eprintln!("shunt faas: {name}: building with shunt");
        bundles.push(build_variant(name, &lang, &ctx, &recipe, false, f)?);
        if a.native {
            eprintln!("shunt faas: {name}: building natively");
            bundles.push(build_variant(name, &lang, &ctx, &recipe, true, f)?);
        }
    }
    let manifest = manifest_path(&l);
    let mut all: Vec<Bundle> = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    all.retain(|b| !bundles.iter().any(|n| n.name == b.name && n.variant == b.variant));
    all.extend(bundles.iter().cloned());
    all.sort_by(|x, y| (&x.name, &x.variant).cmp(&(&y.name, &y.variant)));
    std::fs::create_dir_all(manifest.parent().unwrap())?;
    std::fs::write(&manifest, serde_json::to_string_pretty(&all)? + "\n")?;
    for b in &bundles {
        println!("{:<20} {:<14} {:<7} {}", b.name, b.lang, b.variant, b.binary.display());
    }
    Ok(bundles)
}

// ------------------------------------------------------------------- up

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
    let tmp = b.dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let _ = std::fs::remove_file(tmp.join(".lock"));
    let runtime = if b.variant == "native" {
        Runtime::Native
    } else {
        Runtime::Shunt(ShuntOptions { stats_file: stats.clone(), ..Default::default() })
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

fn up(a: &UpArgs) -> Result<ExitCode> {
    let l = load_stack(a.stack.file.as_deref())?;
    let fns = selected(&l, &a.stack.filter)?;
    let manifest = manifest_path(&l);
    let all: Vec<Bundle> = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| anyhow!("{}: no built functions; run `shunt faas build -f {}` first", manifest.display(), l.path.display()))?;
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
    println!("shunt faas: {} function(s) up; Ctrl-C stops them", running.len());
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

/// Reads a template directory's template.yml (for tools that build a
/// function outside a stack, like the benchmarks).
pub fn read_template(dir: &Path) -> Result<Template> {
    let file = dir.join("template.yml");
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("{}: {}", file.display(), one_line(&e.to_string())))
}

/// Shrink-wraps `handler` with the template in `tdir` into `out` (the
/// faas-cli layout, without faas-cli).
pub fn shrinkwrap_dirs(tdir: &Path, t: &Template, handler: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    copy_tree(tdir, out, &[])?;
    copy_tree(handler, &out.join(t.handler_folder.as_deref().unwrap_or("function")), &["build", "template"])
}

/// A function with no stack settings (for the benchmarks).
pub fn bare_function(lang: &str) -> Function {
    Function { lang: Some(lang.into()), handler: None, environment: BTreeMap::new(), build_options: Vec::new() }
}
