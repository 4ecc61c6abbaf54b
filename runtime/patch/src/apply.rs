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
        } else if p.p_type == libc::PT_NOTE && build_id.is_none() {
            // SAFETY: a PT_NOTE segment lies in a PT_LOAD of the loaded object.
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
        if ty == NT_GNU_BUILD_ID && namesz == 4 && &notes[12..16] == b"GNU\0" {
            return Some(&notes[name_end..name_end + descsz]);
        }
        notes = &notes[desc_end..];
    }
    None
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

/// Patches every loaded object for which a plan exists. Call once, after
/// `shunt_install::install` and while the process is single-threaded (the
/// `libshunt.so` constructor). Never fails: what it cannot patch is left to
/// the trap fallback and listed in the report.
pub fn apply_loaded() -> Report {
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
    let dirs = plan_dirs(own_dir().as_deref());
    let gate = shunt_core::gate::gate_address() as u64;
    for obj in &loaded {
        let Some(id) = &obj.build_id else { continue };
        let file = plan_file_name(id);
        let Some(path) = dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) else {
            if is_glibc(&obj.name) {
                report.missing.push(format!("{} ({id})", obj.name));
            }
            continue;
        };
        let mut o = ObjectReport { name: obj.name.clone(), build_id: id.clone(), plan: path.clone(), ..Default::default() };
        let t0 = std::time::Instant::now();
        let plan = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| Plan::parse(&t).map_err(|e| e.to_string()));
        o.parse_micros = t0.elapsed().as_micros() as u64;
        let t1 = std::time::Instant::now();
        match plan {
            Err(e) => o.skip(format!("unreadable plan: {e}"), 1),
            Ok(plan) if plan.build_id != *id => o.skip("the plan is for another build-id".into(), plan.sites.len()),
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
/// The process is single-threaded (no thread runs the text being
/// rewritten), `obj` describes a loaded object, `gate` is the gate's
/// address.
unsafe fn apply_object(obj: &Loaded, plan: &Plan, gate: u64, o: &mut ObjectReport) -> Result<(), String> {
    if plan.sites.is_empty() {
        return Ok(());
    }
    // 1. Every site lies in the inner pages of one executable segment and
    //    still holds its original bytes.
    let exec: Vec<(u64, u64, u32)> = obj.loads.iter().copied().filter(|l| l.2 & libc::PF_X != 0).collect();
    let mut segs_used = vec![false; exec.len()];
    for s in &plan.sites {
        s.check()?;
        let end = s.at + s.len as u64;
        let k = exec
            .iter()
            .position(|&(v, m, _)| s.at >= page_up(v) && end <= page_down(v + m))
            .ok_or_else(|| format!("site {:#x} is not inside an executable segment", s.at))?;
        segs_used[k] = true;
        // SAFETY: the site lies inside an executable (readable) segment of
        // the loaded object (checked just above).
        let now = unsafe { core::slice::from_raw_parts((obj.base + s.at) as *const u8, s.len) };
        if now != &s.orig[..] {
            return Err(format!("bytes at {:#x} differ from the plan (another glibc build?)", s.at));
        }
    }
    // 2. Trampolines, in an executable mapping within rel32 reach.
    let (lo, hi) = exec
        .iter()
        .zip(&segs_used)
        .filter(|(_, u)| **u)
        .fold((u64::MAX, 0), |(lo, hi), (&(v, m, _), _)| (lo.min(obj.base + v), hi.max(obj.base + v + m)));
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
    let mut jumps = Vec::with_capacity(plan.sites.len());
    for (s, &off) in plan.sites.iter().zip(&offsets) {
        let here = area + off as u64;
        let site_addr = obj.base + s.at;
        let t = s.write_trampoline(&mut tramp[off..], here, area, site_addr + s.len as u64);
        let (Some(()), Some(j)) = (t, s.jump(site_addr, here)) else {
            // SAFETY: the area mapped above, not used yet.
            unsafe { raw::munmap(area as usize, area_len) };
            return Err("trampolines out of rel32 reach".into());
        };
        jumps.push((site_addr, j));
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
    // 3. Rewrite the sites. Between the two mprotects only runtime code runs
    //    (raw syscalls, `rep movsb`): if the kernel refuses a writable and
    //    executable text, the text is writable but not executable meanwhile.
    let mut pages: Vec<u64> = jumps.iter().flat_map(|(a, j)| [page_down(*a), page_down(a + j.len() as u64 - 1)]).collect();
    pages.sort_unstable();
    pages.dedup();
    for (k, &(v, m, flags)) in exec.iter().enumerate() {
        if !segs_used[k] {
            continue;
        }
        let (start, end) = (page_up(obj.base + v), page_down(obj.base + v + m));
        let len = (end - start) as usize;
        let prot = prot_of(flags);
        // SAFETY: glibc's text pages, which no Rust reference points into;
        // the process is single-threaded, and only runtime code (outside
        // this text) runs until the protection is restored below.
        let mut r = unsafe { raw::mprotect(start as usize, len, prot | libc::PROT_WRITE) };
        if r == -(libc::EACCES as i64) {
            // SAFETY: as above.
            r = unsafe { raw::mprotect(start as usize, len, libc::PROT_READ | libc::PROT_WRITE) };
        }
        if r < 0 {
            return Err(format!("cannot make the text writable (errno {})", -r));
        }
        for (addr, j) in &jumps {
            if *addr >= start && *addr < end {
                // SAFETY: the site's bytes, in the text made writable above.
                unsafe { mem::copy(*addr as *mut u8, j.as_ptr(), j.len()) };
                o.patched += 1;
            }
        }
        // SAFETY: as above.
        let r = unsafe { raw::mprotect(start as usize, len, prot) };
        if r < 0 {
            shunt_core::events::fatal(b"cannot restore the protection of glibc's text after patching");
        }
    }
    o.trampoline_bytes = size;
    o.cow_pages = pages.len();
    Ok(())
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

