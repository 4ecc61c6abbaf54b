//! Events of instances and the channel that carries them.
//!
//! One channel ([`Supervisor::events`](crate::Supervisor::events)) may carry
//! the events of many instances (each names its instance) and of relayed
//! signals. It is unbounded in count but not in bytes: when the output lines
//! waiting in a channel exceed [`BACKLOG_HIGH`] bytes, the event loop stops
//! reading the pipes of the instances that write to it, so their programs
//! block in `write` as they would on a full pipe, until the consumer has
//! caught up below [`BACKLOG_LOW`]. A slow log writer therefore slows its
//! own functions down; it never makes the supervisor's memory grow.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::report::Report;
use crate::supervisor::Core;

/// Pausing starts above this many bytes of undelivered output lines.
pub const BACKLOG_HIGH: usize = 4 << 20;
/// Reading resumes below this many.
pub const BACKLOG_LOW: usize = 1 << 20;

/// An instance's number, unique within its supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(pub u64);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Something that happened, and when.
#[derive(Debug, Clone)]
pub struct Event {
    /// The instance it concerns; `None` for a relayed signal.
    pub instance: Option<InstanceId>,
    pub at: SystemTime,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// The instance's program is running (its first process has exec'd).
    Started { pid: i32 },
    /// A line the instance wrote to a captured stream, without its `\n`
    /// (a line longer than [`MAX_LINE`](crate::MAX_LINE) bytes comes in
    /// pieces; a last line without `\n` comes when the stream closes).
    Output { stream: Stream, line: Vec<u8> },
    /// The policy refused a call (reported once per system call and process).
    Denied { pid: i32, syscall: String, errno: u16 },
    /// A process made a call its policy kills for: the whole instance is
    /// being killed, and its exit will say so.
    PolicyKill { pid: i32, syscall: String },
    /// The runtime in a process of the instance failed.
    RuntimeError { pid: i32, message: String },
    /// Something the instance runs without, or another notice.
    Warning { message: String },
    /// The instance has ended: every one of its processes is gone. Always
    /// the last event of an instance.
    Exited(Exit),
    /// A signal the supervisor's process received (see
    /// [`Supervisor::relay_signals`](crate::Supervisor::relay_signals)).
    Signal {
        signal: i32,
        /// Sent by a process (`kill`), rather than by the kernel (a
        /// terminal's Ctrl-C reaches the whole foreground group).
        from_process: bool,
    },
}

/// Which captured stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Event {
    pub(crate) fn now(instance: Option<InstanceId>, kind: EventKind) -> Self {
        Event { instance, at: SystemTime::now(), kind }
    }
}

/// Why the supervisor killed an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    /// A process called what its policy kills for.
    Policy { pid: i32, syscall: String },
    /// [`Instance::kill`](crate::Instance::kill) was called.
    Requested,
    /// [`Instance::terminate`](crate::Instance::terminate)'s grace expired.
    GraceExpired,
    /// The supervisor is shutting down.
    Shutdown,
}

/// How an instance ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// The instance's status: its program's, except that an instance its
    /// policy killed ends as by `SIGSYS` (like a seccomp kill), whatever its
    /// first process did meanwhile.
    pub status: ExitStatus,
    /// What the first process itself ended with (`None` if the supervisor
    /// could not learn it: its reaper was killed from outside).
    pub program_status: Option<ExitStatus>,
    /// Set when the supervisor killed the instance.
    pub killed: Option<KillReason>,
    /// Processes still running when the program ended (children it left
    /// behind, orphans), killed with the instance. Their calls are in the
    /// stats.
    pub leftovers: u32,
    /// Processes the kernel's OOM killer ended (memory limit).
    pub oom_kills: u64,
    /// The stats of every process of the instance (shunt runtime only).
    pub stats: Option<Report>,
    /// What went wrong reading the stats or writing the stats file.
    pub stats_error: Option<String>,
}

impl Exit {
    /// Whether the instance ended with status 0 and was not killed.
    pub fn success(&self) -> bool {
        self.killed.is_none() && self.status.success()
    }

    /// The instance's status as a shell reports it: the exit code, or
    /// 128 + the signal.
    pub fn code_like_shell(&self) -> i32 {
        self.status.code().unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }
}

pub(crate) struct SinkState {
    pub(crate) id: u64,
    backlog: AtomicUsize,
    pub(crate) paused: AtomicBool,
    core: Weak<Core>,
}

/// The sending side, given to [`Supervisor::spawn`](crate::Supervisor::spawn).
#[derive(Clone)]
pub struct EventSender {
    pub(crate) tx: mpsc::UnboundedSender<Event>,
    pub(crate) state: Arc<SinkState>,
}

/// The receiving side: `recv().await` in async code, `blocking_recv()`
/// elsewhere.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
    state: Arc<SinkState>,
}

pub(crate) fn channel(id: u64, core: Weak<Core>) -> (EventSender, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(SinkState { id, backlog: AtomicUsize::new(0), paused: AtomicBool::new(false), core });
    (EventSender { tx, state: state.clone() }, Events { rx, state })
}

impl EventSender {
    /// Sends; output lines count towards the backlog. Returns the backlog.
    pub(crate) fn send(&self, ev: Event) -> usize {
        let bytes = match &ev.kind {
            EventKind::Output { line, .. } => line.len() + 1,
            _ => 0,
        };
        if self.tx.send(ev).is_err() {
            return 0; // nobody listens: nothing accumulates
        }
        self.state.backlog.fetch_add(bytes, Ordering::SeqCst) + bytes
    }

    /// Marks the sink paused; returns false (and stays unpaused) if the
    /// consumer has meanwhile drained below the low mark, so that a consumer
    /// which checked before the mark was set is never left waiting.
    pub(crate) fn pause(&self) -> bool {
        self.state.paused.store(true, Ordering::SeqCst);
        if self.state.backlog.load(Ordering::SeqCst) < BACKLOG_LOW {
            self.state.paused.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Events {
    /// The next event; `None` once the supervisor and every sender are gone.
    pub async fn recv(&mut self) -> Option<Event> {
        let ev = self.rx.recv().await;
        self.delivered(&ev);
        ev
    }

    /// The next event, blocking the thread. Not for async code (it panics
    /// inside a tokio runtime).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        let ev = self.rx.blocking_recv();
        self.delivered(&ev);
        ev
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        let ev = self.rx.try_recv().ok();
        self.delivered(&ev);
        ev
    }

    fn delivered(&self, ev: &Option<Event>) {
        let Some(Event { kind: EventKind::Output { line, .. }, .. }) = ev else { return };
        let left = self.state.backlog.fetch_sub(line.len() + 1, Ordering::SeqCst) - (line.len() + 1);
        if left < BACKLOG_LOW && self.state.paused.swap(false, Ordering::SeqCst) {
            if let Some(core) = self.state.core.upgrade() {
                core.resume_sink(self.state.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Event {
        Event::now(Some(InstanceId(1)), EventKind::Output { stream: Stream::Stdout, line: vec![b'x'; n - 1] })
    }

    #[test]
    fn backlog_counts_undelivered_output_and_pausing_ends_when_drained() {
        let (tx, mut rx) = channel(1, Weak::new());
        let n = BACKLOG_HIGH / 1024 + 1;
        let mut backlog = 0;
        for _ in 0..n {
            backlog = tx.send(line(1024));
        }
        assert_eq!(backlog, n * 1024);
        assert!(tx.pause(), "above the low mark, the sink pauses");
        assert!(tx.state.paused.load(Ordering::SeqCst));
        // Non-output events do not count.
        assert_eq!(tx.send(Event::now(None, EventKind::Warning { message: "w".into() })), n * 1024);
        let mut got = 0;
        while let Some(ev) = rx.try_recv() {
            if matches!(ev.kind, EventKind::Output { .. }) {
                got += 1;
            }
        }
        assert_eq!(got, n);
        assert_eq!(tx.state.backlog.load(Ordering::SeqCst), 0);
        assert!(!tx.state.paused.load(Ordering::SeqCst), "draining below the low mark unpauses");
    }

    #[test]
    fn a_pause_that_comes_after_the_drain_undoes_itself() {
        let (tx, _rx) = channel(1, Weak::new());
        tx.send(line(10));
        assert!(!tx.pause(), "below the low mark: not paused");
        assert!(!tx.state.paused.load(Ordering::SeqCst));
    }

    #[test]
    fn a_closed_channel_accumulates_nothing() {
        let (tx, rx) = channel(1, Weak::new());
        drop(rx);
        assert_eq!(tx.send(line(100)), 0);
        assert!(tx.closed());
    }
}
