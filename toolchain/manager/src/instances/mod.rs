//! Instances: one controller task per function owns its replicas.
//!
//! The controller is the only writer of a function's replica set. It takes
//! [`Command`]s (scale, wake from zero, update, remove, and the events of its
//! instances) from one channel, one at a time, and after each brings the
//! running instances to what is wanted: it starts missing replicas, stops
//! extra ones (drain, then SIGTERM, then SIGKILL after the function's
//! `write_timeout`), restarts crashed ones with exponential backoff, and
//! replaces old-generation replicas once the new generation is ready
//! (rolling update). Nothing here waits on a process: exits arrive as
//! events from the backend, readiness from a probe task, timers as
//! commands.
//!
//! Scale state: `desired` starts from the stored replicas; scale from zero,
//! the idler and the autoscaler change it in memory only (soft state, as
//! the invocation path must not write to disk); `/system/scale-function`
//! and deploys change it and are stored by the API before it answers.

pub mod backend;
pub mod container;
pub mod health;
pub mod plan;
pub mod sandbox;
pub mod supervised;



use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use self::backend::{Bind, Calls, Endpoint, Event, Exit, Instance, LaunchSpec};
use self::plan::{Plan, SECRETS_MOUNT};
use crate::names::Key;
use crate::shared::Shared;
use crate::table::{Function, Replica, DRAINING, GONE, READY};

pub enum Command {
    /// Replicas wanted (already stored when it comes from the API).
    Scale(u64),
    /// A request found no ready replica.
    Wake,
    /// A new deployment of the same function.
    Update(Arc<Plan>),
    /// The function was removed: stop everything, then end.
    Remove,
    /// The daemon is stopping: stop everything, then answer.
    Shutdown(oneshot::Sender<()>),
    Exited { instance: String, exit: Exit },
    /// `parts`: where the start went ([`crate::metrics::START_PARTS`]).
    Ready { instance: String, after: Duration, parts: Vec<(&'static str, Duration)> },
    NotReady { instance: String, reason: String },
    RestartDue { slot: u64 },
    /// The backend's launch finished (on a blocking thread).
    Launched { slot: u64, prepared: Prepared, result: Result<Arc<dyn Instance>, String>, timing: LaunchTiming },
    Tick,
}

/// When a launch ran on its blocking thread.
pub struct LaunchTiming {
    /// From the controller's launch to the thread's start.
    queued: Duration,
    /// The thread's start (the instance's start, as
    /// `shunt_instance_start_seconds` counts it).
    started: Instant,
    /// When the backend's launch returned.
    returned: Instant,
}

/// A start made ready by the controller, launched on a blocking thread.
pub struct Prepared {
    instance: String,
    spec: LaunchSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    /// Crashed; waiting out its backoff before the next start.
    Backoff,
    Stopping,
}

struct Run {
    instance: String,
    handle: Arc<dyn Instance>,
    replica: Arc<Replica>,
    port: u16,
    scratch: PathBuf,
    started: Instant,
}

struct Slot {
    id: u64,
    generation: u64,
    phase: Phase,
    /// Failures in a row (for the backoff); reset once a run stays up.
    failures: u32,
    run: Option<Run>,
    /// The instance being launched, until `Launched` comes back.
    launching: Option<String>,
}

/// Keeps a run's replica marked gone when the run is dropped, so that a
/// probe still looking at it stops.
impl Drop for Run {
    fn drop(&mut self) {
        self.replica.set_state(GONE);
    }
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run that stayed up this long resets its slot's failure count.
const STABLE: Duration = Duration::from_secs(10);

fn backoff(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO; // the first crash restarts at once
    }
    BACKOFF_FIRST.saturating_mul(1 << (failures - 2).min(16)).min(BACKOFF_MAX)
}

pub struct Controller {
    shared: Arc<Shared>,
    f: Arc<Function>,
    plan: Arc<Plan>,
    rx: mpsc::UnboundedReceiver<Command>,
    tx: mpsc::UnboundedSender<Command>,
    slots: Vec<Slot>,
    next_slot: u64,
    ending: Option<Ending>,
    /// When a wake-up from zero began (for the cold-start metric).
    waking_since: Option<Instant>,
    /// Requests per second over the last ten ticks (autoscaler).
    window: std::collections::VecDeque<u64>,
    last_invocations: u64,
    above_for: u32,
    scaled_up: bool,
}

enum Ending {
    Removed,
    Shutdown(Vec<oneshot::Sender<()>>),
}

/// Starts the controller of a function; it starts the replicas at once.
pub fn spawn(shared: Arc<Shared>, f: Arc<Function>, plan: Arc<Plan>, rx: mpsc::UnboundedReceiver<Command>) {
    let tx = f.control.clone();
    let c = Controller {
        shared,
        f,
        plan,
        rx,
        tx,
        slots: Vec::new(),
        next_slot: 1,
        ending: None,
        waking_since: None,
        window: std::collections::VecDeque::new(),
        last_invocations: 0,
        above_for: 0,
        scaled_up: false,
    };
    tokio::spawn(c.run());
}

impl Controller {
    async fn run(mut self) {
        self.reconcile();
        let ticker = self.plan.scale.autoscale || self.plan.scale.zero_after.is_some();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let cmd = tokio::select! {
                c = self.rx.recv() => match c { Some(c) => c, None => break },
                _ = tick.tick(), if ticker => Command::Tick,
            };
            self.handle(cmd);
            self.reconcile();
            if self.ending.is_some() && self.slots.is_empty() {
                break;
            }
        }
        if let Some(Ending::Shutdown(waiters)) = self.ending.take() {
            for w in waiters {
                let _ = w.send(());
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            // The API has set `desired` already.
            Command::Scale(_) => self.scaled_up = false,
            Command::Wake => {
                if self.ending.is_none() && self.f.desired() == 0 {
                    self.f.set_desired(self.plan.scale.min.max(1));
                    self.waking_since = Some(Instant::now());
                }
            }
            Command::Update(plan) => {
                if self.ending.is_none() {
                    *self.f.timeout.write().unwrap_or_else(|p| p.into_inner()) = plan.timeout;
                    self.plan = plan;
                }
            }
            Command::Remove => self.ending = Some(Ending::Removed),
            Command::Shutdown(done) => match &mut self.ending {
                Some(Ending::Shutdown(w)) => w.push(done),
                _ => self.ending = Some(Ending::Shutdown(vec![done])),
            },
            Command::Exited { instance, exit } => self.on_exit(&instance, exit),
            Command::Ready { instance, after, parts } => self.on_ready(&instance, after, &parts),
            Command::NotReady { instance, reason } => {
                if let Some(s) = self.slot_of(&instance) {
                    if s.phase == Phase::Starting {
                        if let Some(run) = &s.run {
                            // It will exit, and be restarted as a crash.
                            run.handle.kill();
                        }
                    }
                }
                self.log_manager_line(&instance, &format!("instance {instance} {reason}; killing it"));
                self.f.update_status(|s| s.last_error = Some(reason));
            }
            Command::RestartDue { slot } => {
                let wanted = self.ending.is_none();
                if let Some(i) = self.slots.iter().position(|s| s.id == slot && s.phase == Phase::Backoff) {
                    if wanted && self.slots[i].generation == self.plan.generation {
                        self.launch(i);
                    } else {
                        self.slots.remove(i);
                    }
                }
            }
            Command::Launched { slot, prepared, result, timing } => self.on_launched(slot, prepared, result, timing),
            Command::Tick => self.tick(),
        }
    }

    fn slot_of(&mut self, instance: &str) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.run.as_ref().is_some_and(|r| r.instance == instance))
    }

    /// Brings the slots to what is wanted.
    fn reconcile(&mut self) {
        let gen = self.plan.generation;
        let want = if self.ending.is_some() { 0 } else { self.f.desired() } as usize;
        let current: Vec<usize> =
            (0..self.slots.len()).filter(|&i| self.slots[i].generation == gen && self.slots[i].phase != Phase::Stopping).collect();
        if current.len() < want {
            for _ in current.len()..want {
                let id = self.next_slot;
                self.next_slot += 1;
                self.slots.push(Slot { id, generation: gen, phase: Phase::Starting, failures: 0, run: None, launching: None });
                let i = self.slots.len() - 1;
                self.launch(i);
            }
        } else if current.len() > want {
            // Stop the least useful first: waiting to restart, starting,
            // then ready ones with the fewest requests in flight.
            let mut order = current.clone();
            order.sort_by_key(|&i| {
                let s = &self.slots[i];
                let rank = match s.phase {
                    Phase::Backoff => 0,
                    Phase::Starting => 1,
                    _ => 2,
                };
                (rank, s.run.as_ref().map(|r| r.replica.outstanding()).unwrap_or(0))
            });
            let ids: Vec<u64> = order[..current.len() - want].iter().map(|&i| self.slots[i].id).collect();
            for id in ids {
                self.stop_slot(id);
            }
        }
        // Old generations go once the new one has all its replicas ready
        // (or nothing is wanted).
        let ready_new = self.slots.iter().filter(|s| s.generation == gen && s.phase == Phase::Ready).count();
        if ready_new >= want {
            let old: Vec<u64> =
                self.slots.iter().filter(|s| s.generation != gen && s.phase != Phase::Stopping).map(|s| s.id).collect();
            for id in old {
                self.stop_slot(id);
            }
        }
        self.publish();
    }

    /// Publishes the ready set, the status and the gauges.
    fn publish(&mut self) {
        let ready: Vec<Arc<Replica>> = self
            .slots
            .iter()
            .filter(|s| s.phase == Phase::Ready)
            .filter_map(|s| s.run.as_ref().map(|r| r.replica.clone()))
            .collect();
        let n = ready.len();
        self.f.publish(ready);
        // A function whose every replica is waiting out a crash answers at
        // once (503) instead of holding requests.
        let live = self.slots.iter().filter(|s| s.phase != Phase::Stopping).count();
        let failing = live > 0 && n == 0 && self.slots.iter().filter(|s| s.phase != Phase::Stopping).all(|s| s.phase == Phase::Backoff);
        self.f.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
        let m = &self.shared.metrics;
        if self.ending.is_none() && !self.f.is_removed() {
            m.service_count.with_label_values(&[&self.f.dotted]).set(self.f.desired() as i64);
            m.available.with_label_values(&[&self.f.dotted]).set(n as i64);
        }
    }

    /// Starts the slot's instance: the quick parts here, the backend's
    /// launch on a blocking thread; [`Command::Launched`] comes back.
    fn launch(&mut self, i: usize) {
        let plan = self.plan.clone();
        let slot_id = self.slots[i].id;
        self.slots[i].generation = plan.generation;
        self.slots[i].phase = Phase::Starting;
        let prepared = match self.prepare(&plan) {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("cannot start an instance: {e:#}");
                self.log_manager_line("", &reason);
                self.f.update_status(|s| s.last_error = Some(reason));
                self.fail(i);
                return;
            }
        };
        self.slots[i].launching = Some(prepared.instance.clone());
        let sink = self.sink(&prepared.instance);
        let backend = self.shared.backend.clone();
        let tx = self.tx.clone();
        let asked = Instant::now();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = backend.launch(prepared.spec.clone(), sink).map_err(|e| format!("{e:#}"));
            let timing = LaunchTiming { queued: started - asked, started, returned: Instant::now() };
            let _ = tx.send(Command::Launched { slot: slot_id, prepared, result, timing });
        });
    }

    fn on_launched(&mut self, slot_id: u64, prepared: Prepared, result: Result<Arc<dyn Instance>, String>, timing: LaunchTiming) {
        let Prepared { instance, spec } = prepared;
        let started = timing.started;
        let i = self.slots.iter().position(|s| s.id == slot_id && s.launching.as_deref() == Some(instance.as_str()));
        let handle = match result {
            Ok(h) => h,
            Err(e) => {
                self.shared.ports.give_back(spec.port);
                let _ = std::fs::remove_dir_all(&spec.scratch);
                let reason = format!("cannot start an instance: {e}");
                self.log_manager_line("", &reason);
                self.f.update_status(|s| s.last_error = Some(reason));
                if let Some(i) = i {
                    self.slots[i].launching = None;
                    if self.slots[i].phase == Phase::Stopping {
                        self.slots.remove(i);
                    } else {
                        self.fail(i);
                    }
                }
                return;
            }
        };
        let authority = match handle.endpoint() {
            Endpoint::Tcp(addr) => addr.to_string(),
            Endpoint::Dial(d) => {
                let name = format!("{instance}.shunt.internal:80");
                self.shared.dialers.write().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), d);
                name
            }
        };
        let authority = match authority.parse::<http::uri::Authority>() {
            Ok(a) => a,
            Err(e) => {
                handle.kill();
                self.log_manager_line(&instance, &format!("instance {instance}: unusable endpoint {authority}: {e}"));
                return;
            }
        };
        let replica = Arc::new(Replica::new(instance.clone(), authority));
        self.log_manager_line(
            &instance,
            &format!("started instance {instance} (pid {}, port {}, {})", handle.pid(), spec.port, self.shared.backend.kind()),
        );
        self.f.live.lock().unwrap_or_else(|p| p.into_inner()).insert(instance.clone(), handle.clone());
        let run = Run { instance: instance.clone(), handle, replica: replica.clone(), port: spec.port, scratch: spec.scratch.clone(), started };
        let i = match i {
            Some(i) => i,
            None => {
                // Its slot went away while it started: keep it as a
                // stopping slot of its own until it has exited.
                let id = self.next_slot;
                self.next_slot += 1;
                self.slots.push(Slot { id, generation: 0, phase: Phase::Starting, failures: 0, run: None, launching: None });
                self.slots.len() - 1
            }
        };
        let stop = self.slots[i].phase == Phase::Stopping || self.slots[i].generation == 0;
        self.slots[i].launching = None;
        self.slots[i].run = Some(run);
        if stop {
            let id = self.slots[i].id;
            self.slots[i].phase = Phase::Starting;
            self.stop_slot(id);
            return;
        }
        let mut parts = vec![("queue", timing.queued)];
        let backend_parts = self.slots[i].run.as_ref().map(|r| r.handle.start_parts()).unwrap_or_default();
        if backend_parts.is_empty() {
            parts.push(("launch", timing.returned - timing.started));
        } else {
            parts.extend(backend_parts);
        }
        parts.push(("handover", timing.returned.elapsed()));
        let tx = self.tx.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let msg = match health::until_ready(&shared.client, &replica, shared.config.ready_timeout).await {
                health::Probe::Ready { listening, answered } => {
                    parts.push(("listen", listening));
                    parts.push(("health", answered - listening));
                    Command::Ready { instance, after: started.elapsed(), parts }
                }
                health::Probe::Gone => return,
                health::Probe::TimedOut(reason) => Command::NotReady { instance, reason },
            };
            let _ = tx.send(msg);
        });
    }

    /// A slot whose run failed: wait out the backoff, then start again.
    fn fail(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.failures += 1;
        slot.phase = Phase::Backoff;
        let delay = backoff(slot.failures);
        let id = slot.id;
        let tx = self.tx.clone();
        if delay.is_zero() {
            let _ = tx.send(Command::RestartDue { slot: id });
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Command::RestartDue { slot: id });
            });
        }
    }

    /// The parts of a start that cannot block: a port, the scratch
    /// directory with the secrets, the environment.
    fn prepare(&self, plan: &Plan) -> anyhow::Result<Prepared> {
        if let Some(e) = &plan.error {
            anyhow::bail!("{e}");
        }
        let shared = &self.shared;
        let instance = format!("{}-{}", plan.key.name, random_hex());
        let scratch = shared.run_dir.join(&instance);
        let tmp = scratch.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let mut binds = Vec::new();
        let secrets_dir = scratch.join("secrets");
        if !plan.secrets.is_empty() {
            if let Err(e) = shared.secrets.materialise(&plan.key.namespace, &plan.secrets, &secrets_dir) {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
            binds.push(Bind { source: secrets_dir.clone(), target: PathBuf::from(SECRETS_MOUNT), read_only: true });
        }
        let port = match shared.ports.take() {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e.into());
            }
        };
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        let has = |k: &str| plan.env.iter().any(|(ek, _)| ek == k);
        if !has("PATH") {
            env.push(("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
        }
        if !has("HOME") {
            env.push(("HOME".into(), if plan.root.is_some() { "/root".into() } else { tmp.clone().into() }));
        }
        for (k, v) in &plan.env {
            if k != "port" {
                env.push((k.into(), v.into()));
            }
        }
        env.push(("port".into(), port.to_string().into()));
        if plan.root.is_none() {
            // On the host root the instance's /tmp is its own directory;
            // inside an image root the sandbox gives it a private /tmp.
            env.push(("TMPDIR".into(), tmp.clone().into()));
        }
        let spec = LaunchSpec {
            id: instance.clone(),
            function: plan.key.to_string(),
            image: plan.image.clone(),
            digest: plan.digest.clone(),
            program: plan.program.clone(),
            argv0: plan.argv0.clone(),
            args: plan.args.clone(),
            env,
            cwd: plan.cwd.clone(),
            root: plan.root.clone(),
            binds,
            read_only_root: plan.read_only_root,
            user: plan.user.clone(),
            memory_limit: plan.memory_limit,
            scratch,
            port,
        };
        Ok(Prepared { instance, spec })
    }

    /// The event sink of one instance: output to the logs at once, the exit
    /// to this controller.
    fn sink(&self, instance: &str) -> backend::Sink {
        let shared = self.shared.clone();
        let key = self.f.key.clone();
        let tx = self.tx.clone();
        let instance = instance.to_string();
        let f = Arc::downgrade(&self.f);
        Arc::new(move |ev: Event| match ev {
            Event::Output { stream, time, line } => {
                if f.upgrade().is_some_and(|f| !f.is_removed()) {
                    shared.logs.append(&key, &instance, stream.as_str(), time, &line)
                }
            }
            Event::Exited(exit) => {
                let _ = tx.send(Command::Exited { instance: instance.clone(), exit });
            }
        })
    }

    fn on_ready(&mut self, instance: &str, after: Duration, parts: &[(&'static str, Duration)]) {
        let dotted = self.f.dotted.clone();
        let Some(slot) = self.slot_of(instance) else { return };
        if slot.phase != Phase::Starting {
            return;
        }
        slot.phase = Phase::Ready;
        if let Some(run) = &slot.run {
            run.replica.set_state(READY);
        }
        let m = &self.shared.metrics;
        m.instance_start_seconds.with_label_values(&[&dotted]).observe(after.as_secs_f64());
        for (part, d) in parts {
            m.instance_start_part_seconds.with_label_values(&[dotted.as_str(), part]).observe(d.as_secs_f64());
        }
        if let Some(since) = self.waking_since.take() {
            m.cold_starts.with_label_values(&[&dotted]).inc();
            m.cold_start_seconds.with_label_values(&[&dotted]).observe(since.elapsed().as_secs_f64());
            self.f.update_status(|s| s.cold_starts += 1);
        }
        let shown: Vec<String> = parts.iter().map(|(p, d)| format!("{p} {:.1}", d.as_secs_f64() * 1e3)).collect();
        self.log_manager_line(instance, &format!("instance {instance} ready after {:.1} ms ({} ms)", after.as_secs_f64() * 1e3, shown.join(", ")));
    }

    fn on_exit(&mut self, instance: &str, exit: Exit) {
        let Some(i) = self.slots.iter().position(|s| s.run.as_ref().is_some_and(|r| r.instance == instance)) else { return };
        let run = self.slots[i].run.take().expect("found by its run");
        run.replica.set_state(GONE);
        self.shared.dialers.write().unwrap_or_else(|p| p.into_inner()).remove(run.replica.authority.as_str());
        self.f.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&run.instance);
        self.shared.ports.give_back(run.port);
        self.retire(&run, exit.calls);
        let scratch = run.scratch.clone();
        let lived = run.started.elapsed();
        drop(run);
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&scratch);
        });
        if self.slots[i].phase == Phase::Stopping {
            self.log_manager_line(instance, &format!("instance {instance} stopped ({})", exit.reason));
            self.slots.remove(i);
            return;
        }
        // A crash (or an exit nobody asked for): count it, restart it.
        let reason = format!("instance {instance} exited: {}", exit.reason);
        self.log_manager_line(instance, &format!("{reason}; restarting it"));
        self.shared.metrics.restarts.with_label_values(&[&self.f.dotted]).inc();
        self.f.update_status(|s| {
            s.restarts += 1;
            s.last_error = Some(reason);
        });
        if lived >= STABLE {
            self.slots[i].failures = 0;
        }
        self.fail(i);
    }

    /// Adds an exited instance's final calls to the function's total.
    fn retire(&self, run: &Run, final_calls: Option<Calls>) {
        let calls = final_calls.or_else(|| run.handle.calls());
        if let Some(c) = calls {
            let mut retired = self.shared.retired_calls.lock().unwrap_or_else(|p| p.into_inner());
            retired.entry(self.f.dotted.clone()).or_default().add(&c);
        }
    }

    /// Drain, SIGTERM, then SIGKILL after the drain time.
    fn stop_slot(&mut self, id: u64) {
        let Some(i) = self.slots.iter().position(|s| s.id == id) else { return };
        let slot = &mut self.slots[i];
        let Some(run) = &slot.run else {
            if slot.launching.is_some() {
                // Stopped once its launch comes back.
                slot.phase = Phase::Stopping;
            } else {
                // Nothing running (waiting out a backoff): just forget it.
                self.slots.remove(i);
            }
            return;
        };
        slot.phase = Phase::Stopping;
        run.replica.set_state(DRAINING);
        let replica = run.replica.clone();
        let handle = run.handle.clone();
        let drain = self.plan.drain;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(drain, replica.idle()).await;
            handle.terminate(drain);
        });
    }

    fn tick(&mut self) {
        if self.ending.is_some() {
            return;
        }
        let rules = self.plan.scale.clone();
        let now = crate::table::now_ms();
        if let Some(after) = rules.zero_after {
            let idle = now.saturating_sub(self.f.last_request_ms.load(std::sync::atomic::Ordering::Relaxed));
            if self.f.desired() > 0 && idle >= after.as_millis() as u64 && self.f.outstanding() == 0 {
                self.log_manager_line("", &format!("idle for {}s: scaling to zero", idle / 1000));
                self.f.set_desired(0);
                return;
            }
        }
        if !rules.autoscale {
            return;
        }
        // OpenFaaS CE's rule: over 10 s, more than `target` requests per
        // second for 5 s running → add `step` replicas (up to max); when the
        // rate falls back under it → back to min.
        let inv = self.f.invocations.load(std::sync::atomic::Ordering::Relaxed);
        self.window.push_back(inv.saturating_sub(self.last_invocations));
        self.last_invocations = inv;
        while self.window.len() > 10 {
            self.window.pop_front();
        }
        // Over the seconds seen so far, up to ten (as Prometheus's rate()
        // over a 10 s range does for a function deployed moments ago).
        let rps = self.window.iter().sum::<u64>() as f64 / self.window.len().max(1) as f64;
        if rps > rules.target_rps {
            self.above_for += 1;
            let desired = self.f.desired();
            if self.above_for >= 5 && desired < rules.max {
                let to = (desired + rules.step).min(rules.max);
                self.f.set_desired(to);
                self.scaled_up = true;
                self.above_for = 0;
                self.log_manager_line("", &format!("{rps:.1} requests/s: scaling up to {to}"));
            }
        } else {
            self.above_for = 0;
            if self.scaled_up {
                self.scaled_up = false;
                self.f.set_desired(rules.min);
                self.log_manager_line("", &format!("{rps:.1} requests/s: scaling back to {}", rules.min));
            }
        }
    }

    /// A line from the manager about this function, in its log (instance
    /// id as given, or the function's name).
    fn log_manager_line(&self, instance: &str, text: &str) {
        if self.f.is_removed() {
            return;
        }
        let who = if instance.is_empty() { "shunt" } else { instance };
        self.shared.logs.append(&self.f.key, who, "manager", std::time::SystemTime::now(), format!("shunt: {text}").as_bytes());
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        b = n.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The key of a function from its controller's view (for callers outside).
pub fn key_of(f: &Function) -> &Key {
    &f.key
}
