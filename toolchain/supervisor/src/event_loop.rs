//! The supervisor's one event loop: an epoll set over every instance's
//! reaper pidfd, status pipe and captured streams, one inotify descriptor
//! for the runtime's event files, an eventfd for requests from handles, and
//! a pipe from signal handlers. It sleeps in `epoll_wait` until something
//! happens or the nearest `terminate` grace expires; it never polls.
//!
//! An instance has ended when its reaper has exited — which it does only
//! once no process of the instance is left — and its captured streams are
//! drained. Only then are the stats read (every counter is final), the
//! stats file written, the directory and cgroups removed, and `Exited` sent.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rustix::event::epoll;
use rustix::fs::inotify;
use rustix::process::{WaitId, WaitIdOptions};

use crate::cgroup::InstanceCgroups;
use crate::child::{REC_EXIT, REC_LEFTOVERS};
use crate::event::{Event, EventKind, EventSender, Exit, KillReason, Stream, BACKLOG_HIGH};
use crate::instance_dir::InstanceDir;
use crate::supervisor::{Cmd, Core, Shared};

/// Output lines longer than this are delivered in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

const WAKE: u64 = 0;
const INOTIFY: u64 = 1;
const SIGNALS: u64 = 2;
// Per instance: (id << 3) | kind.
const REAPER: u64 = 1;
const STATUS: u64 = 2;
const OUT: u64 = 3; // + 0 stdout, + 1 stderr

fn token(id: u64, kind: u64) -> epoll::EventData {
    epoll::EventData::new_u64(id << 3 | kind)
}

struct LineReader {
    fd: OwnedFd,
    stream: Stream,
    buf: Vec<u8>,
}

/// The runtime's events file, read as it grows.
struct EventsTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    watch: Option<i32>,
}

/// An instance as the loop keeps it.
pub(crate) struct Live {
    shared: Arc<Shared>,
    sink: EventSender,
    reaper: Option<OwnedFd>,
    status: Option<OwnedFd>,
    status_buf: Vec<u8>,
    outputs: [Option<LineReader>; 2],
    paused: bool,
    events: Option<EventsTail>,
    program_status: Option<i32>,
    leftovers: u32,
    deadline: Option<Instant>,
    dir: InstanceDir,
    cgroups: InstanceCgroups,
    stats_file: Option<PathBuf>,
    on_runtime: bool,
}

impl Live {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        sink: EventSender,
        reaper: OwnedFd,
        status: OwnedFd,
        readers: [Option<OwnedFd>; 2],
        dir: InstanceDir,
        cgroups: InstanceCgroups,
        on_runtime: bool,
        stats_file: Option<PathBuf>,
    ) -> Live {
        let [out, err] = readers;
        let events = on_runtime.then(|| EventsTail { path: dir.path.join("events"), offset: 0, partial: Vec::new(), watch: None });
        Live {
            shared,
            sink,
            reaper: Some(reaper),
            status: Some(status),
            status_buf: Vec::new(),
            outputs: [
                out.map(|fd| LineReader { fd, stream: Stream::Stdout, buf: Vec::new() }),
                err.map(|fd| LineReader { fd, stream: Stream::Stderr, buf: Vec::new() }),
            ],
            paused: false,
            events,
            program_status: None,
            leftovers: 0,
            deadline: None,
            dir,
            cgroups,
            stats_file,
            on_runtime,
        }
    }

    fn id(&self) -> u64 {
        self.shared.id.0
    }

    fn send(&self, kind: EventKind) -> usize {
        self.sink.send(Event::now(Some(self.shared.id), kind))
    }
}

pub(crate) struct Loop {
    core: Arc<Core>,
    epoll: OwnedFd,
    inotify: OwnedFd,
    signal_r: OwnedFd,
    lives: HashMap<u64, Live>,
    watches: HashMap<i32, u64>,
    signal_sinks: HashMap<i32, Vec<EventSender>>,
}

impl Loop {
    pub(crate) fn new(core: Arc<Core>, signal_r: OwnedFd) -> anyhow::Result<Loop> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let ino = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        let wake = core_wake(&core);
        epoll::add(&ep, wake, epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)?;
        epoll::add(&ep, &ino, epoll::EventData::new_u64(INOTIFY), epoll::EventFlags::IN)?;
        epoll::add(&ep, &signal_r, epoll::EventData::new_u64(SIGNALS), epoll::EventFlags::IN)?;
        Ok(Loop {
            core,
            epoll: ep,
            inotify: ino,
            signal_r,
            lives: HashMap::new(),
            watches: HashMap::new(),
            signal_sinks: HashMap::new(),
        })
    }

    pub(crate) fn run(mut self) {
        let mut shutdown = false;
        let mut events = Vec::with_capacity(64);
        loop {
            let timeout = self.lives.values().filter_map(|l| l.deadline).min().map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 }
            });
            events.clear();
            match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    eprintln!("shunt: supervisor: epoll_wait failed: {e}");
                    return;
                }
            }
            let mut touched = Vec::new();
            for ev in &events {
                let data = ev.data.u64();
                let (id, kind) = (data >> 3, data & 7);
                if id == 0 {
                    match kind {
                        WAKE => {
                            let mut b = [0u8; 8];
                            let _ = rustix::io::read(core_wake(&self.core), &mut b);
                        }
                        INOTIFY => touched.extend(self.read_inotify()),
                        SIGNALS => self.read_signals(),
                        _ => {}
                    }
                    continue;
                }
                touched.push(id);
                match kind {
                    REAPER => self.on_reaper(id),
                    STATUS => self.read_status(id),
                    k if k == OUT || k == OUT + 1 => self.read_output(id, (k - OUT) as usize, false),
                    _ => {}
                }
            }
            for cmd in self.core.take_cmds() {
                match cmd {
                    Cmd::Add(live) => {
                        let id = live.id();
                        self.add(*live);
                        touched.push(id);
                    }
                    Cmd::Deadline { id, at } => {
                        if let Some(l) = self.lives.get_mut(&id) {
                            l.deadline = Some(l.deadline.map_or(at, |d| d.min(at)));
                        }
                    }
                    Cmd::Resume { sink } => self.resume(sink),
                    Cmd::Signal { signal, sink } => self.signal_sinks.entry(signal).or_default().push(sink),
                    Cmd::Shutdown => shutdown = true,
                }
            }
            let now = Instant::now();
            for l in self.lives.values_mut() {
                if l.deadline.is_some_and(|d| d <= now) {
                    l.deadline = None;
                    l.shared.kill(KillReason::GraceExpired);
                }
                if shutdown {
                    l.shared.kill(KillReason::Shutdown);
                }
            }
            touched.sort_unstable();
            touched.dedup();
            for id in touched {
                self.try_finish(id);
            }
            if shutdown && self.lives.is_empty() {
                return;
            }
        }
    }

    fn add(&mut self, mut live: Live) {
        let id = live.id();
        let flags = epoll::EventFlags::IN;
        if let Some(fd) = &live.reaper {
            let _ = epoll::add(&self.epoll, fd, token(id, REAPER), flags);
        }
        if let Some(fd) = &live.status {
            let _ = epoll::add(&self.epoll, fd, token(id, STATUS), flags);
        }
        for (i, r) in live.outputs.iter().enumerate() {
            if let Some(r) = r {
                let _ = epoll::add(&self.epoll, &r.fd, token(id, OUT + i as u64), flags);
            }
        }
        if let Some(tail) = &mut live.events {
            // Watch first, then read what was written before the watch.
            if let Ok(wd) = inotify::add_watch(&self.inotify, &tail.path, inotify::WatchFlags::MODIFY) {
                self.watches.insert(wd, id);
                tail.watch = Some(wd);
            }
        }
        if self.core.shutting_down.load(Ordering::SeqCst) {
            live.shared.kill(KillReason::Shutdown);
        }
        self.lives.insert(id, live);
        self.tail_events(id);
    }

    fn read_inotify(&mut self) -> Vec<u64> {
        let mut ids = Vec::new();
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
        while let Ok(ev) = reader.next() {
            if let Some(id) = self.watches.get(&ev.wd()) {
                ids.push(*id);
            }
        }
        for id in &ids {
            self.tail_events(*id);
        }
        ids
    }

    fn read_signals(&mut self) {
        let mut buf = [0u8; 12 * 64];
        while let Ok(n) = rustix::io::read(&self.signal_r, &mut buf) {
            if n == 0 {
                break;
            }
            for rec in buf[..n].chunks_exact(12) {
                let sig = i32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
                let code = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
                // SI_USER (0), SI_QUEUE (-1), SI_TKILL (-6): sent by a process.
                let from_process = code <= 0;
                if let Some(sinks) = self.signal_sinks.get(&sig) {
                    for s in sinks {
                        s.send(Event::now(None, EventKind::Signal { signal: sig, from_process }));
                    }
                }
            }
        }
    }

    fn on_reaper(&mut self, id: u64) {
        let Some(l) = self.lives.get_mut(&id) else { return };
        let Some(fd) = &l.reaper else { return };
        match rustix::process::waitid(WaitId::PidFd(fd.as_fd()), WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {
            Ok(None) => return, // not yet
            Ok(Some(_)) | Err(_) => {}
        }
        let fd = l.reaper.take();
        if let Some(fd) = &fd {
            let _ = epoll::delete(&self.epoll, fd);
        }
        // Everything the reaper said is in its pipe by now.
        self.read_status(id);
    }

    fn read_status(&mut self, id: u64) {
        let Some(l) = self.lives.get_mut(&id) else { return };
        let Some(fd) = &l.status else { return };
        let mut buf = [0u8; 512];
        let mut eof = false;
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => l.status_buf.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        while l.status_buf.len() >= 5 {
            let rec: Vec<u8> = l.status_buf.drain(..5).collect();
            let value = i32::from_le_bytes([rec[1], rec[2], rec[3], rec[4]]);
            match rec[0] {
                REC_EXIT => {
                    l.program_status = Some(value);
                    l.shared.program_done.store(true, Ordering::SeqCst);
                }
                REC_LEFTOVERS => l.leftovers = value.max(0) as u32,
                _ => {}
            }
        }
        if eof {
            if let Some(fd) = l.status.take() {
                let _ = epoll::delete(&self.epoll, &fd);
            }
        }
    }

    /// Reads a captured stream: a bounded amount per call (fairness between
    /// instances), everything when `drain` (the instance has ended, so no
    /// writer is left and the pipe holds at most its capacity).
    fn read_output(&mut self, id: u64, which: usize, drain: bool) {
        let Some(l) = self.lives.get_mut(&id) else { return };
        let Some(r) = l.outputs[which].as_mut() else { return };
        let mut chunk = vec![0u8; 64 * 1024];
        let mut budget = 4;
        let mut closed = false;
        loop {
            if !drain && budget == 0 {
                break;
            }
            budget -= 1;
            match rustix::io::read(&r.fd, &mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => r.buf.extend_from_slice(&chunk[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    closed = drain;
                    break;
                }
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        let mut start = 0;
        loop {
            let rest = &r.buf[start..];
            match rest.iter().position(|&c| c == b'\n') {
                Some(nl) if nl <= MAX_LINE => {
                    lines.push(rest[..nl].to_vec());
                    start += nl + 1;
                }
                _ if rest.len() > MAX_LINE => {
                    lines.push(rest[..MAX_LINE].to_vec());
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        r.buf.drain(..start);
        if closed && !r.buf.is_empty() {
            lines.push(std::mem::take(&mut r.buf));
        }
        let stream = r.stream;
        if closed {
            if let Some(r) = l.outputs[which].take() {
                let _ = epoll::delete(&self.epoll, &r.fd);
            }
        }
        let mut backlog = 0;
        for line in lines {
            backlog = l.send(EventKind::Output { stream, line });
        }
        if backlog > BACKLOG_HIGH && !drain && !l.sink.closed() && l.sink.pause() {
            let sink = l.sink.state.id;
            self.pause(sink);
        }
    }

    /// Stops reading the streams of every instance writing to `sink`.
    fn pause(&mut self, sink: u64) {
        for l in self.lives.values_mut().filter(|l| l.sink.state.id == sink && !l.paused) {
            l.paused = true;
            for r in l.outputs.iter().flatten() {
                let _ = epoll::delete(&self.epoll, &r.fd);
            }
        }
    }

    fn resume(&mut self, sink: u64) {
        for l in self.lives.values_mut().filter(|l| l.sink.state.id == sink && l.paused) {
            l.paused = false;
            for (i, r) in l.outputs.iter().enumerate() {
                if let Some(r) = r {
                    let _ = epoll::add(&self.epoll, &r.fd, token(l.shared.id.0, OUT + i as u64), epoll::EventFlags::IN);
                }
            }
        }
    }

    /// Reads what the runtime appended to the instance's events file.
    fn tail_events(&mut self, id: u64) {
        let Some(l) = self.lives.get_mut(&id) else { return };
        let Some(tail) = l.events.as_mut() else { return };
        let Ok(data) = read_from(&tail.path, tail.offset) else { return };
        tail.offset += data.len() as u64;
        tail.partial.extend_from_slice(&data);
        let mut lines = Vec::new();
        while let Some(nl) = tail.partial.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = tail.partial.drain(..=nl).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        for line in lines {
            let Some(kind) = parse_runtime_event(&line) else { continue };
            if let EventKind::PolicyKill { pid, syscall } = &kind {
                l.shared.kill(KillReason::Policy { pid: *pid, syscall: syscall.clone() });
            }
            l.send(kind);
        }
    }

    fn try_finish(&mut self, id: u64) {
        let Some(l) = self.lives.get(&id) else { return };
        if l.reaper.is_some() {
            return;
        }
        // No process of the instance is left: drain what they wrote.
        self.read_status(id);
        for which in 0..2 {
            self.read_output(id, which, true);
        }
        self.tail_events(id);
        let Some(mut l) = self.lives.remove(&id) else { return };
        if let Some(fd) = l.status.take() {
            let _ = epoll::delete(&self.epoll, &fd);
        }
        if let Some(wd) = l.events.as_ref().and_then(|t| t.watch) {
            self.watches.remove(&wd);
            let _ = inotify::remove_watch(&self.inotify, wd);
        }
        let killed = l.shared.kill_reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let program_status = l.program_status.map(ExitStatus::from_raw);
        let status = match (&killed, program_status) {
            (Some(KillReason::Policy { .. }), _) => ExitStatus::from_raw(libc::SIGSYS),
            (_, Some(s)) => s,
            (_, None) => ExitStatus::from_raw(libc::SIGKILL),
        };
        let (mut stats, mut stats_error) = (None, None);
        if l.on_runtime {
            match crate::report::read(&l.dir.path) {
                Ok(r) => stats = Some(r),
                Err(e) => stats_error = Some(format!("{e:#}")),
            }
        }
        if let (Some(out), Some(report)) = (&l.stats_file, &stats) {
            if let Err(e) = crate::report::write_to(&report, out) {
                stats_error = Some(format!("{e:#}"));
            }
        }
        let exit = Exit {
            status,
            program_status,
            killed,
            leftovers: l.leftovers,
            oom_kills: l.cgroups.oom_kills(),
            stats,
            stats_error,
        };
        // Directory and cgroups go now (they are empty), before anyone hears
        // of the exit.
        drop(std::mem::take(&mut l.cgroups));
        let sink = l.sink.clone();
        let shared = l.shared.clone();
        drop(l);
        shared.finish(exit.clone());
        sink.send(Event::now(Some(shared.id), EventKind::Exited(exit)));
    }
}

fn core_wake(core: &Core) -> std::os::fd::BorrowedFd<'_> {
    core.wake_fd()
}

fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// A line of the runtime's events file (`runtime/src/events.rs`):
/// `<pid> deny <name> <errno>`, `<pid> kill <name>`, `<pid> fatal <message>`.
pub(crate) fn parse_runtime_event(line: &str) -> Option<EventKind> {
    let mut it = line.splitn(3, ' ');
    let pid: i32 = it.next()?.parse().ok()?;
    let kind = it.next()?;
    let rest = it.next().unwrap_or("");
    Some(match kind {
        "deny" => {
            let mut r = rest.split(' ');
            let syscall = r.next().unwrap_or("?").to_string();
            let errno = r.next().and_then(|e| e.parse().ok()).unwrap_or(0);
            EventKind::Denied { pid, syscall, errno }
        }
        "kill" => EventKind::PolicyKill { pid, syscall: rest.to_string() },
        "fatal" => EventKind::RuntimeError { pid, message: rest.to_string() },
        other => EventKind::Warning { message: format!("pid {pid}: {other} {rest}") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_event_lines() {
        assert!(matches!(
            parse_runtime_event("12 deny mkdirat 13"),
            Some(EventKind::Denied { pid: 12, ref syscall, errno: 13 }) if syscall == "mkdirat"
        ));
        assert!(matches!(
            parse_runtime_event("7 kill unshare"),
            Some(EventKind::PolicyKill { pid: 7, ref syscall }) if syscall == "unshare"
        ));
        assert!(matches!(
            parse_runtime_event("7 fatal could not map the stats segment (errno 13)"),
            Some(EventKind::RuntimeError { pid: 7, ref message }) if message == "could not map the stats segment (errno 13)"
        ));
        assert!(parse_runtime_event("garbage").is_none());
        assert!(parse_runtime_event("").is_none());
    }
}
