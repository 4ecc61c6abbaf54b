//! Density in `shunt bench platform`: N idle replicas of the Go AES
//! function on one daemon, N rising in steps (the daemon scales the
//! function up), measured at each N from `/proc`:
//!
//! - **memory per instance**: the PSS (`smaps_rollup`) of each replica's
//!   processes (the instance's pid from the daemon's `started instance`
//!   log line, and its descendants), averaged over the replicas; and
//!   separately the instance's helper process, the parent it alone has:
//!   for containers their runc shim (one per container, as containerd runs
//!   them), for shunt instances the supervisor process the daemon forks for
//!   each (it waits on the instance and sums its stats);
//! - **the manager's memory**: the daemon's own processes (its process
//!   tree without the instances; for the stock path that includes the
//!   daemon's private containerd);
//! - **idle CPU**: user + system time of all those processes (instances,
//!   shims, manager) over the idle window, as a percentage of one core;
//! - **latency of one instance while the others idle**: sequential
//!   invocations through the gateway after the window, each answer checked.
//!
//! Bounded, so that neither side can drive the machine into the ground
//! (the stock side's hundreds of container starts once took it to load
//! 170): "up to 1,000, or until memory says stop", with these rules, each
//! of which ends the curve where it holds, recorded in the result
//! (`stopped`, `stop_detail`, and the last point's N):
//!
//! - **memory** (`"memory"`): a step is not started when the memory it
//!   would take (per instance from the previous step, with 20% margin)
//!   would leave less than [`RESERVE_KIB`] available on the machine; it is
//!   lowered to the largest N that fits, the last point;
//! - **tasks** (`"pids"`): likewise for the tasks (processes and threads)
//!   it would take against [`RESERVE_TASKS`] under the machine's
//!   `kernel.pid_max`, `kernel.threads-max` and the `pids.max` of the
//!   benchmark's and the daemon's cgroups;
//! - **start rate** (`"start rate"`): a step scales up in batches of
//!   [`BATCH`] instances (the daemon never has more than that starting);
//!   when a batch starts fewer than `--density-min-rate` instances per
//!   second ([`MIN_START_RATE`] by default), the machine no longer keeps
//!   up and the step ends there;
//! - **time** (`"time"`): the configuration's budget (`--density-seconds`),
//!   checked before each batch;
//! - **scale-up timeout**: a batch not running within [`BATCH_LIMIT`].
//!
//! A step cut by a rule is measured at the replicas running (the function
//! is scaled to them first, so nothing is left starting). The function is
//! scaled down in batches too before it is removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::client::Conn;
use super::daemon::Daemon;
use super::stats::percentile;

/// The most replicas asked for (the daemon's own cap).
pub const MAX: usize = shunt_manager::instances::plan::MAX_REPLICAS as usize;

/// Memory left for everything else on the machine (KiB): 6 GiB.
pub const RESERVE_KIB: u64 = 6 << 20;

/// Instances asked for at once: a step scales up in batches of this many,
/// so that the daemon never starts more at a time (the stock side's
/// `ctr run` processes would otherwise pile up by the hundred).
pub const BATCH: usize = 25;

/// The longest a batch may take to start.
pub const BATCH_LIMIT: Duration = Duration::from_secs(120);

/// The default start-rate floor (`--density-min-rate`), instances per
/// second over one batch: below it the machine no longer keeps up, and the
/// curve ends where it is.
pub const MIN_START_RATE: f64 = 1.0;

/// Tasks (pids) left for everything else on the machine.
pub const RESERVE_TASKS: u64 = 4096;

/// The machine's limits on tasks: the least headroom of `kernel.pid_max`,
/// `kernel.threads-max` (both against the tasks alive now, from
/// `/proc/loadavg`) and the `pids.max` of every cgroup from `pids`'s own
/// (v2) up to the root, for each of `pids`.
pub fn task_headroom(pids: &[i32]) -> u64 {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<u64>().ok());
    let alive = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().nth(3).and_then(|f| f.split('/').nth(1)).and_then(|n| n.parse::<u64>().ok()))
        .unwrap_or(0);
    let mut room = u64::MAX;
    for limit in [read("/proc/sys/kernel/pid_max"), read("/proc/sys/kernel/threads-max")].into_iter().flatten() {
        room = room.min(limit.saturating_sub(alive));
    }
    for pid in pids {
        let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { continue };
        let Some(path) = cg.lines().find_map(|l| l.strip_prefix("0::")) else { continue };
        let mut dir = std::path::PathBuf::from(format!("/sys/fs/cgroup{}", path.trim_end_matches('/')));
        loop {
            if let (Some(max), Some(cur)) = (read(&format!("{}/pids.max", dir.display())), read(&format!("{}/pids.current", dir.display()))) {
                room = room.min(max.saturating_sub(cur));
            }
            if !dir.pop() || dir.as_os_str() == "/sys/fs" {
                break;
            }
        }
    }
    room
}

/// Tasks (threads) of `pids`.
fn threads(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|t| t.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(17).and_then(|n| n.parse::<u64>().ok())))
        .sum()
}

/// The replica counts of the curve.
pub fn counts(quick: bool) -> Vec<usize> {
    if quick {
        vec![1, 2]
    } else {
        vec![1, 10, 100, 1000]
    }
}

/// One process: parent, CPU ticks (user + system).
struct Proc {
    ppid: i32,
    ticks: u64,
}

fn procs() -> HashMap<i32, Proc> {
    let mut m = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return m };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Some(p) = stat(pid) {
            m.insert(pid, p);
        }
    }
    m
}

fn stat(pid: i32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm)": state ppid pgrp session tty tpgid flags minflt
    // cminflt majflt cmajflt utime stime …
    Some(Proc { ppid: f.get(1)?.parse().ok()?, ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()? })
}

/// `pid` and its descendants.
fn tree(all: &HashMap<i32, Proc>, pid: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (p, info) in all {
        children.entry(info.ppid).or_default().push(*p);
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if all.contains_key(&p) {
            out.push(p);
            todo.extend(children.get(&p).into_iter().flatten());
        }
    }
    out
}

/// PSS of a process in KiB (0 once it is gone).
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Pss:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())))
        .unwrap_or(0)
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("MemAvailable:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())))
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The processes of a daemon at one moment: each replica's, the shims', the manager's.
struct Groups {
    instances: Vec<Vec<i32>>,
    shims: Vec<i32>,
    manager: Vec<i32>,
}

/// The pids of the function's running instances, from the daemon's logs.
fn instance_pids(d: &Daemon, function: &str, all: &HashMap<i32, Proc>) -> Result<Vec<i32>> {
    let (_, logs) = d.api("GET", &format!("/system/logs?name={function}&follow=false"), "")?;
    let mut pids: Vec<i32> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .filter(|t| t.starts_with("shunt: started instance "))
        .filter_map(|t| t.split("(pid ").nth(1).and_then(|r| r.split(',').next()).and_then(|p| p.trim().parse().ok()))
        .filter(|p| all.contains_key(p))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn groups(d: &Daemon, function: &str) -> Result<Groups> {
    let all = procs();
    let mut taken = HashSet::new();
    let mut instances = Vec::new();
    let mut shims = Vec::new();
    for pid in instance_pids(d, function, &all)? {
        let t = tree(&all, pid);
        taken.extend(t.iter().copied());
        instances.push(t);
        // The instance's own helper: a parent that has no other child
        // (containerd's runc shim; the supervisor process the daemon forks
        // for each shunt instance), never the daemon's main process.
        if let Some(parent) = all.get(&pid).map(|p| p.ppid) {
            let only_child = all.values().filter(|p| p.ppid == parent).count() == 1;
            if only_child && parent != d.pid() && parent > 1 && !shims.contains(&parent) {
                shims.push(parent);
                taken.insert(parent);
            }
        }
    }
    let manager = tree(&all, d.pid()).into_iter().filter(|p| !taken.contains(p)).collect();
    Ok(Groups { instances, shims, manager })
}

fn ticks(pids: &[i32]) -> HashMap<i32, u64> {
    pids.iter().filter_map(|p| stat(*p).map(|s| (*p, s.ticks))).collect()
}

/// One point of the curve.
#[derive(Clone)]
pub struct Point {
    pub requested: usize,
    pub running: usize,
    pub scale_seconds: f64,
    pub pss_per_instance_kib: f64,
    pub shim_pss_per_instance_kib: f64,
    pub manager_pss_kib: f64,
    pub idle_cpu_pct_of_core: f64,
    pub idle_seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub answered: usize,
    pub correct: usize,
    /// Tasks (threads) per instance, its shim/supervisor included.
    pub tasks_per_instance: f64,
    /// Tasks the machine's limits left when the step was measured.
    pub task_headroom: u64,
}

impl Point {
    pub fn json(&self) -> Value {
        let n = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        json!({
            "replicas_requested": self.requested, "replicas_running": self.running, "scale_up_seconds": n(self.scale_seconds),
            "pss_per_instance_kib": n(self.pss_per_instance_kib), "helper_pss_per_instance_kib": n(self.shim_pss_per_instance_kib),
            "manager_pss_kib": n(self.manager_pss_kib), "idle_cpu_pct_of_one_core": n(self.idle_cpu_pct_of_core),
            "idle_seconds": self.idle_seconds, "latency_p50_us": n(self.p50_us), "latency_p99_us": n(self.p99_us),
            "answered": self.answered, "correct": self.correct,
            "tasks_per_instance": n(self.tasks_per_instance), "task_headroom": self.task_headroom,
        })
    }
}

/// The stop rules' settings that a run chooses.
pub struct Rules {
    /// The configuration's time budget, checked before each batch.
    pub budget: Duration,
    /// The start-rate floor, instances/s over one batch ([`MIN_START_RATE`] by default).
    pub min_rate: f64,
}

/// One configuration's curve, and where and why it stopped.
#[derive(Clone)]
pub struct Curve {
    pub points: Vec<Point>,
    /// Why the curve ended: `"done"`, `"memory"`, `"pids"`, `"start
    /// rate"`, `"time"`, `"scale-up timeout"` (the module's stop rules); `"measuring"` in a results file written while
    /// the curve was still being measured.
    pub stopped: &'static str,
    /// The stop rule's numbers, in words (empty for `"done"`).
    pub detail: String,
}

impl Curve {
    /// The points so far of a curve still being measured.
    pub fn measuring(points: &[Point]) -> Curve {
        Curve { points: points.to_vec(), stopped: "measuring", detail: String::new() }
    }

    pub fn json(&self) -> Value {
        json!({
            "stopped": self.stopped, "stop_detail": self.detail,
            "max_replicas_running": self.points.iter().map(|p| p.running).max(),
            "points": self.points.iter().map(Point::json).collect::<Vec<_>>(),
        })
    }
}

/// The density curve of one daemon: the function `function` (image
/// `image`, deployed with `extra`) scaled through `counts`; `on_point`
/// gets the points so far after each one. Returns the curve and where
/// and why it stopped (the module's rules).
#[allow(clippy::too_many_arguments)]
pub fn curve(
    d: &Daemon,
    function: &str,
    image: &str,
    extra: &str,
    counts: &[usize],
    idle: Duration,
    rules: &Rules,
    bodies: &[Vec<u8>],
    answer: &dyn Fn(&[u8]) -> String,
    on_point: &mut dyn FnMut(&[Point]) -> Result<()>,
) -> Result<Curve> {
    let started = Instant::now();
    let (budget, min_rate) = (rules.budget, rules.min_rate);
    let path = format!("/function/{function}");
    d.deploy(function, image, extra)?;
    d.wait_for(function, Duration::from_secs(120), "ready", |a| a.is_some_and(|n| n >= 1))?;
    let mut points: Vec<Point> = Vec::new();
    let mut stopped = "done";
    let mut detail = String::new();
    let mut current = 1usize;
    for &n in counts {
        if started.elapsed() >= budget {
            stopped = "time";
            detail = format!("the configuration's budget of {} s was spent before the step to {n}", budget.as_secs());
            break;
        }
        let mut n = n;
        if let Some(last) = points.last() {
            // The largest N the memory and the task limits leave room for.
            let per = (last.pss_per_instance_kib + last.shim_pss_per_instance_kib) * 1.2;
            let mem_room = mem_available_kib().saturating_sub(RESERVE_KIB) as f64;
            let by_mem = if per > 0.0 { current + (mem_room / per) as usize } else { usize::MAX };
            let tasks = last.tasks_per_instance.max(1.0) * 1.2;
            let task_room = task_headroom(&[std::process::id() as i32, d.pid()]).saturating_sub(RESERVE_TASKS) as f64;
            let by_tasks = current + (task_room / tasks) as usize;
            let fit = by_mem.min(by_tasks);
            if fit < n {
                let why = if by_mem <= by_tasks { "memory" } else { "pids" };
                let text = if why == "memory" {
                    format!("less than {} GiB available", RESERVE_KIB >> 20)
                } else {
                    format!("fewer than {RESERVE_TASKS} tasks under pid_max/threads-max/pids.max, at {:.1} tasks per instance", last.tasks_per_instance)
                };
                stopped = why;
                detail = format!("{n} would leave {text}");
                if fit <= current {
                    eprintln!("shunt bench platform: density on {}: not scaling to {n} (it would leave {text})", d.name);
                    break;
                }
                eprintln!("shunt bench platform: density on {}: {n} would leave {text}; {fit} instead, the last step", d.name);
                n = fit;
            }
        }
        eprintln!("shunt bench platform: density on {}: {n} idle replicas", d.name);
        // Up in batches, each bounded; the step ends at N, or where a stop
        // rule holds (the point is then measured at what runs).
        let t0 = Instant::now();
        let mut cut = false;
        while current < n {
            if started.elapsed() >= budget {
                stopped = "time";
                detail = format!("the configuration's budget of {} s was spent at {current} of {n} replicas", budget.as_secs());
                cut = true;
                break;
            }
            let next = (current + BATCH).min(n);
            let b0 = Instant::now();
            d.scale(function, next as u64)?;
            let reached = d.wait_for(function, BATCH_LIMIT, "scaled up", |a| a.is_some_and(|k| k as usize >= next));
            let took = b0.elapsed().as_secs_f64();
            if let Err(e) = reached {
                stopped = "scale-up timeout";
                detail = format!("{e:#}");
                cut = true;
                break;
            }
            let batch = next - current;
            let rate = batch as f64 / took;
            current = next;
            if rate < min_rate && current < n {
                stopped = "start rate";
                detail = format!(
                    "{rate:.2} instances/s over the last batch ({batch} in {took:.1} s), under the floor of {min_rate}/s, at {current} of {n} replicas"
                );
                cut = true;
                break;
            }
        }
        let scale_seconds = t0.elapsed().as_secs_f64();
        if cut {
            // Nothing left starting: the function is scaled to what runs.
            let running = d.available(function)?.unwrap_or(0) as usize;
            eprintln!("shunt bench platform: density on {}: stopped at {running} replicas ({stopped}: {detail})", d.name);
            d.scale(function, running as u64)?;
            current = running;
        }
        let headroom = task_headroom(&[std::process::id() as i32, d.pid()]);
        // The idle window: every process of the daemon, counted from its start to its end.
        let g = groups(d, function)?;
        let everyone: Vec<i32> = g.instances.iter().flatten().chain(&g.shims).chain(&g.manager).copied().collect();
        let before = ticks(&everyone);
        let w0 = Instant::now();
        std::thread::sleep(idle);
        let after = ticks(&everyone);
        let window = w0.elapsed().as_secs_f64();
        let used: u64 = after.iter().filter_map(|(p, t)| before.get(p).map(|b| t.saturating_sub(*b))).sum();
        let per_instance: Vec<u64> = g.instances.iter().map(|t| t.iter().map(|p| pss_kib(*p)).sum()).collect();
        let running = per_instance.len();
        let mean = |v: &[u64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<u64>() as f64 / v.len() as f64 };
        let shims: Vec<u64> = g.shims.iter().map(|p| pss_kib(*p)).collect();
        let manager: u64 = g.manager.iter().map(|p| pss_kib(*p)).sum();
        let instance_tasks = threads(&g.instances.iter().flatten().chain(&g.shims).copied().collect::<Vec<_>>());
        // One instance's latency while the others idle.
        let mut c = Conn::connect("127.0.0.1", d.port)?;
        let mut lat = Vec::new();
        let (mut answered, mut correct) = (0, 0);
        for b in bodies {
            let t = Instant::now();
            let (status, resp) = c.post(&path, b).with_context(|| format!("{}: POST {path}", d.name))?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            answered += 1;
            if status == 200 && resp == answer(b).as_bytes() {
                correct += 1;
            }
        }
        lat.sort_by(f64::total_cmp);
        points.push(Point {
            requested: n,
            running,
            scale_seconds,
            pss_per_instance_kib: mean(&per_instance),
            shim_pss_per_instance_kib: if shims.is_empty() { 0.0 } else { mean(&shims) },
            manager_pss_kib: manager as f64,
            idle_cpu_pct_of_core: used as f64 / clock_ticks() / window * 100.0,
            idle_seconds: window,
            p50_us: percentile(&lat, 50.0),
            p99_us: percentile(&lat, 99.0),
            answered,
            correct,
            tasks_per_instance: if running == 0 { f64::NAN } else { instance_tasks as f64 / running as f64 },
            task_headroom: headroom,
        });
        on_point(&points)?;
        if correct != answered {
            bail!("{}: with {running} replicas of {function}, {} of {answered} answers were not the reference", d.name, answered - correct);
        }
        if stopped != "done" {
            break;
        }
    }
    // Down in batches too (each container's stop is a few `ctr` runs):
    // the next batch goes once this one's instances have exited.
    let mut left = current;
    while left > BATCH {
        left -= BATCH;
        d.scale(function, left as u64)?;
        let deadline = Instant::now() + BATCH_LIMIT;
        while instance_pids(d, function, &procs())?.len() > left && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    d.remove(function)?;
    d.wait_for(function, Duration::from_secs(60 + BATCH as u64), "removed", |a| a.is_none())?;
    if points.is_empty() {
        return Err(anyhow!("{}: no density point measured (budget {}s)", d.name, budget.as_secs()));
    }
    Ok(Curve { points, stopped, detail })
}

/// The curve's series for the plot: measure → config → (N, value).
pub fn series<'a, 'b>(by: impl Iterator<Item = (&'a str, &'b [Point])>) -> BTreeMap<String, BTreeMap<&'a str, Vec<(f64, f64)>>> {
    let mut m: BTreeMap<String, BTreeMap<&str, Vec<(f64, f64)>>> = BTreeMap::new();
    for (c, pts) in by {
        for p in pts {
            let x = p.running as f64;
            let per = (p.pss_per_instance_kib + p.shim_pss_per_instance_kib) / 1024.0;
            m.entry("PSS per instance (MiB, incl. its shim/supervisor)".into()).or_default().entry(c).or_default().push((x, per));
            m.entry("idle CPU, all processes (% of one core)".into()).or_default().entry(c).or_default().push((x, p.idle_cpu_pct_of_core));
            m.entry("one instance's p50 latency (us)".into()).or_default().entry(c).or_default().push((x, p.p50_us));
        }
    }
    m
}
