//! The loader: runs a static ELF (a Go binary built with `CGO_ENABLED=0`)
//! inside the runtime's own process.
//!
//! A static binary has no dynamic loader to preload the runtime into, so the
//! runtime loads the binary instead: `shunt run` starts `shunt load`, which
//! installs the runtime in its own process, maps the program's segments at
//! their addresses (the shunt binary is a PIE, so 0x400000 is free; segments
//! are mapped with `MAP_FIXED_NOREPLACE` and a collision is an error), builds
//! the initial stack the kernel would (argc, argv, envp, auxv — with
//! `AT_SHUNT_ENTRY` pointing at the gate), resets the signal state the Rust
//! process set up, and jumps to the entry point on the program's stack.
//! The main thread's runtime block and `GS` come from `install`.
//!
//! An internally linked PIE (ET_DYN without an interpreter) is placed at a
//! free address and its `R_X86_64_RELATIVE` relocations applied; any other
//! relocation type is refused.
//!
//! A dynamic program whose interpreter is not glibc's (musl's
//! `/lib/ld-musl-x86_64.so.1`, which is musl's `libc.so`) is loaded as the
//! kernel would: the program and its interpreter are mapped (the
//! interpreter anywhere, the program at its address or, a PIE, anywhere),
//! neither is relocated (the interpreter relocates both), `AT_BASE` names
//! the interpreter, and the jump goes to the interpreter's entry. The
//! preload cannot serve such a program: `libshunt.so` is built on glibc.
//! glibc's own dynamic programs stay the preload's business.
//!
//! After the jump, the process belongs to the program: the Rust side's glibc
//! and thread-local storage are never used again (the program sets its own
//! `FS`), which is why the gate path uses neither.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, Rela};
use object::Endianness;

use shunt_abi::AT_SHUNT_ENTRY;

pub mod rewrite;
use shunt_core::kernel::{self, KernelSigaction};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Input(#[from] shunt_userfile::InputError),
    #[error("{0}: not an ELF file")]
    NotElf(PathBuf),
    #[error("{0}: a 32-bit ELF; shunt runs x86-64 programs")]
    Class32(PathBuf),
    #[error("{0}: built for another architecture (ELF machine {1}); shunt runs x86-64 programs")]
    Machine(PathBuf, u16),
    #[error("{0}: truncated or malformed ELF ({1})")]
    Malformed(PathBuf, String),
    #[error("{0}: not an executable (ELF type {1})")]
    NotExecutable(PathBuf, u16),
    #[error("{0}: dynamically linked with glibc; load it with its interpreter (shunt run does)")]
    Dynamic(PathBuf),
    #[error("{0}: its interpreter {1} is itself dynamic or not an ELF shared object")]
    Interpreter(PathBuf, PathBuf),
    #[error("{0}: built with cgo (static glibc inside); shunt loads pure-Go static binaries (CGO_ENABLED=0)")]
    Cgo(PathBuf),
    #[error("{0}: segment at {1:#x}..{2:#x} collides with memory the runtime already uses")]
    Collision(PathBuf, u64, u64),
    #[error("{0}: relocation type {1} is not supported (only R_X86_64_RELATIVE)")]
    Relocation(PathBuf, u32),
    #[error("{0}: cannot map memory: {1}")]
    Map(PathBuf, std::io::Error),
}

const PAGE: u64 = 4096;
/// The end of x86-64 user memory (4-level paging): no segment reaches it.
const USER_TOP: u64 = 1 << 47;
const STACK_SIZE: usize = 8 << 20;

fn down(x: u64) -> u64 {
    x & !(PAGE - 1)
}
fn up(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

/// The bytes of an ELF file: the file mapped read-only ([`Image::open`]),
/// or bytes handed over ([`Image::parse`]).
///
/// Mapping instead of reading saves the copy and the page faults of a
/// buffer as large as the file (a Go binary is ~8 MiB, 2,000 pages): the
/// checks touch only the headers, tables and notes. A file truncated while
/// it is mapped would fault the loader (SIGBUS) as it would fault the
/// program's own text — the program's file changing under it is not
/// something a start survives either way.
enum Bytes {
    Owned(Vec<u8>),
    Mapped { ptr: *const u8, len: usize },
}

impl Bytes {
    /// `file` (of `size` bytes) mapped, or read when it cannot be mapped.
    fn of_file(path: &Path, file: &std::fs::File, size: u64) -> Result<Bytes, LoadError> {
        use std::os::fd::AsRawFd;
        if size > 0 {
            // SAFETY: a fresh read-only private mapping of an open file at a
            // kernel-chosen address; it is unmapped once, in `drop`.
            let ptr = unsafe {
                libc::mmap(std::ptr::null_mut(), size as usize, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
            };
            if ptr != libc::MAP_FAILED {
                return Ok(Bytes::Mapped { ptr: ptr as *const u8, len: size as usize });
            }
        }
        Ok(Bytes::Owned(shunt_userfile::read(path, shunt_userfile::limit::ELF)?))
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            // SAFETY: `len` bytes mapped readable at `ptr` for as long as
            // `self` lives (unmapped in `drop` only).
            Bytes::Mapped { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        if let Bytes::Mapped { ptr, len } = *self {
            // SAFETY: the mapping made in `of_file`; no slice of it outlives
            // `self` (they borrow it).
            unsafe { libc::munmap(ptr as *mut _, len) };
        }
    }
}

/// A static ELF checked and ready to map.
pub struct Image {
    path: PathBuf,
    data: Bytes,
    /// The file it was read from, when its segments can be mapped from it
    /// (not on a `noexec` mount): [`Image::map`] maps them copy-on-write
    /// from the page cache instead of copying them.
    file: Option<std::fs::File>,
    pie: bool,
    entry: u64,
    phoff: u64,
    phnum: u16,
    /// (vaddr, memsz, offset, filesz, flags) of each PT_LOAD.
    loads: Vec<(u64, u64, u64, u64, u32)>,
    /// R_X86_64_RELATIVE relocations of a PIE: (offset, addend).
    relocs: Vec<(u64, i64)>,
    /// A foreign (non-glibc) interpreter, which relocates this image.
    interp: Option<PathBuf>,
}

/// Whether the segments of `file` can be mapped from it: not on a `noexec`
/// mount, where its text could not be made executable (a copy can).
fn mappable(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: statvfs is plain data; fstatvfs fills it for an open descriptor.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        libc::fstatvfs(file.as_raw_fd(), &mut st) == 0 && st.f_flag & libc::ST_NOEXEC == 0
    }
}

/// Whether `interp` (a PT_INTERP path) is glibc's dynamic loader, whose
/// programs `libshunt.so` is preloaded into.
pub fn is_glibc_interpreter(interp: &[u8]) -> bool {
    let name = interp.rsplit(|&b| b == b'/').next().unwrap_or(interp);
    name.starts_with(b"ld-linux")
}

/// The PT_INTERP path of an ELF, without its NUL.
fn interpreter_of<'d>(data: &'d [u8], hdr: &elf::FileHeader64<Endianness>, endian: Endianness) -> Option<&'d [u8]> {
    let phdrs = hdr.program_headers(endian, data).ok()?;
    let ph = phdrs.iter().find(|p| p.p_type(endian) == elf::PT_INTERP)?;
    let bytes = ph.data(endian, data).ok()?;
    Some(bytes.split(|&b| b == 0).next().unwrap_or(bytes))
}

/// Whether `data` is an x86-64 ELF the loader runs rather than the preload:
/// one without an interpreter, one whose interpreter loads no library (Go's
/// internally linked PIE), or one with an interpreter other than glibc's
/// (musl's), which `libshunt.so` cannot be preloaded into.
pub fn loader_runs(data: &[u8]) -> bool {
    let Ok(hdr) = elf::FileHeader64::<Endianness>::parse(data) else { return false };
    let Ok(endian) = hdr.endian() else { return false };
    match interpreter_of(data, hdr, endian) {
        None => true,
        Some(interp) => !is_glibc_interpreter(interp) || !needs_libraries(data, hdr, endian),
    }
}

/// Whether the dynamic section names any library (DT_NEEDED).
fn needs_libraries(data: &[u8], hdr: &elf::FileHeader64<Endianness>, endian: Endianness) -> bool {
    let Ok(phdrs) = hdr.program_headers(endian, data) else { return true };
    for ph in phdrs {
        match ph.dynamic(endian, data) {
            Ok(Some(dynamic)) => {
                if dynamic.iter().any(|d| d.d_tag(endian) == elf::DT_NEEDED) {
                    return true;
                }
            }
            Ok(None) => {}
            Err(_) => return true,
        }
    }
    false
}

impl Image {
    /// Reads and checks `path`, a program (what `shunt load` runs).
    pub fn open(path: &Path) -> Result<Image, LoadError> {
        Image::read(path, false)
    }

    /// Reads and checks `path`: a program, or (`interpreter`) the dynamic
    /// loader of one, which relocates itself.
    fn read(path: &Path, interpreter: bool) -> Result<Image, LoadError> {
        let (file, size) = shunt_userfile::open_regular(path, shunt_userfile::limit::ELF)?;
        let data = Bytes::of_file(path, &file, size)?;
        let mut image = Image::check(path, data, interpreter)?;
        image.file = mappable(&file).then_some(file);
        Ok(image)
    }

    /// Checks the ELF `data` of a program (read from `path`, which names it
    /// in errors): everything [`Image::map`] relies on is checked here, so a
    /// hostile file is refused with a message rather than crashing the
    /// loader.
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Image, LoadError> {
        Image::check(path, Bytes::Owned(data), false)
    }

    /// [`Image::parse`] of a program, or (`interpreter`) of a dynamic loader.
    fn check(path: &Path, data: Bytes, interpreter: bool) -> Result<Image, LoadError> {
        let p = || path.to_path_buf();
        if !data.starts_with(b"\x7fELF") {
            return Err(LoadError::NotElf(p()));
        }
        match data.get(4) {
            Some(2) => {}
            Some(1) => return Err(LoadError::Class32(p())),
            _ => return Err(LoadError::Malformed(p(), "no valid ELF class".into())),
        }
        let bad = |e: object::read::Error| LoadError::Malformed(p(), e.to_string());
        let hdr = elf::FileHeader64::<Endianness>::parse(&*data).map_err(bad)?;
        let endian = hdr.endian().map_err(bad)?;
        if hdr.e_machine(endian) != elf::EM_X86_64 {
            return Err(LoadError::Machine(p(), hdr.e_machine(endian).0));
        }
        let ty = hdr.e_type(endian);
        if ty != elf::ET_EXEC && ty != elf::ET_DYN {
            return Err(LoadError::NotExecutable(p(), ty.0));
        }
        let phdrs = hdr.program_headers(endian, &*data).map_err(bad)?;
        // An interpreter that loads no library is there only to relocate
        // (Go's internally linked PIE): the loader does that itself. A
        // foreign interpreter is mapped with the program and relocates it.
        let mut interp = None;
        if let Some(i) = interpreter_of(&data, hdr, endian) {
            if interpreter {
                return Err(LoadError::Interpreter(PathBuf::new(), p()));
            }
            if needs_libraries(&data, hdr, endian) {
                if is_glibc_interpreter(i) {
                    return Err(LoadError::Dynamic(p()));
                }
                interp = Some(PathBuf::from(OsStr::from_bytes(i)));
            }
        }
        if interpreter && ty != elf::ET_DYN {
            return Err(LoadError::Interpreter(PathBuf::new(), p()));
        }
        let mut loads = Vec::new();
        for ph in phdrs {
            if ph.p_type(endian) != elf::PT_LOAD {
                continue;
            }
            let (vaddr, memsz) = (ph.p_vaddr(endian), ph.p_memsz(endian));
            let (offset, filesz) = (ph.p_offset(endian), ph.p_filesz(endian));
            if filesz > memsz || offset.checked_add(filesz).is_none_or(|end| end > data.len() as u64) {
                return Err(LoadError::Malformed(p(), format!("segment at {vaddr:#x} lies outside the file")));
            }
            // The whole segment, rounded to pages, must lie in the user
            // half of the address space (no wrap-around).
            if vaddr.checked_add(memsz).is_none_or(|end| end > USER_TOP) {
                return Err(LoadError::Malformed(p(), format!("segment at {vaddr:#x} of {memsz:#x} bytes lies outside user memory")));
            }
            if vaddr % PAGE != offset % PAGE {
                return Err(LoadError::Malformed(p(), format!("segment at {vaddr:#x} is not page-congruent")));
            }
            loads.push((vaddr, memsz, offset, filesz, ph.p_flags(endian).0));
        }
        if loads.is_empty() {
            return Err(LoadError::Malformed(p(), "no loadable segment".into()));
        }
        loads.sort();
        for w in loads.windows(2) {
            if up(w[0].0 + w[0].1) > down(w[1].0) {
                return Err(LoadError::Malformed(p(), format!("segments at {:#x} and {:#x} overlap", w[0].0, w[1].0)));
            }
        }
        // cgo binaries carry glibc's start-up; they cannot share this process.
        // (A C program's own libc, static or its foreign interpreter, is
        // alone in the program's part of the process: it may.)
        let file = object::File::parse(&*data).map_err(bad)?;
        if interp.is_none() && !interpreter {
            use object::{Object, ObjectSymbol};
            let cgo = file.symbols().chain(file.dynamic_symbols()).any(|s| {
                // (pure Go has a `_cgo_init` variable too: look for cgo's C side)
                matches!(s.name(), Ok("x_cgo_init"))
            });
            if cgo {
                return Err(LoadError::Cgo(p()));
            }
        }
        let mut relocs = Vec::new();
        let pie = ty == elf::ET_DYN;
        if pie && interp.is_none() && !interpreter {
            relocs = relative_relocs(&data, hdr, endian).map_err(|e| match e {
                RelocError::Type(t) => LoadError::Relocation(p(), t),
                RelocError::Bad(m) => LoadError::Malformed(p(), m),
            })?;
            // Each relocation writes 8 bytes: they must lie in a segment
            // the image maps (the loader writes them before protecting it).
            for &(off, _) in &relocs {
                let inside = off.checked_add(8).is_some_and(|end| loads.iter().any(|l| off >= l.0 && end <= l.0 + l.1));
                if !inside {
                    return Err(LoadError::Malformed(p(), format!("relocation at {off:#x} lies outside the image's segments")));
                }
            }
        }
        Ok(Image {
            path: p(),
            entry: hdr.e_entry(endian),
            phoff: hdr.e_phoff(endian),
            phnum: hdr.e_phnum(endian),
            data,
            file: None,
            pie,
            loads,
            relocs,
            interp,
        })
    }

    /// Maps the segments; returns the load bias (0 for ET_EXEC).
    fn map(&self) -> Result<u64, LoadError> {
        let lo = down(self.loads[0].0);
        let hi = self.loads.iter().map(|l| up(l.0 + l.1)).max().unwrap_or(lo);
        let bias = if self.pie {
            // Reserve the whole span anywhere, then place segments inside it.
            // SAFETY: a fresh PROT_NONE reservation at a kernel-chosen address.
            let r = unsafe {
                libc::mmap(std::ptr::null_mut(), (hi - lo) as usize, libc::PROT_NONE,
                           libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
            };
            if r == libc::MAP_FAILED {
                return Err(LoadError::Map(self.path.clone(), std::io::Error::last_os_error()));
            }
            r as u64 - lo
        } else {
            0
        };
        let fixed = if self.pie { libc::MAP_FIXED } else { libc::MAP_FIXED_NOREPLACE };
        // Maps `len` bytes at `start` read-write: from the file at `offset`
        // (`fd`), or anonymous (`fd` -1).
        let place = |start: u64, len: usize, fd: i32, offset: u64| -> Result<(), LoadError> {
            let flags = libc::MAP_PRIVATE | fixed | if fd < 0 { libc::MAP_ANONYMOUS } else { 0 };
            // SAFETY: inside the PIE's own reservation (MAP_FIXED), or at the
            // ET_EXEC's address with MAP_FIXED_NOREPLACE (never over a mapping).
            let r = unsafe {
                libc::mmap(start as *mut _, len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, offset as libc::off_t)
            };
            if r == libc::MAP_FAILED || r as u64 != start {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EEXIST) || (r != libc::MAP_FAILED && r as u64 != start) {
                    return Err(LoadError::Collision(self.path.clone(), start, start + len as u64));
                }
                return Err(LoadError::Map(self.path.clone(), err));
            }
            Ok(())
        };
        for &(vaddr, memsz, offset, filesz, _) in &self.loads {
            let start = down(vaddr) + bias;
            let len = (up(vaddr + memsz) - down(vaddr)) as usize;
            match &self.file {
                Some(file) if filesz > 0 => {
                    use std::os::fd::AsRawFd;
                    // The file's pages, copy-on-write (shared with every
                    // other instance until written); `offset` is
                    // page-congruent with `vaddr` (checked in `check`).
                    let file_len = (up(vaddr + filesz) - down(vaddr)) as usize;
                    place(start, file_len, file.as_raw_fd(), down(offset))?;
                    // The rest of the last file page is what follows the
                    // segment in the file: zero, as a copy would leave it.
                    let tail = vaddr + filesz + bias;
                    let tail_len = (up(vaddr + filesz) - (vaddr + filesz)) as usize;
                    // SAFETY: the end of the page just mapped read-write.
                    unsafe { std::ptr::write_bytes(tail as *mut u8, 0, tail_len) };
                    if file_len < len {
                        place(start + file_len as u64, len - file_len, -1, 0)?;
                    }
                }
                _ => {
                    place(start, len, -1, 0)?;
                    // SAFETY: the segment was mapped read-write just above,
                    // `filesz <= memsz` bytes from `offset`, which lies inside
                    // `data` (checked in `check`).
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            self.data.as_ptr().add(offset as usize),
                            (vaddr + bias) as *mut u8,
                            filesz as usize,
                        );
                    }
                }
            }
        }
        for &(off, addend) in &self.relocs {
            // SAFETY: a relocation inside a mapped segment of the image (the
            // offsets come from its own RELA table), still read-write.
            unsafe { ((off + bias) as *mut u64).write_unaligned((addend as u64).wrapping_add(bias)) };
        }
        for &(vaddr, memsz, _, _, pflags) in &self.loads {
            let mut prot = 0;
            if pflags & elf::PF_R.0 != 0 {
                prot |= libc::PROT_READ;
            }
            if pflags & elf::PF_W.0 != 0 {
                prot |= libc::PROT_WRITE;
            }
            if pflags & elf::PF_X.0 != 0 {
                prot |= libc::PROT_EXEC;
            }
            let start = down(vaddr) + bias;
            let len = (up(vaddr + memsz) - down(vaddr)) as usize;
            // SAFETY: the image's own segments, which no Rust reference points into.
            if unsafe { libc::mprotect(start as *mut _, len, prot) } != 0 {
                return Err(LoadError::Map(self.path.clone(), std::io::Error::last_os_error()));
            }
        }
        Ok(bias)
    }

    /// Where its first segment's page starts once mapped at `bias`: the
    /// address of its ELF header, what `AT_BASE` names for an interpreter.
    fn base(&self, bias: u64) -> u64 {
        down(self.loads[0].0) + bias
    }

    /// Address of the program headers once mapped (for AT_PHDR).
    fn phdr_addr(&self, bias: u64) -> u64 {
        for &(vaddr, _, offset, filesz, _) in &self.loads {
            if self.phoff >= offset && self.phoff < offset + filesz {
                return vaddr + (self.phoff - offset) + bias;
            }
        }
        0
    }
}

enum RelocError {
    Type(u32),
    Bad(String),
}

/// The R_X86_64_RELATIVE entries of `.rela.dyn` (found through PT_DYNAMIC).
fn relative_relocs(
    data: &[u8],
    hdr: &elf::FileHeader64<Endianness>,
    endian: Endianness,
) -> Result<Vec<(u64, i64)>, RelocError> {
    let bad = |e: object::read::Error| RelocError::Bad(e.to_string());
    let phdrs = hdr.program_headers(endian, data).map_err(bad)?;
    let mut out = Vec::new();
    for ph in phdrs {
        let Some(dynamic) = ph.dynamic(endian, data).map_err(bad)? else { continue };
        let (mut rela, mut relasz) = (0u64, 0u64);
        for d in dynamic {
            let tag = d.d_tag(endian);
            if tag == elf::DT_RELA {
                rela = d.d_val(endian);
            } else if tag == elf::DT_RELASZ {
                relasz = d.d_val(endian);
            } else if (tag == elf::DT_REL || tag == elf::DT_JMPREL) && d.d_val(endian) != 0 {
                return Err(RelocError::Bad("REL/JMPREL relocations in a static binary".into()));
            }
        }
        if rela == 0 || relasz == 0 {
            continue;
        }
        // DT_RELA is an address; find its file offset through the segments.
        let off = phdrs
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .find(|p| rela >= p.p_vaddr(endian) && rela - p.p_vaddr(endian) < p.p_filesz(endian))
            .map(|p| rela - p.p_vaddr(endian) + p.p_offset(endian))
            .ok_or_else(|| RelocError::Bad("DT_RELA outside the file".into()))?;
        let n = relasz as usize / core::mem::size_of::<elf::Rela64<Endianness>>();
        let rest = data.get(off as usize..).ok_or_else(|| RelocError::Bad("DT_RELA outside the file".into()))?;
        let table: &[elf::Rela64<Endianness>] = object::pod::slice_from_bytes(rest, n)
            .map(|(t, _)| t)
            .map_err(|_| RelocError::Bad("truncated relocation table".into()))?;
        for r in table {
            let ty = r.r_type(endian, false);
            if ty != elf::R_X86_64_RELATIVE {
                return Err(RelocError::Type(ty.0));
            }
            out.push((r.r_offset(endian), r.r_addend(endian)));
        }
    }
    Ok(out)
}

/// Builds the initial process stack and returns the stack pointer (at argc);
/// `interp_base` is where the program's interpreter is mapped (0: none).
fn build_stack(
    image: &Image,
    bias: u64,
    interp_base: u64,
    argv: &[CString],
    envp: &[CString],
    execfn: &CString,
) -> Result<u64, LoadError> {
    // SAFETY: a fresh anonymous mapping for the program's stack.
    let base = unsafe {
        libc::mmap(std::ptr::null_mut(), STACK_SIZE + PAGE as usize, libc::PROT_READ | libc::PROT_WRITE,
                   libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK, -1, 0)
    };
    if base == libc::MAP_FAILED {
        return Err(LoadError::Map(image.path.clone(), std::io::Error::last_os_error()));
    }
    // Guard page at the bottom.
    // SAFETY: the lowest page of that fresh mapping becomes the guard.
    unsafe { libc::mprotect(base, PAGE as usize, libc::PROT_NONE) };
    let top = base as u64 + STACK_SIZE as u64 + PAGE;
    let mut sp = top;
    let mut push_bytes = |bytes: &[u8]| -> u64 {
        sp -= bytes.len() as u64;
        // SAFETY: `sp` moves down inside the fresh stack mapping (its contents
        // are a few KiB, the stack 8 MiB).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), sp as *mut u8, bytes.len()) };
        sp
    };
    let execfn_p = push_bytes(execfn.as_bytes_with_nul());
    let platform_p = push_bytes(b"x86_64\0");
    let mut random = [0u8; 16];
    let _ = shunt_core::raw::getrandom(&mut random);
    let random_p = push_bytes(&random);
    let envp_p: Vec<u64> = envp.iter().map(|s| push_bytes(s.as_bytes_with_nul())).collect();
    let argv_p: Vec<u64> = argv.iter().map(|s| push_bytes(s.as_bytes_with_nul())).collect();

    // SAFETY: getauxval reads the auxiliary vector.
    let aux = |t: u64| unsafe { libc::getauxval(t) };
    let mut auxv: Vec<(u64, u64)> = vec![
        (libc::AT_PHDR, image.phdr_addr(bias)),
        (libc::AT_PHENT, core::mem::size_of::<elf::ProgramHeader64<Endianness>>() as u64),
        (libc::AT_PHNUM, image.phnum as u64),
        (libc::AT_PAGESZ, PAGE),
        (libc::AT_BASE, interp_base),
        (libc::AT_FLAGS, 0),
        (libc::AT_ENTRY, image.entry + bias),
        (libc::AT_UID, aux(libc::AT_UID)),
        (libc::AT_EUID, aux(libc::AT_EUID)),
        (libc::AT_GID, aux(libc::AT_GID)),
        (libc::AT_EGID, aux(libc::AT_EGID)),
        (libc::AT_SECURE, 0),
        (libc::AT_RANDOM, random_p),
        (libc::AT_HWCAP, aux(libc::AT_HWCAP)),
        (libc::AT_HWCAP2, aux(libc::AT_HWCAP2)),
        (libc::AT_PLATFORM, platform_p),
        (libc::AT_CLKTCK, 100),
        (libc::AT_EXECFN, execfn_p),
        (AT_SHUNT_ENTRY, shunt_core::gate::gate_address() as u64),
    ];
    let vdso = aux(libc::AT_SYSINFO_EHDR);
    if vdso != 0 {
        auxv.push((libc::AT_SYSINFO_EHDR, vdso_without_getrandom(vdso).unwrap_or(vdso)));
    }
    const AT_MINSIGSTKSZ: u64 = 51;
    let minsig = aux(AT_MINSIGSTKSZ);
    if minsig != 0 {
        auxv.push((AT_MINSIGSTKSZ, minsig));
    }
    auxv.push((libc::AT_NULL, 0));

    // argc, argv..., 0, envp..., 0, auxv pairs: the total must leave sp
    // 16-byte aligned at argc.
    let words = 1 + argv_p.len() + 1 + envp_p.len() + 1 + auxv.len() * 2;
    sp &= !15;
    if words % 2 == 1 {
        sp -= 8;
    }
    sp -= (words * 8) as u64;
    let mut w = sp as *mut u64;
    // SAFETY: the words go below the strings pushed above, inside the stack
    // mapping; `words` was counted exactly.
    let mut put = |v: u64| unsafe {
        w.write(v);
        w = w.add(1);
    };
    put(argv_p.len() as u64);
    argv_p.iter().for_each(|&p| put(p));
    put(0);
    envp_p.iter().for_each(|&p| put(p));
    put(0);
    for (k, v) in auxv {
        put(k);
        put(v);
    }
    Ok(sp)
}

/// The vDSO as the program sees it: a private copy of the kernel vDSO's ELF
/// metadata whose symbols point back at the kernel's code (nothing executes
/// from the copy), with `getrandom` removed.
///
/// Why: Go (and glibc 2.41+) draw random bytes from the vDSO's `getrandom`,
/// which reseeds each thread's state with a real `getrandom` syscall issued
/// from the vDSO's own text — outside the one range Syscall User Dispatch can
/// exempt, so every reseed would trap. Without the vDSO symbol the program
/// makes its `getrandom` syscall through its patched site, and the runtime
/// answers it in user space (`rng.rs`). Time functions stay in the vDSO.
fn vdso_without_getrandom(real: u64) -> Option<u64> {
    use object::read::elf::{FileHeader, SectionHeader, Sym};
    // SAFETY: the kernel's vDSO is mapped for the life of the process; its
    // ELF header gives the extent of its section headers.
    let image = unsafe {
        let ehdr = &*(real as *const elf::FileHeader64<Endianness>);
        let e = Endianness::Little;
        let size = ehdr.e_shoff(e) as usize + ehdr.e_shnum(e) as usize * ehdr.e_shentsize(e) as usize;
        core::slice::from_raw_parts(real as *const u8, size)
    };
    let hdr = elf::FileHeader64::<Endianness>::parse(image).ok()?;
    let endian = hdr.endian().ok()?;
    let sections = hdr.sections(endian, image).ok()?;
    let (idx, dynsym) = sections.iter().enumerate().find(|(_, s)| s.sh_type(endian) == elf::SHT_DYNSYM)?;
    let symbols = sections.symbol_table_by_index(endian, image, object::SectionIndex(idx)).ok()?;
    let names = symbols.strings();
    // SAFETY: a fresh anonymous mapping for the copy.
    let copy = unsafe {
        libc::mmap(std::ptr::null_mut(), image.len(), libc::PROT_READ | libc::PROT_WRITE,
                   libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if copy == libc::MAP_FAILED {
        return None;
    }
    let copy = copy as u64;
    // SAFETY: the copy has exactly `image.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), copy as *mut u8, image.len()) };
    let delta = real.wrapping_sub(copy);
    let base = copy + dynsym.sh_offset(endian);
    let entsize = core::mem::size_of::<elf::Sym64<Endianness>>() as u64;
    for (i, sym) in symbols.iter().enumerate() {
        let at = base + i as u64 * entsize;
        let name = sym.name(endian, names).unwrap_or(b"");
        // SAFETY: `at` indexes a symbol inside the copy's .dynsym (from its own
        // section header); the copy is still writable.
        unsafe {
            if name == b"__vdso_getrandom" || name == b"getrandom" {
                // st_shndx (offset 6) = SHN_UNDEF: lookups skip the symbol.
                ((at + 6) as *mut u16).write_unaligned(elf::SHN_UNDEF.0);
            } else if sym.st_shndx(endian) != elf::SHN_UNDEF && sym.st_shndx(endian) != elf::SHN_ABS {
                // st_value (offset 8): so that copy + value = the kernel's code.
                let v = sym.st_value(endian).wrapping_add(delta);
                ((at + 8) as *mut u64).write_unaligned(v);
            }
        }
    }
    // SAFETY: the copy, which no Rust reference points into.
    unsafe { libc::mprotect(copy as *mut _, image.len(), libc::PROT_READ) };
    Some(copy)
}

/// Undoes the signal state the Rust process set up, so that the program
/// starts as after `execve`: handled signals back to SIG_DFL (std installs
/// SIGSEGV/SIGBUS handlers on an alternate stack), no alternate stack.
/// The mask stays as this process inherited it across its `execve`, which
/// is the program's (std blocks nothing; the runtime's installation has
/// already unblocked, and recorded as the program's, the signals it needs:
/// `shunt_core::sys::signal::adopt_inherited_mask`). Ignored signals stay ignored, as `execve` keeps them
/// (nohup relies on it) — except SIGPIPE, which std ignores on its own: it is
/// ignored only if the exec'ing process ignored it (`SHUNT_SIGPIPE=ign`,
/// which `execve` in the runtime passes on). The runtime's SIGSYS stays, and
/// so does its SIGTRAP when it holds one (first-trap rewriting).
///
/// # Safety
/// The loader's thread, before the jump: nothing of the Rust side relies
/// on its signal handlers or alternate stack any more.
unsafe fn reset_signals(sigpipe_ignored: bool) {
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGSYS {
            continue;
        }
        if sig == libc::SIGTRAP && shunt_core::lazy::owns_sigtrap() {
            continue;
        }
        let mut old = KernelSigaction::default();
        kernel::sigaction(sig, None, Some(&mut old));
        let ignored = old.sa_handler == libc::SIG_IGN as u64;
        let keep = if sig == libc::SIGPIPE { sigpipe_ignored && ignored } else { ignored };
        kernel::sigaction(sig, Some(if keep { &KernelSigaction::IGNORE } else { &KernelSigaction::DEFAULT }), None);
    }
    let ss = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
    // SAFETY: sigaltstack reads a live local of the kernel's layout; the
    // caller's promise covers its effect.
    unsafe {
        shunt_core::raw::syscall2(shunt_abi::syscalls::nr::SIGALTSTACK, &ss as *const _ as u64, 0);
    }
}

/// Loads `path` and runs it with `argv` (argv[0] included) and `envp`,
/// in this process, with the runtime installed by `install`; with
/// `rewrite`, its syscall sites are rewritten into calls of the gate first
/// ([`rewrite`]). Returns only on
/// error, before anything irreversible happened.
pub fn exec_static<E: std::error::Error + 'static>(
    path: &Path,
    argv: &[&OsStr],
    envp: &[(&OsStr, &OsStr)],
    rewrite: bool,
    install: impl FnOnce() -> Result<(), E>,
) -> Result<std::convert::Infallible, Box<dyn std::error::Error>> {
    let image = Image::open(path)?;
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let cargs: Vec<CString> = argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>()?;
    let cenv: Vec<CString> = envp
        .iter()
        .map(|(k, v)| {
            let mut s = k.as_bytes().to_vec();
            s.push(b'=');
            s.extend_from_slice(v.as_bytes());
            CString::new(s)
        })
        .collect::<Result<_, _>>()?;
    let execfn = CString::new(abs.as_os_str().as_bytes())?;
    // SAFETY: before installation, on the loader's only thread.
    unsafe { shunt_core::program::set_program_path(abs.as_os_str().as_bytes()) };
    let bias = image.map()?;
    // A foreign interpreter (musl's): mapped too, relocating itself and the
    // program; the jump goes to it.
    let interp = match &image.interp {
        Some(path) => {
            let i = Image::read(path, true).map_err(|e| match e {
                LoadError::Interpreter(_, i) => LoadError::Interpreter(image.path.clone(), i),
                e => e,
            })?;
            let ibias = i.map()?;
            Some((i, ibias))
        }
        None => None,
    };
    let mut objects = vec![(&image, bias)];
    if let Some((i, ibias)) = &interp {
        objects.push((i, *ibias));
    }
    for (object, bias) in objects.into_iter().filter(|_| rewrite) {
        let debug = std::env::var_os("SHUNT_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
        match rewrite::rewrite(object, bias) {
            Ok(r) if debug => eprintln!(
                "shunt: rewrote {} of {} syscall sites of {} ({} B of trampolines, plan {} µs, apply {} µs)",
                r.patched,
                r.patched + r.skipped_total(),
                r.name,
                r.trampoline_bytes,
                r.parse_micros,
                r.apply_micros
            ),
            Ok(_) => {}
            Err(e) => eprintln!("shunt: {}: not rewritten, its syscalls are trapped: {e}", object.path.display()),
        }
    }
    let interp_base = interp.as_ref().map_or(0, |(i, ibias)| i.base(*ibias));
    let sp = build_stack(&image, bias, interp_base, &cargs, &cenv, &execfn)?;
    let entry = match &interp {
        Some((i, ibias)) => i.entry + ibias,
        None => image.entry + bias,
    };
    drop(image);
    drop(interp);
    let sigpipe_ignored = std::env::var_os("SHUNT_SIGPIPE").is_some_and(|v| v == "ign");
    install()?;
    // SAFETY: the program is mapped and its stack built; this thread becomes
    // the program's, never to return (the jump replaces every register).
    unsafe {
        reset_signals(sigpipe_ignored);
        // The kernel's register state at an ELF entry: rsp at argc, rdx = 0
        // (no atexit function), everything else zero.
        // The entry address is pushed onto the program's stack (below argc,
        // free by the ABI) so that every register can be cleared first.
        core::arch::asm!(
            "mov rsp, rsi",
            "push rax",
            "xor eax, eax",
            "xor ebx, ebx",
            "xor ecx, ecx",
            "xor edx, edx",
            "xor esi, esi",
            "xor edi, edi",
            "xor ebp, ebp",
            "xor r8d, r8d",
            "xor r9d, r9d",
            "xor r10d, r10d",
            "xor r11d, r11d",
            "xor r12d, r12d",
            "xor r13d, r13d",
            "xor r14d, r14d",
            "xor r15d, r15d",
            "ret",
            in("rsi") sp,
            in("rax") entry,
            options(noreturn)
        );
    }
}

/// `shunt load` (and `shunt-load load`): installs the runtime in this
/// process, with the options its environment gives
/// (`shunt_install::options_from_env`), and becomes the static program
/// `command[0]` with arguments `command[1..]` and `argv[0]` = `argv0`.
/// Returns only on error (one line saying why).
pub fn load_and_run(argv0: &OsStr, command: &[std::ffi::OsString]) -> Result<std::convert::Infallible, String> {
    let (path, args) = command.split_first().ok_or("no program given")?;
    let opts = shunt_install::options_from_env()?;
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
        std::env::vars_os().filter(|(k, _)| k != "SHUNT_SIGPIPE").collect();
    let env_refs: Vec<(&OsStr, &OsStr)> = env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).collect();
    let mut argv: Vec<&OsStr> = vec![argv0];
    argv.extend(args.iter().map(|a| a.as_os_str()));
    let rewrite = opts.rewrite;
    exec_static(Path::new(path), &argv, &env_refs, rewrite, || shunt_install::install(opts)).map_err(|e| e.to_string())
}
