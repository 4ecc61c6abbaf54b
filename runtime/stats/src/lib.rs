//! The stats report of a shunt instance: one typed schema, and reading an
//! instance's segments into it — after the instance ended, or while it runs.
//!
//! Writers: `shunt run`'s supervisor ([`read_instance`], then
//! [`Report::to_json`]), and the stand-alone root process, which writes the
//! same JSON without allocating (`shunt_abi::report`; the tests below read
//! its output back into [`Report`]). Readers: `shunt stats`, the end-to-end
//! tests, the manager (live, through [`read_instance`]).
//!
//! ```json
//! {"redirected": N, "emulated": N, "passthrough": N, "trapped": N, "denied": N,
//!  "processes": N,
//!  "by_syscall": {"getpid": {"redirected": N, "emulated": N, ...}, ...},
//!  "by_program": {"python3": {"processes": N, "redirected": N, ...}, ...}}
//! ```
//!
//! `redirected` counts gate entries, `trapped` trap-fallback entries;
//! `emulated + passthrough + denied` partition both together, per syscall
//! and in total ([`Report::check_accounted`]). Fields that later parts of
//! the runtime add (`transport`, `waits`, `rewritten_at_runtime`) are
//! optional: absent when nothing counted them.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

pub use shunt_abi::class::Class;
use shunt_abi::segment::{Segment, SegmentError, Totals, SEGMENT_SIZE};
use shunt_abi::syscalls::{name_of, TABLE_LEN};

/// Counts of one syscall, one program or the whole instance, by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    #[serde(default)]
    pub redirected: u64,
    #[serde(default)]
    pub emulated: u64,
    #[serde(default)]
    pub passthrough: u64,
    #[serde(default)]
    pub trapped: u64,
    #[serde(default)]
    pub denied: u64,
}

impl Counts {
    /// The count of one class.
    pub fn get(&self, class: Class) -> u64 {
        match class {
            Class::Redirected => self.redirected,
            Class::Trapped => self.trapped,
            Class::Emulated => self.emulated,
            Class::Passthrough => self.passthrough,
            Class::Denied => self.denied,
        }
    }

    fn set(&mut self, class: Class, n: u64) {
        *match class {
            Class::Redirected => &mut self.redirected,
            Class::Trapped => &mut self.trapped,
            Class::Emulated => &mut self.emulated,
            Class::Passthrough => &mut self.passthrough,
            Class::Denied => &mut self.denied,
        } = n;
    }

    /// Calls that entered the runtime (gate or trap).
    pub fn entries(&self) -> u64 {
        self.redirected + self.trapped
    }

    /// Calls the runtime answered (each entry exactly once).
    pub fn answers(&self) -> u64 {
        self.emulated + self.passthrough + self.denied
    }

    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    fn add(&mut self, o: &Counts) {
        for c in Class::ALL {
            self.set(c, self.get(c) + o.get(c));
        }
    }
}

/// One program of the instance (by the file name its processes ran).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramCounts {
    pub processes: u64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The shared-memory transport's counters: connections carried by rings or
/// left to the kernel, and the bytes the rings carried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transport {
    #[serde(default)]
    pub shm_connections: u64,
    #[serde(default)]
    pub kernel_connections: u64,
    #[serde(default)]
    pub shm_bytes: u64,
}

/// Blocking waits: answered while polling (`spun`), or parked in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waits {
    #[serde(default)]
    pub spun: u64,
    #[serde(default)]
    pub parked: u64,
    #[serde(default)]
    pub spin_ns: u64,
    /// Why waits parked (with spinning on): backing off after misses, the
    /// average gap too long, no spin token, the budget spun out, a yield
    /// that ran another thread.
    #[serde(default)]
    pub park_backoff: u64,
    #[serde(default)]
    pub park_long_gap: u64,
    #[serde(default)]
    pub park_no_token: u64,
    #[serde(default)]
    pub park_missed: u64,
    #[serde(default)]
    pub park_yielded: u64,
    /// Spins that gave their token to a waiter of a higher rank (a ring
    /// connection's read over an event loop, an event loop over a futex),
    /// and tokens this instance's waiters got that way.
    #[serde(default)]
    pub park_preempted: u64,
    #[serde(default)]
    pub took_token: u64,
    /// Tokens taken from a holder that was off its CPU (its heartbeat
    /// stale).
    #[serde(default)]
    pub took_stale: u64,
    /// `park_no_token` by the rank of the holder the waiter found: a futex
    /// or kernel-fd wait (or an older runtime's), an epoll/poll set with
    /// ring fds, a ring connection's own read or write.
    #[serde(default)]
    pub no_token_low: u64,
    #[serde(default)]
    pub no_token_ring_poll: u64,
    #[serde(default)]
    pub no_token_ring: u64,
}

/// The report of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub totals: Counts,
    /// Processes that counted (one segment each).
    #[serde(default)]
    pub processes: u64,
    /// Every syscall with a non-zero count, by its kernel name.
    pub by_syscall: BTreeMap<String, Counts>,
    /// Every program of the instance (absent in stand-alone reports).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_program: BTreeMap<String, ProgramCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits: Option<Waits>,
    /// Syscall sites rewritten into gate calls on their first trap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_at_runtime: Option<u64>,
}

/// Why a report could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Input(#[from] shunt_userfile::InputError),
    #[error("{0}: {1}")]
    Segment(String, SegmentError),
    #[error("{0} is not a stats report: {1}")]
    Json(String, serde_json::Error),
}

/// The counts of syscall `nr` in `t`.
fn counts_of(t: &Totals, nr: usize) -> Counts {
    let mut c = Counts::default();
    for class in Class::ALL {
        c.set(class, t.get(class, nr));
    }
    c
}

impl Report {
    /// The report of summed segment counters.
    pub fn from_totals(t: &Totals) -> Report {
        let mut r = Report { processes: t.processes, ..Default::default() };
        for nr in 0..TABLE_LEN {
            let c = counts_of(t, nr);
            if !c.is_zero() {
                r.totals.add(&c);
                r.by_syscall.insert(name_of(nr as u64).to_string(), c);
            }
        }
        if t.has_transport() {
            use shunt_abi::segment::{TR_KERNEL_CONNECTIONS, TR_SHM_BYTES, TR_SHM_CONNECTIONS};
            r.transport = Some(Transport {
                shm_connections: t.transport[TR_SHM_CONNECTIONS],
                kernel_connections: t.transport[TR_KERNEL_CONNECTIONS],
                shm_bytes: t.transport[TR_SHM_BYTES],
            });
        }
        if t.has_waits() {
            let w = t.waits;
            r.waits = Some(Waits {
                spun: w[0],
                parked: w[1],
                spin_ns: w[2],
                park_backoff: w[3],
                park_long_gap: w[4],
                park_no_token: w[5],
                park_missed: w[6],
                park_yielded: w[7],
                park_preempted: w[8],
                took_token: w[9],
                took_stale: w[10],
                no_token_low: w[11],
                no_token_ring_poll: w[12],
                no_token_ring: w[13],
            });
        }
        if t.rewritten != 0 {
            r.rewritten_at_runtime = Some(t.rewritten);
        }
        r
    }

    /// The count of one class for one syscall (0 when it made none).
    pub fn get(&self, syscall: &str, class: Class) -> u64 {
        self.by_syscall.get(syscall).map_or(0, |c| c.get(class))
    }

    /// The total of one class.
    pub fn total(&self, class: Class) -> u64 {
        self.totals.get(class)
    }

    /// Checks the report's invariant: every entry, by the gate or a trap,
    /// was answered exactly once (for the totals, for every syscall and for
    /// every program), and each total is the sum of its syscalls.
    pub fn check_accounted(&self) -> Result<(), String> {
        if self.totals.entries() != self.totals.answers() {
            return Err(format!("totals do not add up: {:?}", self.totals));
        }
        let mut sum = Counts::default();
        for (name, c) in &self.by_syscall {
            if c.entries() != c.answers() {
                return Err(format!("{name}: entries and answers do not add up: {c:?}"));
            }
            sum.add(c);
        }
        if sum != self.totals {
            return Err(format!("totals {:?} are not the sum of the per-syscall counts {sum:?}", self.totals));
        }
        for (name, p) in &self.by_program {
            if p.counts.entries() != p.counts.answers() {
                return Err(format!("program {name}: entries and answers do not add up: {:?}", p.counts));
            }
        }
        Ok(())
    }

    /// The report as JSON (one line).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises") + "\n"
    }

    /// Reads a report (the JSON of `--stats`).
    pub fn from_json(what: &str, text: &str) -> Result<Report, StatsError> {
        serde_json::from_str(text).map_err(|e| StatsError::Json(what.to_string(), e))
    }

    /// Reads a report file.
    pub fn read(path: &Path) -> Result<Report, StatsError> {
        let text = shunt_userfile::read_to_string(path, shunt_userfile::limit::STATS)?;
        Report::from_json(&path.display().to_string(), &text)
    }

    /// Writes the report to `path` atomically (a temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), StatsError> {
        shunt_userfile::check_output(path)?;
        let tmp = path.with_extension("tmp-shunt");
        std::fs::write(&tmp, self.to_json()).map_err(|e| StatsError::Io(tmp.display().to_string(), e))?;
        std::fs::rename(&tmp, path).map_err(|e| StatsError::Io(path.display().to_string(), e))
    }
}

/// A read-only shared mapping of one segment file.
struct Mapped {
    addr: *mut libc::c_void,
}

impl Mapped {
    fn open(path: &Path) -> std::io::Result<Option<Mapped>> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        // A process that is starting may not have sized its file yet.
        if f.metadata()?.len() < SEGMENT_SIZE as u64 {
            return Ok(None);
        }
        // SAFETY: a read-only shared mapping of an open file, at a
        // kernel-chosen address; the file may be closed afterwards.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), SEGMENT_SIZE, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0)
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Some(Mapped { addr }))
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is SEGMENT_SIZE bytes, page-aligned and
        // readable for the life of `self`; other processes may write it, so
        // it is only ever read through atomics.
        unsafe { std::slice::from_raw_parts(self.addr as *const AtomicU64, SEGMENT_SIZE / 8) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`; `words` borrows end with `self`.
        unsafe { libc::munmap(self.addr, SEGMENT_SIZE) };
    }
}

/// Reads every segment of an instance directory into a report with
/// `by_program`: callable while the instance runs (each counter is read
/// atomically; a process that has not published its segment yet counts
/// nothing) and after it ended.
pub fn read_instance(dir: &Path) -> Result<Report, StatsError> {
    let io = |e| StatsError::Io(dir.display().to_string(), e);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    let mut all = Box::new(Totals::new());
    let mut programs = BTreeMap::<String, ProgramCounts>::new();
    for path in names {
        let m = match Mapped::open(&path) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            // A process's segment may vanish between listing and opening.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StatsError::Io(path.display().to_string(), e)),
        };
        let seg = match Segment::new(m.words()) {
            Ok(s) => s,
            Err(SegmentError::Unpublished) => continue,
            Err(e) => return Err(StatsError::Segment(path.display().to_string(), e)),
        };
        let mut one = Box::new(Totals::new());
        one.add(&seg);
        let p = programs.entry(seg.header().program_name().to_string()).or_default();
        p.processes += 1;
        for nr in 0..TABLE_LEN {
            p.counts.add(&counts_of(&one, nr));
        }
        all.merge(&one);
    }
    let mut r = Report::from_totals(&all);
    r.by_program = programs;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shunt_abi::class::{cell_index, Answer, Entry};
    use shunt_abi::syscalls::nr;

    fn totals() -> Totals {
        let mut t = Totals::new();
        t.cells[cell_index(Entry::Gate, Answer::Emulated)][nr::GETPID] = 5;
        t.cells[cell_index(Entry::Gate, Answer::Passthrough)][nr::WRITE] = 3;
        t.cells[cell_index(Entry::Trap, Answer::Passthrough)][nr::WRITE] = 2;
        t.cells[cell_index(Entry::Gate, Answer::Denied)][nr::PTRACE] = 1;
        t.processes = 2;
        t
    }

    /// The stand-alone writer (no allocation, in `shunt_abi`) and this
    /// schema agree: its output reads back into the report of the same
    /// totals.
    #[test]
    fn the_allocation_free_writer_matches_the_schema() {
        let mut t = totals();
        // Every wait counter distinct, so that a field written in the wrong
        // place reads back wrong.
        t.waits = core::array::from_fn(|i| i as u64 + 1);
        let mut json = String::new();
        shunt_abi::report::write_json(&t, &mut json).unwrap();
        let read = Report::from_json("writer", &json).unwrap();
        assert_eq!(read, Report::from_totals(&t));
        let w = read.waits.clone().unwrap();
        assert_eq!((w.spun, w.park_yielded, w.park_preempted, w.took_token, w.took_stale), (1, 8, 9, 10, 11));
        assert_eq!((w.no_token_low, w.no_token_ring_poll, w.no_token_ring), (12, 13, 14));
        read.check_accounted().unwrap();
        assert_eq!(read.get("write", Class::Trapped), 2);
        assert_eq!(read.total(Class::Passthrough), 5);
        assert_eq!(read.total(Class::Denied), 1);
        assert_eq!(read.processes, 2);
    }

    #[test]
    fn reports_round_trip_with_the_optional_fields() {
        let mut r = Report::from_totals(&totals());
        r.by_program.insert("p".into(), ProgramCounts { processes: 2, counts: r.totals });
        assert_eq!(Report::from_json("r", &r.to_json()).unwrap(), r);
        assert!(!r.to_json().contains("transport"), "absent fields are not written");
        r.transport = Some(Transport { shm_connections: 1, kernel_connections: 2, shm_bytes: 3 });
        r.waits = Some(Waits { spun: 4, parked: 5, spin_ns: 6, park_no_token: 2, park_yielded: 3, ..Default::default() });
        r.rewritten_at_runtime = Some(7);
        let json = r.to_json();
        assert!(json.contains("\"shm_connections\":1") && json.contains("\"rewritten_at_runtime\":7"), "{json}");
        assert_eq!(Report::from_json("r", &json).unwrap(), r);
    }

    #[test]
    fn a_broken_account_is_reported() {
        let mut r = Report::from_totals(&totals());
        r.by_syscall.get_mut("write").unwrap().emulated += 1;
        assert!(r.check_accounted().unwrap_err().contains("write"));
    }

    #[test]
    fn an_empty_instance_directory_is_an_empty_report() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("events"), b"").unwrap();
        // A segment file whose process never sized it counts nothing.
        std::fs::write(d.path().join("1-0.seg"), b"").unwrap();
        let r = read_instance(d.path()).unwrap();
        assert_eq!(r, Report::default());
    }
}
