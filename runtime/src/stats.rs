//! Syscall statistics: the per-process segment, merging, and the JSON report.
//!
//! Each process of an instance maps a *segment* file, `<instance>/<pid>-<n>.seg`,
//! `MAP_SHARED`. Its header is followed by one 32 KiB slot per thread (see
//! `layout.rs`), in which the gate increments plain per-thread counters. The
//! file outlives the process, so the supervisor (`shunt run`) — or the root
//! process itself in stand-alone mode — sums all segments when the instance
//! exits, including processes killed by a signal.
//!
//! Report format (DESIGN.md):
//! `{"redirected": N, "emulated": N, "passthrough": N, "trapped": N, "denied": N,
//!   "processes": N, "by_syscall": {"getpid": {"redirected": N, ...}, ...}}`

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64};

use crate::layout::*;
use crate::syscalls::{name_of, TABLE_LEN};

pub const SEGMENT_MAGIC: [u8; 8] = *b"SHUNTSG1";
pub const SEGMENT_VERSION: u32 = 3;

/// The first page of a segment.
#[repr(C)]
pub struct SegmentHeader {
    pub magic: [u8; 8],
    pub version: u32,
    pub header_size: u32,
    pub slot_stride: u32,
    pub max_slots: u32,
    pub table_len: u32,
    pub classes: u32,
    pub pid: i32,
    /// One more than the highest slot ever claimed (readers scan only these).
    pub slots_high: AtomicU32,
    /// Calls made by threads without a slot (never expected; reported if seen).
    pub unaccounted: AtomicU64,
    pub slot_bitmap: [AtomicU64; MAX_SLOTS / 64],
    /// File name of the program this process runs (NUL-padded), so that a
    /// report can say which program of the instance made which calls.
    pub program: [u8; 64],
}
const _: () = assert!(core::mem::size_of::<SegmentHeader>() <= SEGMENT_HEADER);

impl SegmentHeader {
    /// The program's file name.
    pub fn program_name(&self) -> &str {
        let n = self.program.iter().position(|&c| c == 0).unwrap_or(self.program.len());
        core::str::from_utf8(&self.program[..n]).unwrap_or("?")
    }

    /// Fills a zeroed header.
    pub fn init(&mut self, pid: i32) {
        self.magic = SEGMENT_MAGIC;
        self.version = SEGMENT_VERSION;
        self.header_size = SEGMENT_HEADER as u32;
        self.slot_stride = SLOT_STRIDE as u32;
        self.max_slots = MAX_SLOTS as u32;
        self.table_len = TABLE_LEN as u32;
        self.classes = CELLS as u32;
        self.pid = pid;
    }
}

/// Summed counters of one or more segments: the cells (see `layout::CELLS`),
/// from which the report's classes are derived.
#[derive(Clone)]
pub struct Totals {
    pub cells: [[u64; TABLE_LEN]; CELLS],
    pub processes: u64,
    pub unaccounted: u64,
}

/// Per-program totals of an instance (supervisor side).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramTotals {
    pub processes: u64,
    pub by_class: [u64; COUNTER_CLASSES],
}

#[derive(Debug, PartialEq, Eq)]
pub enum SegmentError {
    TooShort,
    BadMagic,
    Version(u32),
    Geometry,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::TooShort => f.write_str("segment file is truncated"),
            SegmentError::BadMagic => f.write_str("not a shunt stats segment"),
            SegmentError::Version(v) => write!(f, "segment version {v} is not supported"),
            SegmentError::Geometry => f.write_str("segment geometry does not match this runtime"),
        }
    }
}

impl Totals {
    pub const fn new() -> Self {
        Totals { cells: [[0; TABLE_LEN]; CELLS], processes: 0, unaccounted: 0 }
    }

    /// Adds the counters of a segment image (as 8-byte words: it is read
    /// in place, so it must be aligned).
    pub fn add_segment(&mut self, words: &[u64]) -> Result<(), SegmentError> {
        let seg = unsafe { core::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 8) };
        if seg.len() < SEGMENT_HEADER {
            return Err(SegmentError::TooShort);
        }
        let hdr = unsafe { &*(seg.as_ptr() as *const SegmentHeader) };
        if hdr.magic != SEGMENT_MAGIC {
            return Err(SegmentError::BadMagic);
        }
        if hdr.version != SEGMENT_VERSION {
            return Err(SegmentError::Version(hdr.version));
        }
        if hdr.slot_stride as usize != SLOT_STRIDE
            || hdr.table_len as usize != TABLE_LEN
            || hdr.classes as usize != CELLS
        {
            return Err(SegmentError::Geometry);
        }
        let high = (hdr.slots_high.load(core::sync::atomic::Ordering::Relaxed) as usize).min(MAX_SLOTS);
        if seg.len() < SEGMENT_HEADER + high * SLOT_STRIDE {
            return Err(SegmentError::TooShort);
        }
        for slot in 0..high {
            let base = SEGMENT_HEADER + slot * SLOT_STRIDE + COUNTERS_OFFSET;
            for cell in 0..CELLS {
                let row = base + cell * COUNTER_ROW;
                let counters = unsafe {
                    core::slice::from_raw_parts(seg.as_ptr().add(row) as *const u64, TABLE_LEN)
                };
                for (t, c) in self.cells[cell].iter_mut().zip(counters) {
                    *t += *c;
                }
            }
        }
        self.processes += 1;
        self.unaccounted += hdr.unaccounted.load(core::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    pub fn total(&self, class: Counter) -> u64 {
        (0..TABLE_LEN).map(|nr| self.get(class, nr)).sum()
    }

    pub fn get(&self, class: Counter, nr: usize) -> u64 {
        ALL_CELLS
            .iter()
            .enumerate()
            .filter(|(_, (e, a))| class.includes(*e, *a))
            .map(|(i, _)| self.cells[i][nr])
            .sum()
    }

    /// Writes the JSON report. Allocation-free, so the root process can write
    /// it from its `exit_group`.
    pub fn write_json(&self, out: &mut dyn Write) -> fmt::Result {
        self.write_json_with(out, None)
    }

    /// The JSON report with one more member, `"key": <raw JSON>`, at the end.
    pub fn write_json_with(&self, out: &mut dyn Write, extra: Option<(&str, &str)>) -> fmt::Result {
        out.write_str("{")?;
        let order = [
            Counter::Redirected,
            Counter::Emulated,
            Counter::Passthrough,
            Counter::Trapped,
            Counter::Denied,
        ];
        for c in order {
            write!(out, "\"{}\": {}, ", COUNTER_NAMES[c as usize], self.total(c))?;
        }
        write!(out, "\"processes\": {}, ", self.processes)?;
        if self.unaccounted != 0 {
            write!(out, "\"unaccounted\": {}, ", self.unaccounted)?;
        }
        out.write_str("\"by_syscall\": {")?;
        let mut first = true;
        for nr in 0..TABLE_LEN {
            if order.iter().all(|&c| self.get(c, nr) == 0) {
                continue;
            }
            if !first {
                out.write_str(", ")?;
            }
            first = false;
            write!(out, "\"{}\": {{", name_of(nr as u64))?;
            for (i, &c) in order.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write!(out, "\"{}\": {}", COUNTER_NAMES[c as usize], self.get(c, nr))?;
            }
            out.write_str("}")?;
        }
        out.write_str("}")?;
        if let Some((key, raw)) = extra {
            write!(out, ", \"{key}\": {raw}")?;
        }
        out.write_str("}\n")
    }
}

impl Default for Totals {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads every segment of an instance directory (std; for the supervisor).
pub fn merge_dir(dir: &std::path::Path) -> std::io::Result<Totals> {
    merge_dir_by_program(dir).map(|(t, _)| t)
}

/// Like [`merge_dir`], also summing each program's processes separately.
pub fn merge_dir_by_program(
    dir: &std::path::Path,
) -> std::io::Result<(Totals, std::collections::BTreeMap<String, ProgramTotals>)> {
    let mut programs = std::collections::BTreeMap::<String, ProgramTotals>::new();
    let mut totals = Box::new(Totals::new());
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    for path in names {
        let Some(bytes) = read_segment(&path)? else { continue };
        let mut one = Box::new(Totals::new());
        one.add_segment(&bytes).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
        })?;
        let hdr = unsafe { &*(bytes.as_ptr() as *const SegmentHeader) };
        let p = programs.entry(hdr.program_name().to_string()).or_default();
        p.processes += 1;
        for (c, class) in [Counter::Redirected, Counter::Trapped, Counter::Emulated, Counter::Passthrough, Counter::Denied]
            .into_iter()
            .enumerate()
        {
            p.by_class[c] += one.total(class);
        }
        for cell in 0..CELLS {
            for (t, v) in totals.cells[cell].iter_mut().zip(one.cells[cell].iter()) {
                *t += v;
            }
        }
        totals.processes += 1;
        totals.unaccounted += one.unaccounted;
    }
    Ok((*totals, programs))
}

/// JSON of the per-program totals: `{"prog": {"processes": N, "redirected": N, ...}}`.
pub fn programs_json(programs: &std::collections::BTreeMap<String, ProgramTotals>) -> String {
    let mut s = String::from("{");
    for (i, (name, p)) in programs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{:?}: {{\"processes\": {}", name, p.processes));
        for (c, n) in COUNTER_NAMES.iter().enumerate() {
            s.push_str(&format!(", \"{n}\": {}", p.by_class[c]));
        }
        s.push('}');
    }
    s.push('}');
    s
}

/// Reads the used part of a segment file: the header, then the slots below
/// its high-water mark (the file is sparse and mostly unused). `None` for a
/// segment whose process has not initialised it — one being created right
/// now, or whose process was killed while creating it (it made no calls):
/// the file is still shorter than the header, or the header is all zero.
fn read_segment(path: &std::path::Path) -> std::io::Result<Option<Vec<u64>>> {
    use std::io::Read;
    fn as_bytes(w: &mut [u64]) -> &mut [u8] {
        unsafe { core::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 8) }
    }
    let mut f = std::fs::File::open(path)?;
    let mut words = vec![0u64; SEGMENT_HEADER / 8];
    match f.read_exact(as_bytes(&mut words)) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        r => r?,
    }
    let hdr = unsafe { &*(words.as_ptr() as *const SegmentHeader) };
    if hdr.magic == [0; 8] {
        return Ok(None);
    }
    let high = (hdr.slots_high.load(core::sync::atomic::Ordering::Relaxed) as usize).min(MAX_SLOTS);
    words.resize((SEGMENT_HEADER + high * SLOT_STRIDE) / 8, 0);
    f.read_exact(&mut as_bytes(&mut words)[SEGMENT_HEADER..])?;
    Ok(Some(words))
}

/// A `fmt::Write` into a fixed buffer that reports overflow as an error.
pub struct FixedBuf<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl Write for FixedBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        unsafe { crate::mem::copy(self.buf.as_mut_ptr().add(self.len), s.as_ptr(), s.len()) };
        self.len = end;
        Ok(())
    }
}

/// `parts` joined into `buf` with a NUL; the length including the NUL.
fn join(buf: &mut [u8], parts: &[&[u8]]) -> Option<usize> {
    let mut n = 0;
    for p in parts {
        if n + p.len() + 1 > buf.len() {
            return None;
        }
        buf[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    buf[n] = 0;
    Some(n + 1)
}

/// Stand-alone mode: sums the segments in `dir` and writes the report to
/// `out` (through a temporary file and `rename`), then removes `dir`. Raw
/// syscalls and no allocation: it runs inside the root process's
/// `exit_group`, perhaps from a signal handler that interrupted malloc.
/// `dir` and `out` are paths without their NUL.
pub fn write_standalone_report(dir: &[u8], out: &[u8]) -> Result<(), &'static [u8]> {
    use crate::raw::{self, close, mmap, munmap, open};
    const SCRATCH: usize = 256 * 1024;
    const TOO_LONG: &[u8] = b"stats: path too long";
    let mut path = [0u8; 4200];
    let mut dst = [0u8; 4200];
    unsafe {
        let scratch = mmap(0, SCRATCH, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if scratch < 0 {
            return Err(b"stats: no memory for the report");
        }
        let scratch = scratch as usize;
        // Scratch layout: Totals (zeroed by mmap), getdents buffer, JSON text.
        let totals = &mut *(scratch as *mut Totals);
        let dents = core::slice::from_raw_parts_mut((scratch + 32 * 1024) as *mut u8, 32 * 1024);
        let json = core::slice::from_raw_parts_mut((scratch + 64 * 1024) as *mut u8, SCRATCH - 64 * 1024);
        let result = (|| -> Result<(), &'static [u8]> {
            let n = join(&mut path, &[dir]).ok_or(TOO_LONG)?;
            let dfd = open(&path[..n], libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0);
            if dfd < 0 {
                return Err(b"stats: cannot open the instance directory");
            }
            let dfd = dfd as i32;
            loop {
                let got = raw::syscall3(libc::SYS_getdents64 as usize, dfd as u64, dents.as_mut_ptr() as u64, dents.len() as u64);
                if got <= 0 {
                    break;
                }
                let mut off = 0usize;
                while off < got as usize {
                    // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name
                    let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
                    let field = &dents[off + 19..off + reclen];
                    let name = &field[..field.iter().position(|&c| c == 0).unwrap_or(field.len())];
                    off += reclen;
                    if name == b"." || name == b".." {
                        continue;
                    }
                    let n = join(&mut path, &[dir, b"/", name]).ok_or(TOO_LONG)?;
                    if name.ends_with(b".seg") {
                        let fd = open(&path[..n], libc::O_RDONLY | libc::O_CLOEXEC, 0);
                        if fd >= 0 {
                            let m = mmap(0, SEGMENT_SIZE, libc::PROT_READ, libc::MAP_SHARED, fd as i32, 0);
                            close(fd as i32);
                            if m >= 0 {
                                let words = core::slice::from_raw_parts(m as *const u64, SEGMENT_SIZE / 8);
                                let _ = totals.add_segment(words);
                                munmap(m as usize, SEGMENT_SIZE);
                            }
                        }
                    }
                    raw::syscall1(libc::SYS_unlink as usize, path.as_ptr() as u64);
                }
            }
            close(dfd);
            join(&mut path, &[dir]).ok_or(TOO_LONG)?;
            raw::syscall1(libc::SYS_rmdir as usize, path.as_ptr() as u64);

            let mut w = FixedBuf { buf: json, len: 0 };
            totals.write_json(&mut w).map_err(|_| &b"stats: report too large"[..])?;
            let len = w.len;
            let n = join(&mut path, &[out, b".tmp"]).ok_or(TOO_LONG)?;
            let fd = open(&path[..n], libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC, 0o644);
            if fd < 0 {
                return Err(b"stats: cannot create the report file");
            }
            let wrote = raw::write_all(fd as i32, &json[..len]);
            close(fd as i32);
            join(&mut dst, &[out]).ok_or(TOO_LONG)?;
            let r = raw::syscall2(libc::SYS_rename as usize, path.as_ptr() as u64, dst.as_ptr() as u64);
            if wrote.is_err() || r < 0 {
                return Err(b"stats: could not write the report file");
            }
            Ok(())
        })();
        munmap(scratch, SCRATCH);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment with counts in two slots sums to the report DESIGN.md
    /// specifies, listing only the syscalls that were seen.
    #[test]
    fn segments_sum_to_the_report() {
        let mut words = vec![0u64; (SEGMENT_HEADER + 2 * SLOT_STRIDE) / 8];
        let hdr = unsafe { &mut *(words.as_mut_ptr() as *mut SegmentHeader) };
        hdr.init(42);
        hdr.slots_high.store(2, core::sync::atomic::Ordering::Relaxed);
        let mut set = |slot: usize, entry: Entry, answer: Answer, nr: usize, v: u64| {
            let at = (SEGMENT_HEADER + slot * SLOT_STRIDE + cell_offset(entry, answer) + nr * 8) / 8;
            words[at] = v;
        };
        set(0, Entry::Gate, Answer::Emulated, 39, 5);
        set(1, Entry::Trap, Answer::Passthrough, 0, 3);
        let mut t = Totals::new();
        t.add_segment(&words).unwrap();
        t.add_segment(&words).unwrap();
        let mut s = String::new();
        t.write_json(&mut s).unwrap();
        assert_eq!(
            s,
            "{\"redirected\": 10, \"emulated\": 10, \"passthrough\": 6, \"trapped\": 6, \"denied\": 0, \
             \"processes\": 2, \"by_syscall\": {\"read\": {\"redirected\": 0, \"emulated\": 0, \
             \"passthrough\": 6, \"trapped\": 6, \"denied\": 0}, \"getpid\": {\"redirected\": 10, \
             \"emulated\": 10, \"passthrough\": 0, \"trapped\": 0, \"denied\": 0}}}\n"
        );
        let mut bad = words.clone();
        bad[0] = 0;
        assert_eq!(Totals::new().add_segment(&bad), Err(SegmentError::BadMagic));
        assert_eq!(Totals::new().add_segment(&words[..100]), Err(SegmentError::TooShort));
    }
}
