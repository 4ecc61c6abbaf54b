//! Poll before park: the adaptive spin policy, the host-wide cap on spinning
//! threads, and the generic wait loop that uses both.
//!
//! A blocking wait whose wake-up comes from another CPU costs 15–35 µs on
//! these machines when the waiter sleeps (the vCPU halts and must be woken by
//! an IPI), against well under a microsecond when it polls. Polling costs a
//! CPU, so a waiter polls only when its wake-up is expected soon, and only if
//! it can take one of a few host-wide spin tokens.
//!
//! # Policy ([`SpinPolicy`], one per thread or per fd)
//!
//! - It keeps an exponential moving average (weight 1/8) of the gap between
//!   the start of a wait and its wake-up, measured for every wait (spun or
//!   parked; a parked gap includes the wake-up latency, which only errs
//!   towards spinning less). Each gap counts as at most twice the budget, so
//!   a rare stall moves the average a little, not past the budget.
//! - `auto`: spin when the average is within the budget ([`AUTO_MAX_NS`]),
//!   for three times the average (at least [`MIN_SPIN_NS`]) — long enough for
//!   most of the distribution, short enough that a miss wastes little.
//! - A spin that ends without the event is a *miss*: after `k` consecutive
//!   misses the next `2^k` waits (at most [`MAX_SKIP`]) park at once.
//! - Waits that did not spin because the average was too long probe once
//!   every [`PROBE_EVERY`] waits with the full budget, so a change to short
//!   gaps that the parked gaps hide (wake-up latency added) is noticed.
//! - `off` never spins; `fixed(µs)` always spins that long.
//!
//! # Cap ([`SpinCap`])
//!
//! A small shared segment (a file, normally in `/dev/shm`) holds `cap`
//! token slots, default `cores − 1`. A spinner must hold a token; without
//! one it parks at once (after a short grace in which the token holder, who
//! is usually the thread about to wake it, lets go). Tokens name their owner
//! (pid, tid) and the time they were taken, so a token held by a process that
//! died is reclaimed by the next contender that finds the slots full. While
//! spinning, the thread calls `sched_yield` (first after [`FIRST_YIELD_NS`],
//! then every [`YIELD_EVERY_NS`]), so that any other runnable thread on its
//! CPU gets the CPU; the call returns at once when there is none. A yield
//! that took longer ([`YIELD_SWITCHED_NS`]) ran another thread: the spin ends
//! there (after one more look) — that thread wanted the CPU and is often the
//! very waker (both ends on one core), which spinning only delays. Such an
//! end is not a miss: the policy does not back off for it (it learns the
//! gap), so a thread that shares its CPU with busy threads still spins
//! first on every wait, and yields at once when they want the CPU.
//!
//! # Who gets the token ([`WaitKind`])
//!
//! With one token (a 2-CPU host) the token is worth most to the waiter
//! whose event comes soonest, and what a thread waits on says much about
//! that. A direct read on a ring connection is a client waiting for the
//! reply to what it just wrote (or a peer in the middle of a stream); an
//! epoll/poll set with ring fds in it is an event loop (Go's netpoller, a
//! server's listener) whose next event usually comes only after the other
//! end has done something; a futex wait, or a wait on kernel fds only, is a
//! hand-off between a process's own threads or has no ring to watch at all.
//! Measured on Go functions behind a shunt client, two thirds of the
//! client's token-less parks found the function's netpoller spinning on the
//! one token while the function computed the reply, and half the function's
//! netpoller parks found the token held by its own threads' futex spins:
//! each time, the waiter whose event was due parked and paid a wake-up.
//!
//! So every holder writes its kind ([`WaitKind::rank`]) into its slot, and a
//! contender of a higher rank that finds no token free marks the lowest
//! holder's slot *wanted* (its rank and until when, the end of its grace).
//! A holder looks at its slot's mark whenever it reads the clock in its
//! spin loop (every few hundred nanoseconds) and, if a higher rank wants
//! it, gives the token back and parks ([`WaitStats::park_preempted`]; not a
//! miss of its policy's). Ranks only ever go up through a hand-over, so a
//! token cannot bounce; the cap itself is unchanged (a slot has one owner,
//! taken by compare-and-swap), dead holders are reclaimed as before, and
//! nothing on the path takes a lock or allocates.
//!
//! A token is also worth nothing while its holder is off the CPU, and on a
//! function pinned to one CPU that is the common case: the netpoller M
//! spins, the handler M becomes runnable on the same CPU, and the spinner
//! yields to it — or the kernel preempts it — for the handler's whole time
//! slice, the token held all along. So a spinner beats a heartbeat into
//! its slot at each clock read; a contender that finds a holder's
//! heartbeat older than [`STALE_BEAT_NS`] takes the token by
//! compare-and-swap on the owner word, and the old holder, which checks
//! that it still owns its slot on every turn of its loop, parks as soon as
//! it runs again: one spinner per token still, but for the turn in flight.

use shunt_abi::syscalls::nr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::clock::now_ns;
use crate::ring::Line;
use crate::sys;

/// The longest spin `auto` chooses.
pub const AUTO_MAX_NS: u64 = 100_000;
/// The shortest spin worth starting.
pub const MIN_SPIN_NS: u64 = 2_000;
/// Most waits skipped after repeated misses.
pub const MAX_SKIP: u32 = 256;
/// A wait that did not spin for lack of budget probes this often.
pub const PROBE_EVERY: u32 = 32;
/// How often a spinner offers its CPU to others.
pub const YIELD_EVERY_NS: u64 = 5_000;
/// When a spinner first offers its CPU.
pub const FIRST_YIELD_NS: u64 = 1_000;
/// A `sched_yield` that took this long ran someone else.
pub const YIELD_SWITCHED_NS: u64 = 3_000;
/// How long a waiter keeps trying for a token before it parks.
pub const TOKEN_GRACE_NS: u64 = 3_000;
/// Gaps longer than this count as this. Beyond the budget, how much longer
/// a gap was says nothing more (either way no spin would have caught it),
/// and an unclamped outlier ruins the average for dozens of waits: one
/// 8 ms stall of a loaded host raised it by 1 ms, and request/response ends
/// then parked on both sides — each one's parked gaps long because the
/// other parks — until a probe hit. Twice the budget: a run of long gaps
/// (an idle function) still takes the average past the budget, and a few
/// short ones bring it back.
const GAP_CLAMP_NS: u64 = 2 * AUTO_MAX_NS;

/// How an instance spins (`--spin auto|off|MICROSECONDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinMode {
    Off,
    Auto,
    /// Always spin this many nanoseconds.
    Fixed(u64),
}

impl SpinMode {
    /// Parses the command-line form: `auto`, `off`, or a number of
    /// microseconds.
    pub fn parse(s: &str) -> Option<SpinMode> {
        match s {
            "auto" => Some(SpinMode::Auto),
            "off" | "0" => Some(SpinMode::Off),
            _ => {
                let us: u64 = s.parse().ok()?;
                (us <= 1_000_000).then_some(SpinMode::Fixed(us * 1000))
            }
        }
    }
}

/// What a wait waits on: decides which waiter keeps a scarce spin token
/// (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WaitKind {
    /// Not said (a caller that predates kinds; a holder of an older
    /// runtime reads as this).
    Other = 0,
    /// A futex wait: a hand-off between the process's own threads.
    Futex = 1,
    /// epoll/poll/select on kernel fds only.
    KernelPoll = 2,
    /// epoll/poll/select on a set with ring connections in it (an event
    /// loop: Go's netpoller, a listener).
    RingPoll = 3,
    /// A read/write/splice on one ring connection (a client waiting for its
    /// reply).
    Ring = 4,
}

impl WaitKind {
    /// The priority of a wait for a token: a contender takes the token from
    /// a holder of a strictly lower rank. Futex waits and waits on kernel
    /// fds share the lowest rank: neither has a ring to say its event is
    /// near.
    pub const fn rank(self) -> u8 {
        match self {
            WaitKind::Other => 0,
            WaitKind::Futex | WaitKind::KernelPoll => 1,
            WaitKind::RingPoll => 2,
            WaitKind::Ring => 3,
        }
    }
}

/// The adaptive state of one waiter (thread or fd). Plain data: its owner
/// uses it from one thread at a time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpinPolicy {
    /// Moving average of wait→wake gaps, ns (0 = nothing learnt yet).
    ema_ns: u64,
    /// Consecutive misses.
    misses: u32,
    /// Waits left that park without spinning.
    skip: u32,
    /// Waits since the last spin, for probing.
    since_spin: u32,
    /// The last plan was a probe (a full-budget spin despite a long
    /// average).
    probing: bool,
    /// Why the last plan was 0 (`NoSpin`), for the park counters.
    no_spin: u8,
}

/// Why a plan chose not to spin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSpin {
    /// It spins (or the mode is `off`).
    No = 0,
    /// Backing off after misses.
    Backoff = 1,
    /// The average gap is longer than the budget.
    LongGap = 2,
}

impl SpinPolicy {
    pub const fn new() -> SpinPolicy {
        SpinPolicy { ema_ns: 0, misses: 0, skip: 0, since_spin: 0, probing: false, no_spin: 0 }
    }

    /// The learnt average gap (ns).
    pub fn average_gap_ns(&self) -> u64 {
        self.ema_ns
    }

    /// Why the last [`Self::plan`] returned 0.
    pub fn no_spin(&self) -> NoSpin {
        match self.no_spin {
            1 => NoSpin::Backoff,
            2 => NoSpin::LongGap,
            _ => NoSpin::No,
        }
    }

    /// How long the next wait should spin, given an optional timeout.
    pub fn plan(&mut self, mode: SpinMode, timeout_ns: Option<u64>) -> u64 {
        self.probing = false;
        self.no_spin = NoSpin::No as u8;
        let budget = match mode {
            SpinMode::Off => return 0,
            SpinMode::Fixed(ns) => ns,
            SpinMode::Auto => {
                if self.skip > 0 {
                    self.skip -= 1;
                    self.no_spin = NoSpin::Backoff as u8;
                    return 0;
                }
                if self.ema_ns == 0 || self.ema_ns <= AUTO_MAX_NS {
                    (self.ema_ns.max(1) * 3).clamp(MIN_SPIN_NS, AUTO_MAX_NS)
                } else {
                    self.since_spin += 1;
                    if self.since_spin < PROBE_EVERY {
                        self.no_spin = NoSpin::LongGap as u8;
                        return 0;
                    }
                    self.probing = true;
                    AUTO_MAX_NS
                }
            }
        };
        // A wait that will time out within the budget ends then at the
        // latest: spinning through it is as good as sleeping.
        match timeout_ns {
            Some(t) => budget.min(t),
            None => budget,
        }
    }

    /// Learns from a finished wait: how long it took, and whether it spun and
    /// whether the spin caught the event.
    ///
    /// A probe that caught its event restarts the average from that gap:
    /// the long average it probed against is made of parked gaps, which
    /// include the wake-up latency — and the peer's own wake-ups, while the
    /// peer parks because this side's gaps look long. Two ends of a
    /// request/response exchange would otherwise never both leave parking
    /// (each one's gaps long because the other parks).
    pub fn record(&mut self, gap_ns: u64, spun: bool, hit: bool) {
        let gap = gap_ns.min(GAP_CLAMP_NS);
        let probe_hit = core::mem::take(&mut self.probing) && spun && hit;
        self.ema_ns = if self.ema_ns == 0 || probe_hit {
            gap.max(1)
        } else {
            let e = self.ema_ns as i64;
            (e + (gap as i64 - e) / 8).max(1) as u64
        };
        if spun {
            self.since_spin = 0;
            if hit {
                self.misses = 0;
            } else {
                self.misses = (self.misses + 1).min(8);
                self.skip = (1u32 << self.misses).min(MAX_SKIP);
            }
        }
    }
}

/// Counters of waits (the `"waits"` object of the stats report). The
/// `park_*` counters say why a wait parked (with mode `auto` or a fixed
/// spin; `off` parks are only in `parked`).
#[repr(C)]
#[derive(Default)]
pub struct WaitStats {
    /// Waits answered while spinning.
    pub spun: AtomicU64,
    /// Waits that parked in the kernel.
    pub parked: AtomicU64,
    /// Time spent spinning, hits and misses alike (ns).
    pub spin_ns: AtomicU64,
    /// Parked without spinning: backing off after misses.
    pub park_backoff: AtomicU64,
    /// Parked without spinning: the average gap exceeds the budget.
    pub park_long_gap: AtomicU64,
    /// Parked without spinning: no spin token free (the host-wide cap).
    pub park_no_token: AtomicU64,
    /// Parked after spinning its whole budget.
    pub park_missed: AtomicU64,
    /// Parked after a `sched_yield` ran another thread mid-spin.
    pub park_yielded: AtomicU64,
    /// Parked after giving the token to a waiter of a higher rank mid-spin.
    pub park_preempted: AtomicU64,
    /// Tokens got by asking a lower-ranked holder to let go.
    pub took_token: AtomicU64,
    /// Tokens taken from a holder that was off its CPU (stale heartbeat).
    pub took_stale: AtomicU64,
    /// `park_no_token`, by the rank of the holder asked (the lowest held):
    /// an older runtime's or a futex/kernel-fd wait, a ring-fd event loop,
    /// a ring connection's read or write.
    pub no_token_low: AtomicU64,
    pub no_token_ring_poll: AtomicU64,
    pub no_token_ring: AtomicU64,
}

impl WaitStats {
    pub const fn new() -> WaitStats {
        WaitStats {
            spun: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            spin_ns: AtomicU64::new(0),
            park_backoff: AtomicU64::new(0),
            park_long_gap: AtomicU64::new(0),
            park_no_token: AtomicU64::new(0),
            park_missed: AtomicU64::new(0),
            park_yielded: AtomicU64::new(0),
            park_preempted: AtomicU64::new(0),
            took_token: AtomicU64::new(0),
            took_stale: AtomicU64::new(0),
            no_token_low: AtomicU64::new(0),
            no_token_ring_poll: AtomicU64::new(0),
            no_token_ring: AtomicU64::new(0),
        }
    }
}

/// How a spin ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpinEnd {
    Hit,
    /// The budget ran out.
    Budget,
    /// A yield ran another thread.
    Yielded,
    /// A waiter of a higher rank wanted the token.
    Preempted,
}

/// Where the host-wide cap lives (tmpfs, shared by every instance of the
/// host's mount namespace; a sandbox must bind it in to share the cap).
pub const HOST_CAP_PATH: &[u8] = b"/dev/shm/shunt-spin-cap\0";
/// The same, as text.
pub const HOST_CAP_PATH_STR: &str = "/dev/shm/shunt-spin-cap";

const CAP_MAGIC: u64 = u64::from_le_bytes(*b"SHUNTSP1");
/// Token slots a cap segment has room for.
pub const MAX_TOKENS: usize = 64;
/// A holder whose heartbeat is this old is not running (the kernel
/// preempted it for another thread of its CPU): its token is taken by a
/// contender that can use it. A running spinner beats at least every
/// microsecond or so; a descheduled one holds the token for a whole time
/// slice of its CPU's other thread — in a Go function pinned to one CPU,
/// the netpoller M kept the host's only token while the handler M computed
/// the reply, and the client waiting for that reply parked.
pub const STALE_BEAT_NS: u64 = 2_000;
/// A token older than this is checked for a dead owner.
const STALE_TOKEN_NS: u64 = 20_000_000;
/// A token older than this is taken back even from a live owner (stopped,
/// or descheduled for very long); its owner's release then finds the slot
/// changed and leaves it alone.
const ABANDONED_TOKEN_NS: u64 = 1_000_000_000;

#[repr(C)]
#[derive(Default)]
struct Slot {
    /// 0 = free, else `pid << 32 | tid` of the holder.
    owner: AtomicU64,
    /// When it was taken (CLOCK_MONOTONIC, host-wide).
    since_ns: AtomicU64,
    /// The holder's [`WaitKind::rank`] (0 from an older runtime, which
    /// never writes it: its tokens are asked for by everyone and never let
    /// go early, as before).
    rank: AtomicU32,
    /// A contender's request (see [`want_word`]); 0 = none. Stale marks
    /// expire by themselves: no one needs to clear them.
    want: AtomicU64,
    /// The holder's heartbeat: when it last looked at the clock in its
    /// spin loop (every few hundred nanoseconds while it runs). 0 = not
    /// beating (just taken, being given back, or an older runtime's
    /// holder, which never writes it): never taken for staleness.
    beat_ns: AtomicU64,
}

/// A contender's mark: the time until which it waits for the token, with
/// its rank in the low byte (the time's low byte dropped: 256 ns grain).
const fn want_word(until_ns: u64, rank: u8) -> u64 {
    (until_ns & !0xff) | rank as u64
}
// The fields added to Slot stay within its cache line: the segment's size
// and layout for older runtimes sharing the host's cap are unchanged.
const _: () = assert!(core::mem::size_of::<Line<Slot>>() == 64);

#[repr(C)]
struct CapSegment {
    magic: AtomicU64,
    version: AtomicU32,
    /// Tokens that may be held at once (≤ MAX_TOKENS).
    cap: AtomicU32,
    slots: [Line<Slot>; MAX_TOKENS],
}

const CAP_SIZE: usize = core::mem::size_of::<CapSegment>();

/// A handle on a cap segment (process-local pointer to the mapping).
#[derive(Clone, Copy)]
pub struct SpinCap {
    seg: *const CapSegment,
}

// SAFETY: the segment is only accessed through atomics.
unsafe impl Send for SpinCap {}
// SAFETY: as above.
unsafe impl Sync for SpinCap {}

/// A held spin token; give it back with [`SpinCap::release`].
#[derive(Debug)]
pub struct Token {
    slot: usize,
    owner: u64,
}

/// Why a cap segment could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapError {
    /// A system call failed with this result.
    Sys(sys::Sysret),
    /// The file exists but is not a cap segment of this version.
    Foreign,
}

/// The default cap: online CPUs − 1 (at least 0).
pub fn default_cap() -> u32 {
    online_cpus().saturating_sub(1)
}

/// CPUs online on the host (`/sys/devices/system/cpu/online`, else this
/// process's affinity mask).
pub fn online_cpus() -> u32 {
    let fd = sys::open(b"/sys/devices/system/cpu/online\0", libc::O_RDONLY | libc::O_CLOEXEC, 0);
    if fd < 0 {
        return sys::affinity_cpus();
    }
    let mut buf = [0u8; 256];
    let n = sys::read(fd as i32, &mut buf);
    sys::close(fd as i32);
    if n <= 0 {
        return sys::affinity_cpus();
    }
    parse_cpu_list(&buf[..n as usize]).unwrap_or_else(sys::affinity_cpus)
}

/// Counts the CPUs of a kernel CPU list (`0-3,5,7-8`).
pub fn parse_cpu_list(s: &[u8]) -> Option<u32> {
    let mut total = 0u32;
    for part in s.split(|&c| c == b',') {
        let part = trim(part);
        if part.is_empty() {
            continue;
        }
        let mut it = part.splitn(2, |&c| c == b'-');
        let a = parse_u32(it.next()?)?;
        let b = match it.next() {
            Some(b) => parse_u32(b)?,
            None => a,
        };
        if b < a {
            return None;
        }
        total += b - a + 1;
    }
    (total > 0).then_some(total)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &s[start..end]
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u32)?;
    }
    Some(v)
}

impl SpinCap {
    /// Opens the host-wide cap segment at `path` (NUL-terminated), creating
    /// it with `cap` tokens if it does not exist. Creation writes a private
    /// file and links it into place, so nobody ever maps a half-written
    /// segment; `tmp` is a NUL-terminated unique name for that file in the
    /// same directory.
    pub fn open(path: &[u8], tmp: &[u8], cap: u32) -> Result<SpinCap, CapError> {
        let mode = 0o666;
        let fd = sys::open(path, libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0);
        let fd = if fd >= 0 {
            fd as i32
        } else if fd == sys::err(libc::ENOENT) {
            let t = sys::open(tmp, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, mode);
            if t < 0 {
                return Err(CapError::Sys(t));
            }
            let t = t as i32;
            let mut r = Self::init_file(t, cap);
            if r == 0 {
                // The file mode was cut by the umask; the segment is host-wide.
                // SAFETY: integer arguments only.
                unsafe { sys::syscall2(nr::FCHMOD, t as u64, mode as u64) };
                // Whoever links first wins; the loser maps the winner's file.
                r = sys::link(tmp, path);
                if r == sys::err(libc::EEXIST) {
                    r = 0;
                }
            }
            sys::close(t);
            sys::unlink(tmp);
            if r < 0 {
                return Err(CapError::Sys(r));
            }
            let fd = sys::open(path, libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0);
            if fd < 0 {
                return Err(CapError::Sys(fd));
            }
            fd as i32
        } else {
            return Err(CapError::Sys(fd));
        };
        let r = Self::map(fd);
        sys::close(fd);
        r
    }

    fn init_file(fd: i32, cap: u32) -> sys::Sysret {
        let r = sys::ftruncate(fd, CAP_SIZE as u64);
        if r < 0 {
            return r;
        }
        // SAFETY: a fresh shared mapping of the file we just sized.
        let m = unsafe {
            sys::mmap(0, CAP_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if m < 0 {
            return m;
        }
        // SAFETY: `m` maps CAP_SIZE zeroed bytes; a zeroed CapSegment is valid
        // (all atomics). Nobody else can see the file yet.
        let seg = unsafe { &*(m as *const CapSegment) };
        seg.version.store(1, Ordering::Relaxed);
        seg.cap.store(cap.min(MAX_TOKENS as u32), Ordering::Relaxed);
        seg.magic.store(CAP_MAGIC, Ordering::Release);
        // SAFETY: the mapping is ours and no longer used.
        unsafe { sys::munmap(m as usize, CAP_SIZE) };
        0
    }

    fn map(fd: i32) -> Result<SpinCap, CapError> {
        match sys::file_size(fd) {
            Ok(n) if n as usize >= CAP_SIZE => {}
            Ok(_) => return Err(CapError::Foreign),
            Err(e) => return Err(CapError::Sys(e)),
        }
        // SAFETY: a fresh shared mapping; nothing is replaced.
        let m = unsafe {
            sys::mmap(0, CAP_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if m < 0 {
            return Err(CapError::Sys(m));
        }
        let cap = SpinCap { seg: m as *const CapSegment };
        if cap.seg().magic.load(Ordering::Acquire) != CAP_MAGIC || cap.seg().version.load(Ordering::Relaxed) != 1 {
            // SAFETY: our own mapping, unused.
            unsafe { sys::munmap(m as usize, CAP_SIZE) };
            return Err(CapError::Foreign);
        }
        Ok(cap)
    }

    /// A cap private to this process (and its fork children): for tests and
    /// benchmarks that must not depend on other processes of the host.
    pub fn private(cap: u32) -> Result<SpinCap, CapError> {
        // SAFETY: a fresh anonymous shared mapping.
        let m = unsafe {
            sys::mmap(0, CAP_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        };
        if m < 0 {
            return Err(CapError::Sys(m));
        }
        // SAFETY: zeroed memory is a valid CapSegment.
        let seg = unsafe { &*(m as *const CapSegment) };
        seg.version.store(1, Ordering::Relaxed);
        seg.cap.store(cap.min(MAX_TOKENS as u32), Ordering::Relaxed);
        seg.magic.store(CAP_MAGIC, Ordering::Release);
        Ok(SpinCap { seg })
    }

    fn seg(&self) -> &CapSegment {
        // SAFETY: the mapping is never unmapped while handles exist (the
        // runtime keeps its one handle for the process's life).
        unsafe { &*self.seg }
    }

    /// Tokens allowed at once.
    pub fn cap(&self) -> u32 {
        self.seg().cap.load(Ordering::Relaxed).min(MAX_TOKENS as u32)
    }

    /// Tokens held now (a snapshot).
    pub fn held(&self) -> u32 {
        let seg = self.seg();
        (0..self.cap() as usize).filter(|&i| seg.slots[i].owner.load(Ordering::Relaxed) != 0).count() as u32
    }

    /// The owner id of the calling thread (`pid << 32 | tid`), for
    /// [`Self::try_acquire`]; callers that cache their ids build it themselves.
    pub fn me() -> u64 {
        ((sys::getpid() as u64) << 32) | sys::gettid() as u64
    }

    /// Takes a token for `owner` (see [`Self::me`]), if one is free, after
    /// reclaiming the tokens of dead holders when none is. The holder's
    /// kind is [`WaitKind::Other`]: it is never asked to let go early.
    pub fn try_acquire(&self, owner: u64) -> Option<Token> {
        self.try_acquire_as(owner, WaitKind::Other)
    }

    /// [`Self::try_acquire`] for a wait of `kind`.
    pub fn try_acquire_as(&self, owner: u64, kind: WaitKind) -> Option<Token> {
        self.try_take_as(owner, kind)
            .or_else(|| if self.reclaim(STALE_TOKEN_NS) { self.try_take_as(owner, kind) } else { None })
    }

    /// Takes a free token, without reclaiming.
    pub fn try_take(&self, owner: u64) -> Option<Token> {
        self.try_take_as(owner, WaitKind::Other)
    }

    /// [`Self::try_take`] for a wait of `kind`.
    pub fn try_take_as(&self, owner: u64, kind: WaitKind) -> Option<Token> {
        let seg = self.seg();
        for i in 0..self.cap() as usize {
            let s = &seg.slots[i];
            if s.owner.load(Ordering::Relaxed) == 0
                && s.owner.compare_exchange(0, owner, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                // Written after the owner: a contender that reads the
                // previous holder's rank in between asks once too often
                // (the new holder sees a lower-or-equal rank's stale mark
                // and keeps the token) or not at all (it asks again on its
                // next look) — never a second token.
                s.rank.store(kind.rank() as u32, Ordering::Relaxed);
                s.since_ns.store(now_ns(), Ordering::Relaxed);
                return Some(Token { slot: i, owner });
            }
        }
        None
    }

    /// Asks the lowest-ranked holder whose rank is below `kind`'s to let go
    /// of its token, on behalf of a contender that waits for one until
    /// `until_ns`. Returns the rank of the lowest holder seen (for the
    /// counters; `None` if every slot is free now), and whether it asked.
    pub fn ask(&self, kind: WaitKind, until_ns: u64) -> (Option<u8>, bool) {
        let seg = self.seg();
        let me = kind.rank();
        let mut lowest: Option<(u8, usize)> = None;
        for i in 0..self.cap() as usize {
            let s = &seg.slots[i];
            if s.owner.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let r = s.rank.load(Ordering::Relaxed).min(255) as u8;
            if lowest.is_none_or(|(l, _)| r < l) {
                lowest = Some((r, i));
            }
        }
        match lowest {
            Some((r, i)) if r < me => {
                let s = &seg.slots[i];
                let w = want_word(until_ns, me);
                // A stronger or later request already there stays.
                if s.want.load(Ordering::Relaxed) < w {
                    s.want.fetch_max(w, Ordering::Relaxed);
                }
                (Some(r), true)
            }
            Some((r, _)) => (Some(r), false),
            None => (None, false),
        }
    }

    /// Whether a waiter of a higher rank than the holder's (`kind`) wants
    /// `t` now. Cheap enough for every turn of a spin loop: the clock is
    /// read only when a higher rank's mark is there.
    #[inline]
    pub fn wanted(&self, t: &Token, kind: WaitKind) -> bool {
        let s = &self.seg().slots[t.slot];
        let w = s.want.load(Ordering::Relaxed);
        (w & 0xff) as u8 > kind.rank() && (w & !0xff) > now_ns()
    }

    /// Clears the marks on `t`'s slot: its new holder got it by asking,
    /// and the mark was its own.
    fn clear_want(&self, t: &Token) {
        self.seg().slots[t.slot].want.store(0, Ordering::Relaxed);
    }

    /// Frees tokens held for at least `min_age_ns` by holders that are dead,
    /// or for absurdly long by anyone. Returns whether any was freed.
    pub fn reclaim(&self, min_age_ns: u64) -> bool {
        let seg = self.seg();
        let now = now_ns();
        let mut freed = false;
        for i in 0..self.cap() as usize {
            let s = &seg.slots[i];
            let owner = s.owner.load(Ordering::Relaxed);
            if owner == 0 {
                continue;
            }
            let age = now.saturating_sub(s.since_ns.load(Ordering::Relaxed));
            if age < min_age_ns {
                continue;
            }
            let pid = (owner >> 32) as i32;
            if age >= ABANDONED_TOKEN_NS || !sys::alive(pid) {
                freed |= s.owner.compare_exchange(owner, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok();
            }
        }
        freed
    }

    /// Gives a token back.
    pub fn release(&self, t: Token) {
        let s = &self.seg().slots[t.slot];
        if s.owner.load(Ordering::Relaxed) == t.owner {
            // The beat goes first: the next holder starts unbeaten (a stale
            // beat of ours must not make it look descheduled). Taken from
            // us meanwhile, this zeroes the taker's beat until its next
            // one: it is then only safe from staleness for that moment.
            s.beat_ns.store(0, Ordering::Relaxed);
            let _ = s.owner.compare_exchange(t.owner, 0, Ordering::Release, Ordering::Relaxed);
        }
    }

    /// Whether `owner` holds a token now (a snapshot).
    pub fn held_by(&self, owner: u64) -> bool {
        let seg = self.seg();
        (0..self.cap() as usize).any(|i| seg.slots[i].owner.load(Ordering::Relaxed) == owner)
    }

    /// Whether `t` is still ours (a contender may have taken it for a stale
    /// heartbeat while we were descheduled).
    #[inline]
    pub fn holds(&self, t: &Token) -> bool {
        self.seg().slots[t.slot].owner.load(Ordering::Relaxed) == t.owner
    }

    /// The holder's heartbeat (see [`STALE_BEAT_NS`]).
    #[inline]
    pub fn beat(&self, t: &Token, now: u64) {
        self.seg().slots[t.slot].beat_ns.store(now, Ordering::Relaxed);
    }

    /// Takes a token whose holder's heartbeat is older than
    /// [`STALE_BEAT_NS`] (the holder is descheduled), for `owner` waiting
    /// as `kind`. The holder sees the slot's owner change at its next look
    /// (it checks on every turn of its spin loop) and parks.
    pub fn take_stale(&self, owner: u64, kind: WaitKind, now: u64) -> Option<Token> {
        let seg = self.seg();
        for i in 0..self.cap() as usize {
            let s = &seg.slots[i];
            let o = s.owner.load(Ordering::Acquire);
            if o == 0 {
                continue;
            }
            let b = s.beat_ns.load(Ordering::Acquire);
            if b == 0 || now.saturating_sub(b) < STALE_BEAT_NS {
                continue;
            }
            if s.owner.compare_exchange(o, owner, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                s.rank.store(kind.rank() as u32, Ordering::Relaxed);
                s.beat_ns.store(0, Ordering::Relaxed);
                s.since_ns.store(now, Ordering::Relaxed);
                return Some(Token { slot: i, owner });
            }
        }
        None
    }
}

/// Everything a wait needs besides its condition: the instance's mode, the
/// waiter's policy, the cap, and where to count.
pub struct WaitCtx<'a> {
    pub mode: SpinMode,
    /// The waiting thread, as a token owner (`pid << 32 | tid`).
    pub who: u64,
    /// What it waits on: its claim to a scarce token.
    pub kind: WaitKind,
    pub policy: &'a mut SpinPolicy,
    pub cap: Option<SpinCap>,
    pub stats: &'a WaitStats,
}

/// How a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parked {
    /// Woken (or spuriously returned): re-check the condition.
    Woken,
    TimedOut,
    /// A signal interrupted the sleep.
    Interrupted,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    Ready,
    TimedOut,
    Interrupted,
}

/// What the spin phase of a wait found.
#[derive(Clone, Copy, Debug)]
pub enum SpinOutcome {
    /// The condition held (while spinning, or at once).
    Ready,
    /// Park now; give this back to [`WaitCtx::parked`] afterwards.
    Park(ParkTicket),
}

/// The spin phase's record, for the accounting after the park.
#[derive(Clone, Copy, Debug)]
pub struct ParkTicket {
    start: u64,
    spun: bool,
}

impl WaitCtx<'_> {
    /// The spin phase of a wait: returns at once if `ready()` holds, else
    /// spins if the policy and the cap allow (at most until `deadline_ns`).
    /// A caller that gets [`SpinOutcome::Park`] parks its own way (following
    /// the prepare/re-check/sleep protocol of [`crate::ring`]) and then
    /// calls [`Self::parked`].
    pub fn spin_phase(&mut self, deadline_ns: Option<u64>, mut ready: impl FnMut() -> bool) -> SpinOutcome {
        if ready() {
            return SpinOutcome::Ready;
        }
        let start = now_ns();
        let timeout = deadline_ns.map(|d| d.saturating_sub(start));
        let budget = self.policy.plan(self.mode, timeout);
        let mut spun = false;
        let why = if budget > 0 {
            match self.spin(start, budget, &mut ready) {
                Some((end, ns)) => {
                    self.stats.spin_ns.fetch_add(ns, Ordering::Relaxed);
                    if end == SpinEnd::Hit {
                        self.stats.spun.fetch_add(1, Ordering::Relaxed);
                        self.policy.record(ns, true, true);
                        return SpinOutcome::Ready;
                    }
                    // A spin cut short by a yield that ran another thread
                    // is no miss of the policy's: the gap may well have been
                    // within the budget. Counted as a miss, it made the
                    // next waits park at once (exponential backoff) — under
                    // Go, whose own threads share the CPU, for most waits.
                    // Nor is one that gave its token to a higher rank.
                    spun = ns > 0 && end == SpinEnd::Budget;
                    Some(match end {
                        SpinEnd::Yielded => &self.stats.park_yielded,
                        SpinEnd::Preempted => &self.stats.park_preempted,
                        _ => &self.stats.park_missed,
                    })
                }
                None => Some(&self.stats.park_no_token),
            }
        } else {
            match self.policy.no_spin() {
                NoSpin::Backoff => Some(&self.stats.park_backoff),
                NoSpin::LongGap => Some(&self.stats.park_long_gap),
                NoSpin::No => None,
            }
        };
        if let Some(c) = why {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.parked.fetch_add(1, Ordering::Relaxed);
        SpinOutcome::Park(ParkTicket { start, spun })
    }

    /// Accounts a park that followed [`Self::spin_phase`] (its gap teaches
    /// the policy).
    pub fn parked(&mut self, t: ParkTicket) {
        self.policy.record(now_ns() - t.start, t.spun, false);
    }

    /// Waits until `ready()` holds: [`Self::spin_phase`], then calls
    /// `park(timeout)` — which must itself follow the prepare/re-check/sleep
    /// protocol of [`crate::ring`] — until `ready()` holds, the deadline
    /// (absolute, [`now_ns`]) passes, or a signal comes.
    pub fn wait(
        &mut self,
        deadline_ns: Option<u64>,
        mut ready: impl FnMut() -> bool,
        mut park: impl FnMut(Option<u64>) -> Parked,
    ) -> Waited {
        let ticket = match self.spin_phase(deadline_ns, &mut ready) {
            SpinOutcome::Ready => return Waited::Ready,
            SpinOutcome::Park(t) => t,
        };
        let r = loop {
            let left = match deadline_ns {
                Some(d) => {
                    let now = now_ns();
                    if now >= d {
                        break if ready() { Waited::Ready } else { Waited::TimedOut };
                    }
                    Some(d - now)
                }
                None => None,
            };
            match park(left) {
                Parked::Woken | Parked::TimedOut => {
                    if ready() {
                        break Waited::Ready;
                    }
                }
                Parked::Interrupted => break Waited::Interrupted,
            }
        };
        self.parked(ticket);
        r
    }

    /// Spins for up to `budget` ns; `None` if no token could be had (nothing
    /// spun), else how the spin ended and how long it took.
    fn spin(&mut self, start: u64, budget: u64, ready: &mut impl FnMut() -> bool) -> Option<(SpinEnd, u64)> {
        let token = match &self.cap {
            None => None,
            // No tokens at all (a one-CPU host): spinning could only delay
            // whoever is to wake us.
            Some(cap) if cap.cap() == 0 => return None,
            Some(cap) => {
                let mut t = cap.try_acquire_as(self.who, self.kind);
                // Grace: the holder is often the thread about to wake us and
                // lets go within a few hundred nanoseconds; one of a lower
                // rank is asked to let go now, and does within its next
                // clock read.
                let until = start + TOKEN_GRACE_NS.min(budget);
                let mut asked = false;
                let mut holder = None;
                let mut n = 0u32;
                while t.is_none() {
                    if ready() {
                        return Some((SpinEnd::Hit, now_ns() - start));
                    }
                    // Asked again now and then: the slot may have changed
                    // hands to another low-ranked waiter meanwhile (each
                    // ask writes a line the holders read).
                    if n % 16 == 0 {
                        let (h, a) = cap.ask(self.kind, until);
                        holder = h.or(holder);
                        asked |= a;
                    }
                    n = n.wrapping_add(1);
                    if now_ns() > until {
                        let c = match holder {
                            Some(3..) => &self.stats.no_token_ring,
                            Some(2) => &self.stats.no_token_ring_poll,
                            _ => &self.stats.no_token_low,
                        };
                        c.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    core::hint::spin_loop();
                    t = cap.try_take_as(self.who, self.kind);
                    if t.is_none() && n % 16 == 1 {
                        t = cap.take_stale(self.who, self.kind, now_ns());
                        if t.is_some() {
                            self.stats.took_stale.fetch_add(1, Ordering::Relaxed);
                            asked = false;
                        }
                    }
                }
                if let (true, Some(t)) = (asked, &t) {
                    cap.clear_want(t);
                    self.stats.took_token.fetch_add(1, Ordering::Relaxed);
                }
                t
            }
        };
        // The first yield comes early: a waker on this same CPU should not
        // wait long for it.
        let mut next_yield = start + FIRST_YIELD_NS;
        let mut i = 0u32;
        let mut token = token;
        let result = loop {
            if ready() {
                break (SpinEnd::Hit, now_ns() - start);
            }
            if let (Some(cap), Some(t)) = (&self.cap, &token) {
                // Taken from us while the kernel had us off the CPU (a
                // stale heartbeat): stop at once, the cap counts the taker.
                if !cap.holds(t) {
                    token = None;
                    break (SpinEnd::Preempted, now_ns() - start);
                }
                // Wanted by a waiter whose event is likely sooner (see the
                // module docs): it gets the token, we park. Looked at on
                // every turn: a turn can be long (a ready() that walks an
                // epoll set), and the contender's grace is short.
                if cap.wanted(t, self.kind) {
                    break (SpinEnd::Preempted, now_ns() - start);
                }
            }
            core::hint::spin_loop();
            i = i.wrapping_add(1);
            if i % 8 == 0 {
                let now = now_ns();
                let el = now - start;
                if el >= budget {
                    break (SpinEnd::Budget, el);
                }
                if let (Some(cap), Some(t)) = (&self.cap, &token) {
                    cap.beat(t, now);
                }
                if now >= next_yield {
                    // The token is kept over the yield: one that returns
                    // at once (nothing else wants the CPU) is the common
                    // case, and giving the token back across it let a
                    // lower rank take it in that window (a client waiting
                    // for its reply then parked, the function's netpoller
                    // spinning). A yield that runs another thread ends
                    // the spin below; while it runs, our heartbeat goes
                    // stale and a contender may take the token.
                    sys::sched_yield();
                    let back = now_ns();
                    if back - now >= YIELD_SWITCHED_NS {
                        // Another thread had this CPU meanwhile: it wants the
                        // CPU, and may well be the waker. Spinning on here
                        // only delays it: stop — after one more look, as
                        // that thread may just have done what we wait for.
                        if ready() {
                            break (SpinEnd::Hit, back - start);
                        }
                        break (SpinEnd::Yielded, back - start);
                    }
                    next_yield = back + YIELD_EVERY_NS;
                }
            }
        };
        if let (Some(cap), Some(t)) = (&self.cap, token) {
            cap.release(t);
        }
        Some(result)
    }
}

/// `futex(FUTEX_WAIT or FUTEX_WAIT_BITSET)` with poll before park: while
/// the policy allows, spins as long as the word still holds `val`, and
/// returns `-EAGAIN` as soon as it does not — what the kernel itself answers
/// when the word differs, so every futex user already handles it (a waker
/// must change the word before waking, or its wake-up could be lost even
/// without the runtime). Otherwise makes the real call with the caller's
/// arguments. `rel_timeout_ns` is the timeout if it was relative
/// (`FUTEX_WAIT`), for the spin's deadline.
///
/// # Safety
/// `word` must be a readable, aligned u32 for the duration of the call;
/// `args` are the call's six arguments, passed on to the kernel.
pub unsafe fn futex_wait(word: *const AtomicU32, val: u32, rel_timeout_ns: Option<u64>, args: [u64; 6], ctx: &mut WaitCtx<'_>) -> sys::Sysret {
    // SAFETY: the caller vouches for `word`.
    let w = unsafe { &*word };
    let deadline = rel_timeout_ns.map(|t| now_ns().saturating_add(t));
    let ticket = match ctx.spin_phase(deadline, || w.load(Ordering::Acquire) != val) {
        SpinOutcome::Ready => return sys::err(libc::EAGAIN),
        SpinOutcome::Park(t) => t,
    };
    // The spin used part of a relative timeout: the kernel gets the rest.
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let mut a = args;
    if let Some(d) = deadline {
        let left = d.saturating_sub(now_ns());
        ts.tv_sec = (left / 1_000_000_000) as i64;
        ts.tv_nsec = (left % 1_000_000_000) as i64;
        a[3] = &ts as *const libc::timespec as u64;
    }
    // SAFETY: the caller's arguments (with our timespec, live until the
    // call returns, in place of a relative timeout).
    let r = unsafe { sys::syscall6(nr::FUTEX, a[0], a[1], a[2], a[3], a[4], a[5]) };
    ctx.parked(ticket);
    r
}
