//! The stats segment: one shared file per process of an instance, in which
//! the gate counts that process's calls, and which outlives the process.
//!
//! A process of an instance maps `<instance>/<pid>-<n>.seg` `MAP_SHARED`.
//! Its header (one page) is followed by one [`SLOT_STRIDE`] slot per thread:
//! the runtime core's thread block, then the thread's counters, one row of
//! [`TABLE_LEN`] `u64`s per (entry, answer) cell.
//!
//! ```text
//! +0                  SegmentHeader (one page)
//! +SEGMENT_HEADER     slot 0: thread block | counters[cell][nr] (6 pages) | unused
//! +… + SLOT_STRIDE    slot 1 …
//! ```
//!
//! Readers (the supervisor, `shunt stats`, the manager, the stand-alone
//! report) sum the rows of every slot below the header's high-water mark.
//! Every word a reader looks at is read as an atomic: the owning process may
//! still be running and counting.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::class::{Class, ALL_CELLS, CELLS};
use crate::syscalls::TABLE_LEN;

/// The segment file's first word once its header is complete: the bytes
/// `SHUNTSG1` (a literal, so that the C header can carry it too).
pub const SEGMENT_MAGIC: u64 = 0x3147_5354_4e55_4853;
const _: () = assert!(SEGMENT_MAGIC == u64::from_le_bytes(*b"SHUNTSG1"));
/// Version 9: fourteen wait counters (token hand-overs between wait kinds
/// and from descheduled holders, token-less parks by the holder's kind). Version 8: eight wait counters (the reasons waits parked). Version 7: 4,096 slots (was 1,024: a server with more live threads
/// failed `clone` with EAGAIN). Version 5: the transport's and the waits' counters in the header
/// (version 4: no `unaccounted` word; the magic is stored last, so a reader
/// never sees a half-written header).
pub const SEGMENT_VERSION: u32 = 9;

/// Distance between two slots in the stats segment.
pub const SLOT_STRIDE: usize = 32 * 1024;
/// Threads a process may have inside the runtime at once. The segment is
/// a sparse file (and, without one, sparse anonymous memory): its size is
/// address space (128 MiB), only the slots in use take memory. A thread
/// beyond it fails `clone` with EAGAIN, as at a kernel thread limit.
pub const MAX_SLOTS: usize = 4096;
/// Words of the header's slot bitmap (one bit per slot).
pub const SLOT_BITMAP_WORDS: usize = MAX_SLOTS / 64;
/// Offset of the counters from the start of a slot (the thread block is
/// before them).
pub const COUNTERS_OFFSET: usize = 4096;
/// Size of one cell's counter row.
pub const COUNTER_ROW: usize = TABLE_LEN * 8;
/// Size of the segment header that precedes slot 0.
pub const SEGMENT_HEADER: usize = 4096;
/// Total size of a stats segment file.
pub const SEGMENT_SIZE: usize = SEGMENT_HEADER + MAX_SLOTS * SLOT_STRIDE;
/// First word (little-endian) of every request to an instance's segment
/// broker and of its answers (the runtime core's `segment.rs`, the
/// supervisor's `broker.rs`): a request is this word and the sender's pid
/// with one descriptor (the socket to answer on); an answer is this word
/// and 0 with the segment file's descriptor, or a negative errno.
pub const SEGMENT_BROKER_MAGIC: u32 = u32::from_le_bytes(*b"SEG\x01");
/// First word of a request that hands the broker a ring connection end's
/// segment to keep (so that the end needs no descriptor of its own for a
/// later `execve`; the runtime core's `net.rs`, the supervisor's
/// `broker.rs`): 24 bytes, this word, the side (u32: 0 connector, 1
/// acceptor), the segment's id (u64: its memfd's inode) and the end's
/// kernel socket's inode (u64), with one descriptor, the memfd. No answer.
pub const CONN_KEEP_MAGIC: u32 = u32::from_le_bytes(*b"CNK\x01");
/// First word of a request for kept segments, and of its answer: this word,
/// a count `n` (u32, at most [`CONN_FETCH_MAX`]) and `n` records of the
/// segment id (u64) and side (u32, then 4 bytes of padding), with `n + 1`
/// descriptors: the socket to answer on, then each end's kernel socket (the
/// proof that the asker holds that end). The answer: this word, `n`, `n`
/// statuses (i32: 0, or a negative errno) and one descriptor per status 0,
/// in order.
pub const CONN_FETCH_MAGIC: u32 = u32::from_le_bytes(*b"CNF\x01");
/// First word of a hint (8 bytes: this word and 0, no descriptor): a
/// process closed its last fd of a kept end, which may be gone now (the
/// broker looks soon, in one sweep for many hints).
pub const CONN_GONE_MAGIC: u32 = u32::from_le_bytes(*b"CNG\x01");
/// Ends one fetch names at most (the descriptors of one message,
/// `shunt_fdpass::MAX_SEND`, less the answer's socket).
pub const CONN_FETCH_MAX: usize = 15;

const _: () = assert!(COUNTERS_OFFSET + CELLS * COUNTER_ROW <= SLOT_STRIDE);
const _: () = assert!(core::mem::size_of::<SegmentHeader>() <= SEGMENT_HEADER);

/// Offset, from the start of a slot, of the counter of syscall 0 in cell
/// (entry, answer): the gate's `%gs:` displacement.
pub const fn cell_offset(entry: crate::class::Entry, answer: crate::class::Answer) -> usize {
    COUNTERS_OFFSET + crate::class::cell_index(entry, answer) * COUNTER_ROW
}

/// The first page of a segment.
///
/// Invariant: every field but the atomics is written before `magic` is
/// stored (Release) and never changes afterwards, so a reader that loaded
/// `magic == SEGMENT_MAGIC` (Acquire) may read them as plain memory.
#[repr(C)]
pub struct SegmentHeader {
    pub magic: AtomicU64,
    pub version: u32,
    pub header_size: u32,
    pub slot_stride: u32,
    pub max_slots: u32,
    pub table_len: u32,
    pub cells: u32,
    pub pid: i32,
    /// One more than the highest slot ever claimed (readers scan only these).
    pub slots_high: AtomicU32,
    /// Claimed slots (the runtime core's lock-free slot allocator).
    pub slot_bitmap: [AtomicU64; SLOT_BITMAP_WORDS],
    /// File name of the program this process runs (NUL-padded), so that a
    /// report can say which program of the instance made which calls.
    pub program: [u8; 64],
    /// The bypass transport's counters ([`TR_SHM_CONNECTIONS`], …), counted
    /// by the process's runtime with `Relaxed` adds.
    pub transport: [AtomicU64; TRANSPORT_COUNTERS],
    /// Blocking waits: answered while spinning, parked, time spun (ns), then
    /// why waits parked (backoff, long gap, no token, missed, yielded,
    /// preempted), tokens taken over (asked for, stale), and the no-token parks by the
    /// holder's rank (low, ring poll, ring) — in this order, the layout of
    /// `shunt_transport::spin::WaitStats`.
    pub waits: [AtomicU64; WAIT_COUNTERS],
    /// Syscall sites rewritten into gate calls on their first trap
    /// (`shunt_core::lazy`), counted with `Relaxed` adds.
    pub rewritten: AtomicU64,
}

/// `SegmentHeader::transport[..]`: connections carried by rings.
pub const TR_SHM_CONNECTIONS: usize = 0;
/// Loopback TCP connections of a transport-enabled process that stayed on
/// the kernel (the peer is not a shunt process, or did not agree).
pub const TR_KERNEL_CONNECTIONS: usize = 1;
/// Bytes written into rings.
pub const TR_SHM_BYTES: usize = 2;
/// How many transport counters there are.
pub const TRANSPORT_COUNTERS: usize = 3;
/// How many wait counters there are (`SegmentHeader::waits`).
pub const WAIT_COUNTERS: usize = 14;

impl SegmentHeader {
    /// Fills a zeroed header and publishes it: `program` is the file name
    /// of the program (cut to 63 bytes).
    pub fn init(&mut self, pid: i32, program: &[u8]) {
        self.version = SEGMENT_VERSION;
        self.header_size = SEGMENT_HEADER as u32;
        self.slot_stride = SLOT_STRIDE as u32;
        self.max_slots = MAX_SLOTS as u32;
        self.table_len = TABLE_LEN as u32;
        self.cells = CELLS as u32;
        self.pid = pid;
        let n = program.len().min(self.program.len() - 1);
        self.program[..n].copy_from_slice(&program[..n]);
        self.program[n] = 0;
        self.magic.store(SEGMENT_MAGIC, Ordering::Release);
    }

    /// The program's file name.
    pub fn program_name(&self) -> &str {
        let n = self.program.iter().position(|&c| c == 0).unwrap_or(self.program.len());
        core::str::from_utf8(&self.program[..n]).unwrap_or("?")
    }
}

/// Why a segment cannot be read.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum SegmentError {
    /// The file is shorter than its header says.
    TooShort,
    /// The header is not complete yet (a process that is starting, or one
    /// killed before it counted anything).
    Unpublished,
    /// Not a stats segment.
    BadMagic,
    /// Written by another version of the runtime.
    Version(u32),
    /// Another table size or slot layout.
    Geometry,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::TooShort => f.write_str("segment file is truncated"),
            SegmentError::Unpublished => f.write_str("segment header is not written yet"),
            SegmentError::BadMagic => f.write_str("not a shunt stats segment"),
            SegmentError::Version(v) => write!(f, "segment version {v} is not supported"),
            SegmentError::Geometry => f.write_str("segment geometry does not match this runtime"),
        }
    }
}

/// A checked view of one segment: its header, and the words of its slots.
pub struct Segment<'a> {
    words: &'a [AtomicU64],
    header: &'a SegmentHeader,
    high: usize,
}

impl<'a> Segment<'a> {
    /// Checks the header of the segment in `words` (its first
    /// [`SEGMENT_HEADER`] bytes at least, 8-byte aligned by type).
    pub fn new(words: &'a [AtomicU64]) -> Result<Segment<'a>, SegmentError> {
        if words.len() * 8 < SEGMENT_HEADER {
            return Err(SegmentError::TooShort);
        }
        match words[0].load(Ordering::Acquire) {
            0 => return Err(SegmentError::Unpublished),
            SEGMENT_MAGIC => {}
            _ => return Err(SegmentError::BadMagic),
        }
        // SAFETY: `words` holds at least SEGMENT_HEADER >= size_of::<SegmentHeader>()
        // bytes, aligned to 8 (SegmentHeader's alignment). The magic was
        // published (loaded with Acquire above), so by the header's invariant
        // its plain fields are complete and never written again; the others
        // are atomics.
        let header = unsafe { &*(words.as_ptr() as *const SegmentHeader) };
        if header.version != SEGMENT_VERSION {
            return Err(SegmentError::Version(header.version));
        }
        if header.slot_stride as usize != SLOT_STRIDE
            || header.table_len as usize != TABLE_LEN
            || header.cells as usize != CELLS
            || header.header_size as usize != SEGMENT_HEADER
        {
            return Err(SegmentError::Geometry);
        }
        let high = (header.slots_high.load(Ordering::Acquire) as usize).min(MAX_SLOTS);
        if words.len() * 8 < SEGMENT_HEADER + high * SLOT_STRIDE {
            return Err(SegmentError::TooShort);
        }
        Ok(Segment { words, header, high })
    }

    pub fn header(&self) -> &SegmentHeader {
        self.header
    }

    /// How many words of the segment hold data: the header and the slots
    /// below the high-water mark.
    pub fn used_words(&self) -> usize {
        (SEGMENT_HEADER + self.high * SLOT_STRIDE) / 8
    }

    /// Calls `f(cell, nr, count)` for every counter of every used slot.
    pub fn for_each_counter(&self, mut f: impl FnMut(usize, usize, u64)) {
        for slot in 0..self.high {
            let base = (SEGMENT_HEADER + slot * SLOT_STRIDE + COUNTERS_OFFSET) / 8;
            for cell in 0..CELLS {
                let row = base + cell * COUNTER_ROW / 8;
                for (nr, w) in self.words[row..row + TABLE_LEN].iter().enumerate() {
                    f(cell, nr, w.load(Ordering::Relaxed));
                }
            }
        }
    }
}

/// Summed counters of one or more segments: the cells, from which the
/// report's classes are derived.
#[derive(Clone)]
pub struct Totals {
    pub cells: [[u64; TABLE_LEN]; CELLS],
    pub processes: u64,
    /// The transport counters, summed (indices `TR_*`).
    pub transport: [u64; TRANSPORT_COUNTERS],
    /// Waits: spun, parked, spin_ns, park_backoff, park_long_gap,
    /// park_no_token, park_missed, park_yielded, park_preempted, took_token,
    /// took_stale, no_token_low, no_token_ring_poll, no_token_ring.
    pub waits: [u64; WAIT_COUNTERS],
    /// Sites rewritten on their first trap, summed.
    pub rewritten: u64,
}

impl Totals {
    pub const fn new() -> Self {
        Totals { cells: [[0; TABLE_LEN]; CELLS], processes: 0, transport: [0; TRANSPORT_COUNTERS], waits: [0; WAIT_COUNTERS], rewritten: 0 }
    }

    /// Adds the counters of one segment (one more process).
    pub fn add(&mut self, seg: &Segment<'_>) {
        seg.for_each_counter(|cell, nr, n| self.cells[cell][nr] += n);
        let h = seg.header();
        for (t, w) in self.transport.iter_mut().zip(h.transport.iter()) {
            *t += w.load(Ordering::Relaxed);
        }
        for (t, w) in self.waits.iter_mut().zip(h.waits.iter()) {
            *t += w.load(Ordering::Relaxed);
        }
        self.rewritten += h.rewritten.load(Ordering::Relaxed);
        self.processes += 1;
    }

    /// Adds the counters of the segment in `words`.
    pub fn add_segment(&mut self, words: &[AtomicU64]) -> Result<(), SegmentError> {
        self.add(&Segment::new(words)?);
        Ok(())
    }

    /// Adds another total.
    pub fn merge(&mut self, other: &Totals) {
        for (mine, theirs) in self.cells.iter_mut().zip(other.cells.iter()) {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m += t;
            }
        }
        self.processes += other.processes;
        for (m, t) in self.transport.iter_mut().zip(other.transport.iter()) {
            *m += t;
        }
        for (m, t) in self.waits.iter_mut().zip(other.waits.iter()) {
            *m += t;
        }
        self.rewritten += other.rewritten;
    }

    /// Whether any transport counter moved.
    pub fn has_transport(&self) -> bool {
        self.transport.iter().any(|&n| n != 0)
    }

    /// Whether any wait was counted.
    pub fn has_waits(&self) -> bool {
        self.waits.iter().any(|&n| n != 0)
    }

    /// The count of `class` for syscall `nr`.
    pub fn get(&self, class: Class, nr: usize) -> u64 {
        ALL_CELLS
            .iter()
            .enumerate()
            .filter(|(_, (e, a))| class.includes(*e, *a))
            .map(|(i, _)| self.cells[i][nr])
            .sum()
    }

    /// The count of `class` over all syscalls.
    pub fn total(&self, class: Class) -> u64 {
        (0..TABLE_LEN).map(|nr| self.get(class, nr)).sum()
    }
}

impl Default for Totals {
    fn default() -> Self {
        Self::new()
    }
}
