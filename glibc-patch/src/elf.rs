//! What the planner needs from an ELF file: executable sections, symbols,
//! function bounds (`.eh_frame` FDEs, or Go's function table), addresses of
//! code stored in data (relocations, RELR, absolute pointers in a non-PIE
//! executable's data), exception landing pads, the build-id (or a content
//! key) and the soname.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::LittleEndian as LE;

/// Bad input, reported as one line.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error(transparent)]
    Input(#[from] shunt_userfile::InputError),
    #[error("{0}: not an ELF file")]
    NotElf(PathBuf),
    #[error("{0}: a 32-bit ELF; shunt handles x86-64 (64-bit) objects")]
    Elf32(PathBuf),
    #[error("{0}: built for another architecture (ELF machine {1}); shunt handles x86-64")]
    Machine(PathBuf, u16),
    #[error("{0}: truncated or malformed ELF ({1})")]
    Malformed(PathBuf, String),
}

/// An executable section.
pub struct CodeSection {
    pub name: String,
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// A symbol naming code.
#[derive(Clone, Debug)]
pub struct Symbol {
    pub addr: u64,
    pub size: u64,
    pub name: String,
    pub global: bool,
}

/// Which ABI the code of an image follows, as far as a rewrite cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// The System V ABI (C, C++, glibc, musl, Rust…): leaf code may keep data
    /// in the 128-byte red zone below `rsp`.
    C,
    /// A Go binary (it has Go's function table, `.gopclntab`): Go's ABI has
    /// no red zone, and the runtime's stack checks leave little room below
    /// `rsp` at a syscall site.
    Go,
}

/// A loaded, parsed image of the file.
pub struct Image {
    pub path: PathBuf,
    pub build_id: Option<String>,
    /// What the plan is keyed by: the GNU build-id, else `sha256-<hex>` of
    /// the whole file.
    pub key: String,
    pub flavour: Flavour,
    /// ET_EXEC: loaded at its link-time addresses (no relocations tell where
    /// code pointers are, so data is scanned for them).
    pub fixed: bool,
    pub soname: Option<String>,
    pub is_shared: bool,
    pub code: Vec<CodeSection>,
    /// Sorted by address.
    pub symbols: Vec<Symbol>,
    /// Function ranges `(start, len)`, sorted: the FDEs of `.eh_frame`, and
    /// for a Go image the functions of its function table (Go writes no
    /// `.eh_frame`).
    pub fdes: Vec<(u64, u64)>,
    /// Starts of FDEs whose CIE marks a signal frame (`S`): they start one
    /// byte before the restorer, so they are no instruction boundary.
    pub signal_fdes: Vec<u64>,
    /// Addresses that code may reach other than by a direct branch:
    /// relocated pointers, landing pads.
    pub data_targets: Vec<u64>,
    /// PT_LOAD `(vaddr, offset, filesz)` to read data at an address.
    loads: Vec<(u64, u64, u64)>,
    data: Vec<u8>,
}

fn malformed(p: &Path, what: impl std::fmt::Display) -> ElfError {
    ElfError::Malformed(p.to_path_buf(), what.to_string())
}

impl Image {
    /// Reads and parses `path`. With `debug_symbols`, a matching file from
    /// `/usr/lib/debug/.build-id/` (libc6-dbg) adds local symbol names when
    /// present; nothing depends on it.
    pub fn load(path: &Path, debug_symbols: bool) -> Result<Image, ElfError> {
        let data = shunt_userfile::read(path, shunt_userfile::limit::ELF)?;
        let mut img = Image::parse(path, data)?;
        if debug_symbols {
            if let Some((dir, rest)) = img.build_id.clone().and_then(|id| id.get(2..).map(|r| (id[..2].to_string(), r.to_string()))) {
                let id = format!("{dir}{rest}");
                let dbg = PathBuf::from(format!("/usr/lib/debug/.build-id/{dir}/{rest}.debug"));
                if let Ok(bytes) = shunt_userfile::read(&dbg, shunt_userfile::limit::ELF) {
                    if let Ok(d) = Image::parse(&dbg, bytes) {
                        if d.build_id.as_deref() == Some(&id) {
                            img.symbols.extend(d.symbols);
                            img.symbols.sort_by_key(|s| s.addr);
                        }
                    }
                }
            }
        }
        Ok(img)
    }

    /// Parses an ELF held in memory.
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Image, ElfError> {
        if !data.starts_with(b"\x7fELF") {
            return Err(ElfError::NotElf(path.to_path_buf()));
        }
        if data.len() < 5 {
            return Err(malformed(path, "no ELF class"));
        }
        if data[4] == elf::ELFCLASS32.0 {
            return Err(ElfError::Elf32(path.to_path_buf()));
        }
        if data[4] != elf::ELFCLASS64.0 || data.get(5) != Some(&elf::ELFDATA2LSB.0) {
            return Err(malformed(path, "unknown ELF class or byte order"));
        }
        let d = &data[..];
        let hdr = elf::FileHeader64::<LE>::parse(d).map_err(|e| malformed(path, e))?;
        let e = LE;
        if hdr.e_machine(e) != elf::EM_X86_64 {
            return Err(ElfError::Machine(path.to_path_buf(), hdr.e_machine(e).0));
        }
        let phdrs = hdr.program_headers(e, d).map_err(|x| malformed(path, x))?;
        let sections = hdr.sections(e, d).map_err(|x| malformed(path, x))?;
        if sections.is_empty() {
            return Err(malformed(path, "no section headers"));
        }
        let mut loads = Vec::new();
        let mut build_id = None;
        for ph in phdrs {
            if ph.p_type(e) == elf::PT_LOAD {
                // Every later address computation adds within a segment or
                // section: one that wraps the address space is refused here.
                if ph.p_vaddr(e).checked_add(ph.p_memsz(e).max(ph.p_filesz(e))).is_none() {
                    return Err(malformed(path, "a PT_LOAD segment wraps the address space"));
                }
                loads.push((ph.p_vaddr(e), ph.p_offset(e), ph.p_filesz(e)));
            }
            if ph.p_type(e) == elf::PT_NOTE && build_id.is_none() {
                if let Ok(notes) = ph.data(e, d) {
                    build_id = shunt_patch::gnu_build_id(notes).map(shunt_patch::hex);
                }
            }
        }
        let mut code = Vec::new();
        let mut symbols = Vec::new();
        let mut fdes = Vec::new();
        let mut data_targets = Vec::new();
        let mut soname = None;
        let mut eh_frame = None;
        let mut relr = Vec::new();
        let mut pclntab = None;
        let mut pclntab_range = None;
        let mut text_addr = None;
        let mut writable: Vec<(u64, Vec<u8>)> = Vec::new();
        for (i, s) in sections.enumerate() {
            let name = sections.section_name(e, s).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
            let ty = s.sh_type(e);
            if build_id.is_none() && ty == elf::SHT_NOTE {
                if let Ok(notes) = s.data(e, d) {
                    build_id = shunt_patch::gnu_build_id(notes).map(shunt_patch::hex);
                }
            }
            match ty {
                elf::SHT_PROGBITS if s.sh_flags(e).contains(elf::SHF_EXECINSTR) && s.sh_size(e) > 0 => {
                    let bytes = s.data(e, d).map_err(|x| malformed(path, format!("section {name}: {x}")))?;
                    if s.sh_addr(e).checked_add(bytes.len() as u64).is_none() {
                        return Err(malformed(path, format!("section {name} wraps the address space")));
                    }
                    if name == ".text" {
                        text_addr = Some(s.sh_addr(e));
                    }
                    code.push(CodeSection { name: name.clone(), addr: s.sh_addr(e), bytes: bytes.to_vec() });
                }
                elf::SHT_PROGBITS if name == ".eh_frame" => {
                    eh_frame = s.data(e, d).ok().map(|b| (s.sh_addr(e), b.to_vec()));
                }
                elf::SHT_PROGBITS if s.sh_flags(e).contains(elf::SHF_WRITE) && pclntab_scan(&name) => {
                    if let Ok(b) = s.data(e, d) {
                        writable.push((s.sh_addr(e), b.to_vec()));
                    }
                }
                // Go 1.25 PIEs keep the table in a RELRO section of its own.
                elf::SHT_PROGBITS if name == ".gopclntab" || name == ".data.rel.ro.gopclntab" => {
                    pclntab = s.data(e, d).ok().map(<[u8]>::to_vec);
                    pclntab_range = Some((s.sh_addr(e), s.sh_size(e)));
                }
                elf::SHT_SYMTAB | elf::SHT_DYNSYM => {
                    let table = sections.symbols(e, d, ty).map_err(|x| malformed(path, x))?;
                    for sym in table.iter() {
                        let st = sym.st_type();
                        let val = sym.st_value(e);
                        // A symbol only names code: one that wraps names nothing.
                        if val == 0 || sym.st_shndx(e) == elf::SHN_UNDEF || val.checked_add(sym.st_size(e)).is_none() {
                            continue;
                        }
                        if st != elf::STT_FUNC && st != elf::STT_GNU_IFUNC && st != elf::STT_NOTYPE {
                            continue;
                        }
                        let Ok(n) = table.symbol_name(e, sym) else { continue };
                        let n = String::from_utf8_lossy(n).into_owned();
                        if n.is_empty() || n.starts_with(".L") || n.starts_with('$') {
                            continue;
                        }
                        symbols.push(Symbol {
                            addr: val,
                            size: sym.st_size(e),
                            name: n,
                            global: sym.st_bind() != elf::STB_LOCAL,
                        });
                    }
                }
                elf::SHT_RELA => {
                    if let Ok(relas) = s.data_as_array::<elf::Rela64<LE>, _>(e, d) {
                        for r in relas {
                            let t = r.r_type(e, false);
                            if t == elf::R_X86_64_RELATIVE || t == elf::R_X86_64_IRELATIVE {
                                data_targets.push(r.r_addend(e) as u64);
                            }
                        }
                    }
                }
                elf::SHT_RELR => {
                    if let Ok(words) = s.data_as_array::<elf::Relr64<LE>, _>(e, d) {
                        relr.extend(object::read::elf::RelrIterator::<elf::FileHeader64<LE>>::new(e, words));
                    }
                }
                elf::SHT_DYNAMIC => {
                    if let Ok(Some((dyns, link))) = s.dynamic(e, d) {
                        let strings = sections.strings(e, d, link).ok();
                        for dy in dyns {
                            if dy.d_tag(e) == elf::DT_SONAME {
                                soname = strings
                                    .and_then(|st| st.get(dy.d_val(e) as u32).ok())
                                    .map(|b| String::from_utf8_lossy(b).into_owned());
                            }
                        }
                    }
                }
                _ => {}
            }
            let _ = i;
        }
        // Executable sections never overlap in a linked object; in a
        // hostile one the same bytes would decode (and be planned) twice.
        {
            let mut spans: Vec<(u64, u64, &str)> = code.iter().map(|c| (c.addr, c.addr + c.bytes.len() as u64, c.name.as_str())).collect();
            spans.sort();
            if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
                let what = if hdr.e_type(e) == elf::ET_REL { " (a relocatable object: audit or plan the linked program)" } else { "" };
                return Err(malformed(path, format!("executable sections {:?} and {:?} overlap{what}", w[0].2, w[1].2)));
            }
        }
        // A Go binary: its function table names and bounds every function,
        // also when the symbol table was stripped (`-ldflags=-s -w`); the
        // runtime itself needs the table, so it is always there.
        // Entry offsets count from `runtime.text`: its symbol, else the
        // module's record of it (a stripped cgo binary, where an external
        // linker put C code before Go's), else `.text`.
        let go_funcs = pclntab.as_deref().and_then(|t| {
            let text = symbols
                .iter()
                .find(|s| s.name == "runtime.text")
                .map(|s| s.addr)
                .or_else(|| {
                    let data: Vec<(u64, &[u8])> = writable.iter().map(|(a, b)| (*a, &b[..])).collect();
                    shunt_gotarget::verify::moduledata_text(pclntab_range?.0, t, &data)
                })
                .or(text_addr)
                .or_else(|| code.first().map(|c| c.addr))?;
            shunt_gotarget::verify::pclntab_functions(t, text)
        });
        let flavour = if go_funcs.is_some() { Flavour::Go } else { Flavour::C };
        if let Some(funcs) = &go_funcs {
            let named: std::collections::HashSet<u64> = symbols.iter().map(|s| s.addr).collect();
            for (addr, size, name) in funcs {
                if addr.checked_add(*size).is_none() {
                    continue;
                }
                fdes.push((*addr, *size));
                if !named.contains(addr) {
                    symbols.push(Symbol { addr: *addr, size: *size, name: name.clone(), global: true });
                }
            }
        }
        symbols.sort_by_key(|s| s.addr);
        let key = match &build_id {
            Some(id) => id.clone(),
            None => content_key(&data),
        };
        let fixed = hdr.e_type(e) == elf::ET_EXEC;
        let mut img = Image {
            path: path.to_path_buf(),
            build_id,
            key,
            flavour,
            fixed,
            soname,
            is_shared: hdr.e_type(e) == elf::ET_DYN,
            code,
            symbols,
            fdes: Vec::new(),
            signal_fdes: Vec::new(),
            data_targets,
            loads,
            data,
        };
        for at in relr {
            if let Some(w) = img.read(at, 8) {
                img.data_targets.push(u64::from_le_bytes(w.try_into().unwrap_or_default()));
            }
        }
        if let Some((addr, bytes)) = eh_frame {
            let mut lsdas = Vec::new();
            parse_eh_frame(&bytes, addr, &mut fdes, &mut lsdas, &mut img.signal_fdes);
            for (func, lsda) in lsdas {
                img.landing_pads(func, lsda);
            }
        }
        if fixed {
            img.scan_absolute_pointers(pclntab_range);
        }
        fdes.sort_unstable();
        fdes.dedup();
        img.fdes = fdes;
        Ok(img)
    }

    /// An image of bare code at `addr` (no ELF around it): what the fuzz
    /// target and the planner's unit tests feed the planner. No symbols, no
    /// function bounds, no data: the planner must stay safe on what it decodes
    /// alone.
    pub fn from_code(addr: u64, bytes: Vec<u8>, flavour: Flavour) -> Image {
        let key = content_key(&bytes);
        Image {
            path: PathBuf::from("<code>"),
            build_id: None,
            key,
            flavour,
            fixed: false,
            soname: None,
            is_shared: false,
            code: vec![CodeSection { name: ".text".into(), addr, bytes }],
            symbols: Vec::new(),
            fdes: Vec::new(),
            signal_fdes: Vec::new(),
            data_targets: Vec::new(),
            loads: Vec::new(),
            data: Vec::new(),
        }
    }

    /// A fixed-address executable has no relocations saying where its data
    /// holds code addresses (jump tables, function pointers, `atexit`
    /// lists): every 8-byte-aligned word of its segments outside the
    /// executable sections (read-only data may share the text segment) whose
    /// value lies in an executable section is taken as a branch target. A
    /// superset of the real ones only makes the planner leave more sites to
    /// the trap fallback, never patch a wrong one.
    ///
    /// Go's function table (`.gopclntab`, `skip`) is left out: it names
    /// code only by 32-bit offsets from the text's start, apart from one
    /// header word that is the text's start itself (a symbol, and the
    /// section's address, already targets). Its 1–2 MB of offsets and
    /// line tables otherwise match code addresses by chance: in Go 1.26
    /// test binaries three words read 0x490049, the `syscall` of
    /// `runtime.exit`, which then stayed a trap in every one of them.
    fn scan_absolute_pointers(&mut self, skip: Option<(u64, u64)>) {
        let mut found = Vec::new();
        for &(vaddr, off, filesz) in &self.loads {
            let Some(bytes) = usize::try_from(off)
                .ok()
                .and_then(|o| self.data.get(o..o.checked_add(usize::try_from(filesz).ok()?)?))
            else {
                continue;
            };
            let skew = ((8 - vaddr % 8) % 8) as usize;
            for (i, w) in bytes.get(skew..).unwrap_or(&[]).chunks_exact(8).enumerate() {
                let at = vaddr + (skew + 8 * i) as u64; // within the segment: checked in parse
                if self.in_code(at) {
                    continue; // code is decoded, not scanned
                }
                if skip.is_some_and(|(a, n)| at >= a && at - a < n) {
                    continue;
                }
                let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
                if self.in_code(v) {
                    found.push(v);
                }
            }
        }
        self.data_targets.extend(found);
    }

    /// File bytes at a virtual address, if the file holds them.
    pub fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        // `addr - v < f`, not `addr < v + f`: parse bounds a segment's
        // vaddr + sizes, not its file offset, so only differences from a
        // lower bound are known not to wrap.
        let &(v, off, filesz) = self.loads.iter().find(|(v, _, f)| addr >= *v && addr - v < *f)?;
        let end = (addr - v).checked_add(len as u64)?;
        if end > filesz {
            return None;
        }
        let start = usize::try_from(off.checked_add(addr - v)?).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }

    /// Whether `addr` lies in an executable section.
    pub fn in_code(&self, addr: u64) -> bool {
        self.code.iter().any(|c| addr >= c.addr && addr < c.addr + c.bytes.len() as u64)
    }

    /// The FDE range containing `addr`.
    pub fn fde_of(&self, addr: u64) -> Option<(u64, u64)> {
        let k = self.fdes.partition_point(|&(s, _)| s <= addr);
        self.fdes[..k].iter().rev().take(4).copied().find(|&(s, l)| addr - s < l)
    }

    /// The range of the sized symbol holding `addr`.
    pub fn symbol_range(&self, addr: u64) -> Option<(u64, u64)> {
        let k = self.symbols.partition_point(|s| s.addr <= addr);
        self.symbols[..k].iter().rev().take(64).find(|s| s.size > 0 && addr - s.addr < s.size).map(|s| (s.addr, s.size))
    }

    /// The best name for `addr`: `symbol+0xoff`, or the FDE that holds it.
    pub fn name_of(&self, addr: u64) -> String {
        let k = self.symbols.partition_point(|s| s.addr <= addr);
        let mut best: Option<&Symbol> = None;
        let fde = self.fde_of(addr);
        for s in self.symbols[..k].iter().rev().take(256) {
            let inside = if s.size > 0 { addr - s.addr < s.size } else { fde.is_none_or(|(f, _)| s.addr >= f) };
            if !inside {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => s.addr > b.addr || (s.addr == b.addr && rank(s) > rank(b)),
            };
            if better {
                best = Some(s);
            }
            if s.addr < best.map_or(0, |b| b.addr) {
                break;
            }
        }
        match (best, fde) {
            (Some(s), Some((f, _))) if f > s.addr => format!("fde_{f:x}+{:#x}", addr - f),
            (Some(s), _) => format!("{}+{:#x}", s.name, addr - s.addr),
            (None, Some((f, _))) => format!("fde_{f:x}+{:#x}", addr - f),
            (None, None) => "?".into(),
        }
    }

    /// Landing pads of the LSDA at `lsda` for the function at `func`
    /// (`.gcc_except_table` call-site tables) become data targets.
    fn landing_pads(&mut self, func: u64, lsda: u64) {
        let avail = self.loads.iter().find(|(v, _, f)| lsda >= *v && lsda < v + f).map(|(v, _, f)| v + f - lsda);
        let Some(bytes) = avail.and_then(|n| self.read(lsda, n.min(1 << 16) as usize)) else { return };
        let mut r = Reader { b: bytes, pos: 0, base: lsda };
        let Some(lp_enc) = r.u8() else { return };
        let lp_start = if lp_enc != 0xff { r.encoded(lp_enc) } else { Some(func) };
        let Some(lp_start) = lp_start else { return };
        let Some(tt_enc) = r.u8() else { return };
        if tt_enc != 0xff && r.uleb().is_none() {
            return;
        }
        let (Some(cs_enc), Some(cs_len)) = (r.u8(), r.uleb()) else { return };
        let end = r.pos.saturating_add(usize::try_from(cs_len).unwrap_or(usize::MAX));
        let mut pads = Vec::new();
        while r.pos < end {
            let (Some(_start), Some(_len), Some(lp), Some(_action)) =
                (r.encoded(cs_enc), r.encoded(cs_enc), r.encoded(cs_enc), r.uleb())
            else {
                break;
            };
            if lp != 0 {
                pads.push(lp_start.wrapping_add(lp));
            }
        }
        self.data_targets.extend(pads);
    }
}

/// What a plan of the ELF file `data` is keyed by, as [`Image::key`]: its GNU
/// build-id (from a PT_NOTE, else a note section: Go writes its GNU note
/// outside PT_NOTE), else [`content_key`]. Cheap: no decoding.
pub fn plan_key(data: &[u8]) -> String {
    build_id_in(data).unwrap_or_else(|| content_key(data))
}

/// The GNU build-id in the PT_NOTE segments of the ELF file `path`, read
/// with a few small `pread`s (the header, the program headers, the notes):
/// what [`plan_key`] finds first, without reading the file. `None` when the
/// file has no such note or does not look like an x86-64 ELF; then only the
/// whole file says what its key is ([`plan_key`]: a note section, else its
/// content).
///
/// `shunt run` keys libc.so.6 and ld.so (2 MB) at every start to find their
/// plans; reading them whole to look at their first pages cost several
/// milliseconds of every run.
pub fn build_id_in_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileExt;
    /// Reads of headers and notes larger than this are not "a few small
    /// reads": such a file is keyed the whole way.
    const MAX_READ: usize = 64 << 10;
    // Never blocks: a FIFO or a device is no ELF file (and is refused, without
    // being read, by the whole-file path that follows).
    let (file, _) = shunt_userfile::open_regular(path, shunt_userfile::limit::ELF).ok()?;
    let read_at = |off: u64, len: usize| -> Option<Vec<u8>> {
        if len > MAX_READ {
            return None;
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, off).ok()?;
        Some(buf)
    };
    let ehdr = read_at(0, core::mem::size_of::<elf::FileHeader64<LE>>())?;
    let hdr = elf::FileHeader64::<LE>::parse(&ehdr[..]).ok()?;
    let e = LE;
    if ehdr.get(4) != Some(&elf::ELFCLASS64.0) || ehdr.get(5) != Some(&elf::ELFDATA2LSB.0) || hdr.e_machine(e) != elf::EM_X86_64 {
        return None;
    }
    let entsize = core::mem::size_of::<elf::ProgramHeader64<LE>>();
    if hdr.e_phentsize(e) as usize != entsize {
        return None;
    }
    let phdrs = read_at(hdr.e_phoff(e), hdr.e_phnum(e) as usize * entsize)?;
    for ph in phdrs.chunks_exact(entsize) {
        let ph: &elf::ProgramHeader64<LE> = object::pod::from_bytes(ph).ok()?.0;
        if ph.p_type(e) != elf::PT_NOTE {
            continue;
        }
        let notes = read_at(ph.p_offset(e), usize::try_from(ph.p_filesz(e)).ok()?)?;
        if let Some(id) = shunt_patch::gnu_build_id(&notes) {
            return Some(shunt_patch::hex(id));
        }
    }
    None
}

fn build_id_in(d: &[u8]) -> Option<String> {
    let hdr = elf::FileHeader64::<LE>::parse(d).ok()?;
    let e = LE;
    for ph in hdr.program_headers(e, d).ok()? {
        if ph.p_type(e) == elf::PT_NOTE {
            if let Some(id) = ph.data(e, d).ok().and_then(shunt_patch::gnu_build_id) {
                return Some(shunt_patch::hex(id));
            }
        }
    }
    for s in hdr.sections(e, d).ok()?.iter() {
        if s.sh_type(e) == elf::SHT_NOTE {
            if let Some(id) = s.data(e, d).ok().and_then(shunt_patch::gnu_build_id) {
                return Some(shunt_patch::hex(id));
            }
        }
    }
    None
}

/// `sha256-<hex>` of `data`: the key of an object without a GNU build-id.
pub fn content_key(data: &[u8]) -> String {
    use sha2::Digest;
    let sum = sha2::Sha256::digest(data);
    format!("{}{}", shunt_patch::CONTENT_KEY_PREFIX, shunt_patch::hex(&sum))
}

/// Prefer global, plain names at the same address.
fn rank(s: &Symbol) -> u8 {
    let not_gi = !s.name.starts_with("__GI_");
    let plain = !s.name.starts_with('_');
    (s.global as u8) * 4 + (not_gi as u8) * 2 + plain as u8
}

/// A little reader for DWARF-style encoded values.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    /// Virtual address of `b[0]` (for pc-relative values).
    base: u64,
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        let v = self.b.get(self.pos..self.pos + N)?.try_into().ok()?;
        self.pos += N;
        Some(v)
    }
    fn uleb(&mut self) -> Option<u64> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let c = self.u8()?;
            if shift < 64 {
                v |= u64::from(c & 0x7f) << shift;
            }
            shift += 7;
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
    }
    fn sleb(&mut self) -> Option<i64> {
        let (mut v, mut shift) = (0i64, 0);
        loop {
            let c = self.u8()?;
            if shift < 64 {
                v |= i64::from(c & 0x7f) << shift;
            }
            shift += 7;
            if c & 0x80 == 0 {
                if shift < 64 && c & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
        }
    }
    /// A pointer in DW_EH_PE encoding `enc` (pc-relative applied; indirect
    /// and data-relative ones are not followed: `None`).
    fn encoded(&mut self, enc: u8) -> Option<u64> {
        let at = self.base.wrapping_add(self.pos as u64);
        let v = match enc & 0x0f {
            0x00 | 0x04 => u64::from_le_bytes(self.fixed()?),
            0x01 => self.uleb()?,
            0x02 => u64::from(u16::from_le_bytes(self.fixed()?)),
            0x03 => u64::from(u32::from_le_bytes(self.fixed()?)),
            0x09 => self.sleb()? as u64,
            0x0a => i16::from_le_bytes(self.fixed()?) as i64 as u64,
            0x0b => i32::from_le_bytes(self.fixed()?) as i64 as u64,
            0x0c => u64::from_le_bytes(self.fixed()?),
            _ => return None,
        };
        match enc & 0x70 {
            0x00 => {}
            0x10 => return Some(at.wrapping_add(v)),
            _ => return None,
        }
        if enc & 0x80 != 0 {
            return None;
        }
        Some(v)
    }
}

/// The FDEs `(start, len)` and LSDA pointers `(func, lsda)` of `.eh_frame`.
fn parse_eh_frame(
    b: &[u8],
    addr: u64,
    fdes: &mut Vec<(u64, u64)>,
    lsdas: &mut Vec<(u64, u64)>,
    signal: &mut Vec<u64>,
) {
    // CIE offset -> (fde pointer encoding, lsda encoding, has 'z', signal frame)
    let mut cies: BTreeMap<usize, (u8, Option<u8>, bool, bool)> = BTreeMap::new();
    let mut pos = 0usize;
    while pos + 8 <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        if len == 0 || len == 0xffff_ffff {
            break;
        }
        let start = pos + 4;
        let end = start + len;
        if end > b.len() {
            break;
        }
        let id = u32::from_le_bytes(b[start..start + 4].try_into().unwrap_or_default()) as usize;
        let mut r = Reader { b: &b[..end], pos: start + 4, base: addr };
        if id == 0 {
            // CIE
            let parse = |r: &mut Reader| -> Option<(u8, Option<u8>, bool, bool)> {
                let version = r.u8()?;
                let aug_start = r.pos;
                while r.u8()? != 0 {}
                let aug = r.b[aug_start..r.pos - 1].to_vec();
                if aug.contains(&b'e') {
                    return None; // "eh": an old GCC pointer, not seen on x86-64
                }
                r.uleb()?;
                r.sleb()?;
                if version == 1 {
                    r.u8()?;
                } else {
                    r.uleb()?;
                }
                let (mut fde_enc, mut lsda_enc) = (0u8, None);
                let z = aug.first() == Some(&b'z');
                if z {
                    r.uleb()?;
                    for c in &aug[1..] {
                        match c {
                            b'L' => lsda_enc = Some(r.u8()?),
                            b'R' => fde_enc = r.u8()?,
                            b'P' => {
                                let pe = r.u8()?;
                                r.encoded(pe & 0x0f);
                            }
                            b'S' | b'B' => {}
                            _ => break,
                        }
                    }
                }
                Some((fde_enc, lsda_enc, z, aug.contains(&b'S')))
            };
            if let Some(c) = parse(&mut r) {
                cies.insert(pos, c);
            }
        } else if let Some(&(fde_enc, lsda_enc, z, sig)) = start.checked_sub(id).and_then(|c| cies.get(&c)) {
            let mut parse = |r: &mut Reader| -> Option<()> {
                let begin = r.encoded(fde_enc)?;
                let range = r.encoded(fde_enc & 0x0f)?;
                begin.checked_add(range)?; // a wrapping FDE covers nothing
                fdes.push((begin, range));
                if sig {
                    signal.push(begin);
                }
                if z {
                    let aug_len = r.uleb()? as usize;
                    if let Some(le) = lsda_enc {
                        let save = r.pos;
                        if le != 0xff {
                            if let Some(l) = r.encoded(le) {
                                if l != 0 {
                                    lsdas.push((begin, l));
                                }
                            }
                        }
                        r.pos = save.saturating_add(aug_len);
                    }
                }
                Some(())
            };
            parse(&mut r);
        }
        pos = end;
    }
}

/// The writable sections that may hold a Go module's `moduledata` (read for
/// `runtime.text`: see `shunt_gotarget::verify::moduledata_text`): its own
/// section when an external linker linked the program, `.noptrdata` when
/// Go's linker did.
fn pclntab_scan(name: &str) -> bool {
    name == ".go.module" || name == ".noptrdata"
}
