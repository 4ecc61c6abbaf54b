//! Applying plans to the objects loaded in this process.

use shunt_core::{mem, raw};

use crate::dirs::{own_dir, plan_dirs, plan_file_name};
use crate::plan::*;
use crate::report::{ObjectReport, Report};


/// A loaded object, from `dl_iterate_phdr`.
struct Loaded {
    name: String,
    base: u64,
    /// (vaddr, memsz, flags) of PT_LOAD segments.
    loads: Vec<(u64, u64, u32)>,
    build_id: Option<String>,
}

const PAGE: u64 = 4096;
fn page_down(a: u64) -> u64 {
    a & !(PAGE - 1)
}
fn page_up(a: u64) -> u64 {
    (a + PAGE - 1) & !(PAGE - 1)
}

/// `dl_iterate_phdr`'s callback.
///
/// # Safety
/// Called by glibc only: `info` describes a loaded object (its name, and
/// its program headers mapped with it), `data` is the `Vec<Loaded>` that
/// [`apply_loaded`] passed.
unsafe extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> i32 {
    // SAFETY: the caller's promise; the Vec is borrowed by nothing else
    // while dl_iterate_phdr runs.
    let (out, info) = unsafe { (&mut *(data as *mut Vec<Loaded>), &*info) };
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: glibc's NUL-terminated object name.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
    };
    // SAFETY: the object's program headers, mapped while it is loaded.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let base = info.dlpi_addr;
    let mut loads = Vec::new();
    let mut build_id = None;
    for p in phdrs {
        if p.p_type == libc::PT_LOAD {
            loads.push((p.p_vaddr, p.p_memsz, p.p_flags));
        }
    }
    for p in phdrs {
        if p.p_type != libc::PT_NOTE || build_id.is_some() {
            continue;
        }
        // A note is read only where a readable PT_LOAD maps it: the headers
        // of a hostile library may point it anywhere (the kernel and ld.so
        // never read it, so such a library loads).
        let inside = p.p_vaddr.checked_add(p.p_memsz).is_some_and(|end| {
            loads.iter().any(|&(v, m, f)| f & libc::PF_R != 0 && p.p_vaddr >= v && v.checked_add(m).is_some_and(|e| end <= e))
        });
        if inside {
            // SAFETY: the notes lie inside a readable PT_LOAD segment of
            // the loaded object (checked just above), mapped while it is loaded.
            let notes = unsafe { core::slice::from_raw_parts((base + p.p_vaddr) as *const u8, p.p_memsz as usize) };
            build_id = gnu_build_id(notes).map(hex);
        }
    }
    out.push(Loaded { name, base, loads, build_id });
    0
}

/// The GNU build-id in a run of ELF notes.
pub fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let word = |i: usize| u32::from_le_bytes([notes[i], notes[i + 1], notes[i + 2], notes[i + 3]]) as usize;
        let (namesz, descsz, ty) = (word(0), word(4), word(8) as u32);
        let name_end = 12 + align4(namesz);
        let desc_end = name_end.checked_add(align4(descsz))?;
        if desc_end > notes.len() {
            return None;
        }
        // (an empty build-id identifies nothing: no build-id)
        if ty == NT_GNU_BUILD_ID && namesz == 4 && &notes[12..16] == b"GNU\0" && descsz > 0 {
            return Some(&notes[name_end..name_end + descsz]);
        }
        notes = &notes[desc_end..];
    }
    None
}

/// The file of a loaded object: its name, or the executable for the main
/// program (whose name is empty); `None` for the vDSO and other objects
/// without a file.
fn object_file(name: &str) -> Option<std::path::PathBuf> {
    if name.is_empty() {
        return std::fs::read_link("/proc/self/exe").ok();
    }
    let p = std::path::Path::new(name);
    (p.is_absolute() && p.is_file()).then(|| p.to_path_buf())
}

/// Whether a loaded object is one of glibc's (for the "no plan" note).
fn is_glibc(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.starts_with("libc.so") || file.starts_with("ld-linux")
}

extern "C" {
    /// glibc 2.32+: cleared when the process creates its first thread.
    static __libc_single_threaded: libc::c_char;
}

/// Makes the plan of a loaded object that has no plan file yet: given the
/// object's file and the build-id the loaded object carries (if any), the
/// plan (keyed as the file is), or why not. The planner lives outside this
/// crate (`shunt_glibc_patch`), which depends on it.
pub type PlanMaker<'a> = &'a dyn Fn(&std::path::Path, Option<&str>) -> Result<Plan, String>;

/// The loaded objects [`apply_loaded`] has looked at, by (load base, name):
/// a later call (after `dlopen`) looks only at objects loaded since.
static SEEN: std::sync::Mutex<Vec<(u64, String)>> = std::sync::Mutex::new(Vec::new());

/// Patches every loaded object for which a plan exists (glibc's only if
/// `glibc`, the others only with `make`); with `make`, also
/// every other loaded object (the program's executable, its libraries —
/// all but glibc's, whose plans `shunt run` makes, the runtime's own
/// library and the vDSO), planned by `make` on first sight. Call after
/// `shunt_install::install` (the `libshunt.so` constructor), and again after
/// `dlopen` loaded more objects: each call looks only at objects no earlier
/// call saw. Refused unless the process is single-threaded. Never fails:
/// what it cannot patch is left to the trap fallback and listed in the
/// report.
pub fn apply_loaded(glibc_too: bool, make: Option<PlanMaker>) -> Report {
    let start = std::time::Instant::now();
    let mut report = Report::default();
    if !shunt_core::installed() {
        report.refused = Some("the runtime is not installed in this process".into());
        return report;
    }
    // SAFETY: glibc's exported byte, read once.
    if unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__libc_single_threaded)) } == 0 {
        report.refused = Some("the process already runs several threads, whose GS is not set".into());
        return report;
    }
    let mut loaded: Vec<Loaded> = Vec::new();
    // SAFETY: `collect` reads what glibc gives it into `loaded`, which lives
    // across the call.
    unsafe { libc::dl_iterate_phdr(Some(collect), &mut loaded as *mut Vec<Loaded> as *mut libc::c_void) };
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    loaded.retain(|o| {
        let key = (o.base, o.name.clone());
        let new = !seen.contains(&key);
        if new {
            seen.push(key);
        }
        new
    });
    drop(seen);
    let dirs = plan_dirs(own_dir().as_deref());
    let gate = shunt_core::gate::gate_address() as u64;
    let own = apply_loaded as *const () as usize as u64;
    for obj in &loaded {
        // The runtime's own syscalls are its raw kernel route: never rewritten.
        if obj.loads.iter().any(|&(v, m, _)| own >= obj.base + v && own < obj.base + v + m) {
            continue;
        }
        let glibc = is_glibc(&obj.name);
        if (glibc && !glibc_too) || (!glibc && make.is_none()) {
            continue;
        }
        let found = obj.build_id.as_ref().and_then(|id| {
            let file = plan_file_name(id);
            dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file())
        });
        let t0 = std::time::Instant::now();
        let (plan, path) = match (found, make) {
            (Some(path), _) => {
                let plan = shunt_userfile::read_to_string(&path, shunt_userfile::limit::PLAN)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Plan::parse(&t).map_err(|e| e.to_string()));
                (plan, path)
            }
            (None, Some(make)) if !glibc => {
                let Some(file) = object_file(&obj.name) else { continue };
                (make(&file, obj.build_id.as_deref()), file)
            }
            (None, _) => {
                if let (true, Some(id)) = (glibc, &obj.build_id) {
                    report.missing.push(format!("{} ({id})", obj.name));
                }
                continue;
            }
        };
        // An object without syscall sites needs no report line.
        if plan.as_ref().is_ok_and(|p| p.sites.is_empty() && p.left.is_empty()) {
            continue;
        }
        let id = obj.build_id.clone().or_else(|| plan.as_ref().ok().map(|p| p.build_id.clone())).unwrap_or_default();
        let name = match object_file(&obj.name) {
            Some(f) if obj.name.is_empty() => f.display().to_string(),
            _ => obj.name.clone(),
        };
        let mut o = ObjectReport { name, build_id: id.clone(), plan: path.clone(), ..Default::default() };
        o.parse_micros = t0.elapsed().as_micros() as u64;
        let t1 = std::time::Instant::now();
        match plan {
            Err(e) => o.skip(format!("unreadable plan: {e}"), 1),
            Ok(plan) if plan.build_id != id => o.skip("the plan is for another build-id".into(), plan.sites.len()),
            Ok(plan) => {
                for l in &plan.left {
                    o.skip(format!("{}: {}", l.status.as_str(), l.reason), 1);
                }
                // SAFETY: single-threaded (checked above), `obj` was just
                // listed by the dynamic linker, `gate` is the gate.
                if let Err(e) = unsafe { apply_object(obj, &plan, gate, &mut o) } {
                    o.skip(format!("plan refused: {e}"), plan.sites.len());
                }
            }
        }
        o.apply_micros = t1.elapsed().as_micros() as u64;
        report.patched += o.patched;
        report.skipped += o.skipped_total();
        report.objects.push(o);
    }
    report.micros = start.elapsed().as_micros() as u64;
    report
}

/// Applies `plan` to `obj`: all sites or none.
///
/// # Safety
/// As [`apply_plan`]; `obj` describes a loaded object.
unsafe fn apply_object(obj: &Loaded, plan: &Plan, gate: u64, o: &mut ObjectReport) -> Result<(), String> {
    // SAFETY: the caller's promise.
    unsafe { apply_plan(&Mapped { base: obj.base, loads: &obj.loads }, plan, gate, o) }
}

/// An object as mapped in this process: what a plan is applied to.
pub struct Mapped<'a> {
    /// What the plan's offsets are relative to (0 for a fixed-address
    /// executable, the load bias of a PIE or shared object).
    pub base: u64,
    /// `(vaddr, memsz, p_flags)` of its PT_LOAD segments, as mapped.
    pub loads: &'a [(u64, u64, u32)],
}

impl Mapped<'_> {
    /// The pages `[start, end)` of segment `k` that no other segment of the
    /// object touches: changing their protection changes nothing else.
    fn own_pages(&self, k: usize) -> (u64, u64) {
        let (v, m, _) = self.loads[k];
        let (mut start, mut end) = (page_down(self.base + v), page_up(self.base + v + m));
        for (i, &(ov, om, _)) in self.loads.iter().enumerate() {
            if i == k {
                continue;
            }
            let (os, oe) = (page_down(self.base + ov), page_up(self.base + ov + om));
            if os < start + PAGE && oe > start {
                start += PAGE;
            }
            if os < end && oe > end - PAGE && end > start {
                end -= PAGE;
            }
        }
        (start, end.max(start))
    }
}

/// Applies `plan` to the mapped object `obj`: all sites or none. Every site
/// must lie in the pages of one executable segment that no other segment
/// shares, and hold its original bytes, before anything is written.
///
/// W^X is kept: trampolines are written into a fresh read-write mapping that
/// then becomes read-execute; the text pages holding sites become read-write
/// (never writable and executable), get their jumps, and get their
/// protection back, a run of pages at a time. Signals are blocked meanwhile,
/// so no handler can run code from a page that is not executable; between
/// the two `mprotect`s of a run only runtime code runs (raw system calls and
/// `mem::copy`, none of it in the object).
///
/// # Safety
/// No other thread runs, or can start running, the text being rewritten
/// (the process is single-threaded, or the caller has stopped the others);
/// `obj` describes memory mapped as it says; `gate` is the gate's address,
/// and every thread that will run the patched text has its `GS` set.
pub unsafe fn apply_plan(obj: &Mapped, plan: &Plan, gate: u64, o: &mut ObjectReport) -> Result<(), String> {
    if plan.sites.is_empty() {
        return Ok(());
    }
    // 1. Every site lies in pages of one executable segment that no other
    //    segment shares, and still holds its original bytes.
    let exec: Vec<usize> = (0..obj.loads.len()).filter(|&k| obj.loads[k].2 & libc::PF_X != 0).collect();
    let spans: Vec<(u64, u64)> = exec.iter().map(|&k| obj.own_pages(k)).collect();
    let mut segs_used = vec![false; exec.len()];
    let mut seg_of = Vec::with_capacity(plan.sites.len());
    for s in &plan.sites {
        s.check()?;
        let (start, end) = (obj.base + s.at, obj.base + s.at + s.len as u64);
        let k = exec
            .iter()
            .enumerate()
            .position(|(i, &k)| {
                let (v, m, _) = obj.loads[k];
                start >= obj.base + v && end <= obj.base + v + m && start >= spans[i].0 && end <= spans[i].1
            })
            .ok_or_else(|| format!("site {:#x} is not inside an executable segment", s.at))?;
        segs_used[k] = true;
        seg_of.push(exec[k]);
        // SAFETY: the site lies inside an executable (readable) segment of
        // the mapped object (checked just above).
        let now = unsafe { core::slice::from_raw_parts(start as *const u8, s.len) };
        if now != &s.orig[..] {
            return Err(format!("bytes at {:#x} differ from the plan (another build of the object?)", s.at));
        }
    }
    // 2. Trampolines, in an executable mapping within rel32 reach.
    let (lo, hi) = exec
        .iter()
        .zip(&segs_used)
        .filter(|(_, u)| **u)
        .fold((u64::MAX, 0), |(lo, hi), (&k, _)| {
            let (v, m, _) = obj.loads[k];
            (lo.min(obj.base + v), hi.max(obj.base + v + m))
        });
    let mut offsets = Vec::with_capacity(plan.sites.len());
    let mut size = SLOT_AREA;
    for s in &plan.sites {
        offsets.push(size);
        size += s.trampoline_len().next_multiple_of(TRAMP_ALIGN);
    }
    let area_len = page_up(size as u64) as usize;
    // SAFETY: map_near maps fresh memory only (MAP_FIXED_NOREPLACE).
    let area = unsafe { map_near(lo, hi, area_len) }.ok_or("no free address within ±2 GiB for the trampolines")?;
    let mut tramp = vec![INT3; area_len];
    tramp[..8].copy_from_slice(&gate.to_le_bytes());
    // (site address, index of its segment in `obj.loads`, jump bytes)
    let mut jumps = Vec::with_capacity(plan.sites.len());
    for ((s, &off), &k) in plan.sites.iter().zip(&offsets).zip(&seg_of) {
        let here = area + off as u64;
        let site_addr = obj.base + s.at;
        let t = s.write_trampoline(&mut tramp[off..], here, area, site_addr + s.len as u64);
        let (Some(()), Some(j)) = (t, s.jump(site_addr, here)) else {
            // SAFETY: the area mapped above, not used yet.
            unsafe { raw::munmap(area as usize, area_len) };
            return Err("trampolines out of rel32 reach".into());
        };
        jumps.push((site_addr, k, j));
    }
    // SAFETY: the area is `area_len` writable bytes mapped above.
    unsafe { mem::copy(area as *mut u8, tramp.as_ptr(), area_len) };
    // SAFETY: the area, which no Rust reference points into.
    let r = unsafe { raw::mprotect(area as usize, area_len, libc::PROT_READ | libc::PROT_EXEC) };
    if r < 0 {
        // SAFETY: as above.
        unsafe { raw::munmap(area as usize, area_len) };
        return Err(format!("cannot make the trampolines executable (errno {})", -r));
    }
    // 3. Rewrite the sites, a run of consecutive pages of one segment at a
    //    time: (first page, end, segment).
    let mut pages: Vec<(u64, usize)> =
        jumps.iter().flat_map(|&(a, k, ref j)| [(page_down(a), k), (page_down(a + j.len() as u64 - 1), k)]).collect();
    pages.sort_unstable();
    pages.dedup();
    let mut runs: Vec<(u64, u64, usize)> = Vec::new();
    for &(p, k) in &pages {
        match runs.last_mut() {
            Some((_, end, rk)) if *end == p && *rk == k => *end = p + PAGE,
            _ => runs.push((p, p + PAGE, k)),
        }
    }
    let _blocked = SignalsBlocked::new();
    for &(start, end, k) in &runs {
        let len = (end - start) as usize;
        let prot = prot_of(obj.loads[k].2);
        // SAFETY: text pages of the object that no Rust reference points
        // into and no other segment shares; no other thread runs them (the
        // caller's promise), signals are blocked, and only runtime code runs
        // until the protection is restored below.
        let r = unsafe { raw::mprotect(start as usize, len, libc::PROT_READ | libc::PROT_WRITE) };
        if r < 0 {
            return Err(format!("cannot make the text writable (errno {})", -r));
        }
        for (addr, _, j) in jumps.iter().filter(|(a, _, _)| *a >= start && *a < end) {
            // SAFETY: the site's bytes, in the text made writable above
            // (a jump crossing into the next page: that page is in the run).
            unsafe { mem::copy(*addr as *mut u8, j.as_ptr(), j.len()) };
            o.patched += 1;
        }
        // SAFETY: as above.
        let r = unsafe { raw::mprotect(start as usize, len, prot) };
        if r < 0 {
            shunt_core::events::fatal(b"cannot restore the protection of rewritten text");
        }
    }
    o.trampoline_bytes = size;
    o.cow_pages = pages.len();
    Ok(())
}

/// All signals blocked (raw `rt_sigprocmask`) while it lives; the old mask
/// back on drop.
struct SignalsBlocked(u64);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        let all: u64 = !0;
        let mut old: u64 = 0;
        // SAFETY: rt_sigprocmask reads and writes the two live locals (the
        // kernel's 8-byte sigset); SIGKILL/SIGSTOP stay unblockable.
        unsafe {
            raw::syscall4(
                shunt_abi::syscalls::nr::RT_SIGPROCMASK,
                libc::SIG_SETMASK as u64,
                &all as *const u64 as u64,
                &mut old as *mut u64 as u64,
                8,
            )
        };
        SignalsBlocked(old)
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: as in `new`, restoring the mask saved there.
        unsafe {
            raw::syscall4(shunt_abi::syscalls::nr::RT_SIGPROCMASK, libc::SIG_SETMASK as u64, &self.0 as *const u64 as u64, 0, 8)
        };
    }
}

fn prot_of(flags: u32) -> i32 {
    let mut p = 0;
    if flags & libc::PF_R != 0 {
        p |= libc::PROT_READ;
    }
    if flags & libc::PF_W != 0 {
        p |= libc::PROT_WRITE;
    }
    if flags & libc::PF_X != 0 {
        p |= libc::PROT_EXEC;
    }
    p
}

/// Maps `len` bytes read-write somewhere every byte of which is within rel32
/// reach of every byte of `[lo, hi)`: first just above `hi`, then below `lo`,
/// stepping 1 MiB at a time, with `MAP_FIXED_NOREPLACE` (never over a
/// mapping).
///
/// # Safety
/// None beyond a system call's: the mapping never replaces another.
unsafe fn map_near(lo: u64, hi: u64, len: usize) -> Option<u64> {
    const REACH: u64 = (1 << 31) - (1 << 24); // a margin below 2 GiB
    const STEP: u64 = 1 << 20;
    let fits = |a: u64| a >= hi.saturating_sub(REACH) && a + len as u64 <= lo + REACH;
    let above = (0..256).map(|k| page_up(hi) + k * STEP);
    let below = (1..256).filter_map(|k| page_down(lo).checked_sub(k * STEP + len as u64));
    for hint in above.chain(below) {
        if !fits(hint) {
            continue;
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping.
        let r = unsafe { raw::mmap(
            hint as usize,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        ) };
        if r < 0 {
            continue;
        }
        if r as u64 == hint {
            return Some(hint);
        }
        // An old kernel took the flag as a hint and mapped elsewhere.
        // SAFETY: the mapping just made, not used.
        unsafe { raw::munmap(r as usize, len) };
    }
    None
}

