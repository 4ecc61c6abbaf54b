//! In-memory rewrite of glibc's own `syscall` sites into calls of the gate.
//!
//! # Why in memory, and why from a plan
//!
//! glibc inlines its `syscall` instructions (526 in libc.so.6 and 46 in ld.so
//! of glibc 2.36), so interposing exported functions misses most of them. The
//! sites are rewritten when the runtime library loads, from a *patch plan*
//! computed once per glibc build (keyed by the GNU build-id) by the planner in
//! `glibc-patch/`, instead of shipping patched copies of libc.so.6 and ld.so:
//!
//! - `shunt run` of any existing dynamically linked binary gets the patch for
//!   free through the preload; no program has to be relinked or given another
//!   interpreter;
//! - `shunt cc` programs only need `libshunt.so` as an ordinary `DT_NEEDED`
//!   dependency with an rpath, and keep the system's ld.so as interpreter;
//! - a plan is applied only when every original byte of every site matches
//!   the loaded object; another glibc build gets its own plan (or is left to
//!   the trap fallback), and is never patched unsafely;
//! - the cost is paid per process: parsing the plan, one small executable
//!   mapping of trampolines per object, and copy-on-write copies of the text
//!   pages that hold a site (measured in `glibc-patch`'s docs and the report
//!   of issue 3: a few hundred µs and well under 1 MiB).
//!
//! # What a site becomes
//!
//! A site is a run of whole instructions containing one `syscall`: `pre`
//! (instructions before it, "backward" mode) and `post` (instructions after
//! it, "forward" mode), `len >= 5` bytes in all. The planner only displaces
//! position-independent instructions that are no branch, and only when no
//! branch lands strictly inside the run. The run is replaced by
//! `jmp rel32 trampoline` and `int3` padding; the trampoline is
//!
//! ```text
//! pre                               ; at the original rsp, as before
//! lea  -128(%rsp),%rsp              ; skip the red zone      (normal only)
//! call *gate_slot(%rip)             ; the gate: SYSCALL convention
//! lea  128(%rsp),%rsp               ; (lea leaves the flags)  (normal only)
//! post
//! jmp  site+len
//! ```
//!
//! Invariant (what a trampoline may clobber): exactly what the original
//! `syscall` clobbers, `rcx`, `r11` and the flags. `pre`/`post` are the
//! original instructions with the same effects; `lea` changes only `rsp`,
//! which is restored; `call`/`ret` balance; and the gate preserves every
//! register but `rax`, `rcx`, `r11` and the flags (see `gate.rs`). The flags
//! differ from a real `syscall` (which restores them from `r11`): the planner
//! refuses a site whose flags are read after the `syscall` before being
//! written. Memory below the caller's `rsp` is untouched for `normal` sites:
//! the return address goes 136 bytes down, past the 128-byte red zone, and the
//! gate switches stacks at once.
//!
//! `no_red_zone` sites (clone, clone3, vfork) have no `rsp` adjustment: a clone
//! child resumes after the `call` on its new stack, where adding 128 would be
//! wrong, and a vfork child shares the stack. The planner allows them only in
//! functions that keep nothing below `rsp` (the pushed return address lands
//! at `-8(%rsp)`). `rt_sigreturn` (`__restore_rt`) is never patched: the
//! runtime replaces signal restorers at `rt_sigaction` time anyway.
//!
//! The trampolines call the gate directly: every thread that runs patched
//! code has `GS` set (the main thread is attached at install, every clone
//! goes through the gate, which attaches the child). Patching therefore
//! happens only while the process is single-threaded (checked).
//!
//! # Plan files
//!
//! One text file per object, `<build-id>.plan`, found in [`plan_dirs`]:
//!
//! ```text
//! shunt-glibc-plan 1
//! build-id 93ac61ec5a8eb1396f9fbd350e3169a558528a40
//! object /lib/x86_64-linux-gnu/libc.so.6
//! planner shunt-glibc-patch 0.1.0/1
//! # patch <at> <len> <kind> <orig> <pre> <post> [nr]     (hex; - = empty)
//! patch 3c118 7 normal b80d0000000f05 b80d000000 - 13
//! leave 3c057 allowlisted rt_sigreturn: …
//! ```
//!
//! `at` is the offset from the object's load base (its link-time address for
//! a shared object) of the first replaced byte. `leave` lines name the sites
//! the plan leaves to the trap fallback, with the reason.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{mem, raw};

/// First line of every plan file.
pub const FORMAT: &str = "shunt-glibc-plan 1";
/// A site is at least a `jmp rel32`.
pub const MIN_LEN: usize = 5;
/// Longest run the runtime accepts (the planner never needs more than ~16).
pub const MAX_LEN: usize = 32;
const SYSCALL: [u8; 2] = [0x0f, 0x05];

/// `lea -0x80(%rsp),%rsp`
pub const LEA_DOWN: [u8; 5] = [0x48, 0x8d, 0x64, 0x24, 0x80];
/// `lea 0x80(%rsp),%rsp` (disp32: +128 does not fit a disp8)
pub const LEA_UP: [u8; 8] = [0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00];
const CALL_RIP: [u8; 2] = [0xff, 0x15];
const JMP_RIP: [u8; 2] = [0xff, 0x25];
const JMP_REL32: u8 = 0xe9;
const INT3: u8 = 0xcc;
/// Each trampoline starts on this boundary.
const TRAMP_ALIGN: usize = 16;
/// The gate slot and its padding at the start of a trampoline area.
const SLOT_AREA: usize = 16;

/// How the trampoline of a site treats the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Skip the 128-byte red zone around the call.
    Normal,
    /// No `rsp` adjustment (clone, clone3, vfork): the child of a clone
    /// resumes on another stack, a vfork child shares this one. Also every
    /// site of a Go image: Go's ABI has no red zone, and the 8 bytes of the
    /// return address are what `shunt go build`'s `CALL shunt_syscall` uses.
    NoRedZone,
    /// `exit` of a thread whose stack may be gone (Go's `exitThread`, musl's
    /// `__unmapself`): `pre`, then `jmp` to the gate, pushing nothing. The
    /// gate's `exit` route is register-only and never returns (the policy
    /// cannot restrict `exit`, so its route never needs a return address).
    /// A tail site has no `post`: nothing after the `syscall` runs.
    Tail,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::NoRedZone => "no_red_zone",
            Kind::Tail => "tail",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "normal" => Some(Kind::Normal),
            "no_red_zone" => Some(Kind::NoRedZone),
            "tail" => Some(Kind::Tail),
            _ => None,
        }
    }
}

/// Up to [`MAX_LEN`] bytes held inline (a plan has hundreds of sites: no
/// allocation per site keeps parsing cheap at every process start).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Code {
    len: u8,
    buf: [u8; MAX_LEN],
}

impl Code {
    /// `None` when `b` is longer than [`MAX_LEN`].
    pub fn new(b: &[u8]) -> Option<Code> {
        let mut c = Code::default();
        c.buf.get_mut(..b.len())?.copy_from_slice(b);
        c.len = b.len() as u8;
        Some(c)
    }
}

impl core::ops::Deref for Code {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex(self))
    }
}

/// One site to patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Offset from the load base of the first replaced byte.
    pub at: u64,
    /// Bytes replaced (`pre.len() + 2 + post.len()`).
    pub len: usize,
    pub kind: Kind,
    /// The original bytes, checked before patching.
    pub orig: Code,
    /// Displaced instructions that ran before the `syscall`.
    pub pre: Code,
    /// Displaced instructions that ran after it.
    pub post: Code,
    /// The syscall number when the planner knows it (informational).
    pub nr: Option<u32>,
}

impl Site {
    /// Offset of the `syscall` instruction itself.
    pub fn syscall_at(&self) -> u64 {
        self.at + self.pre.len() as u64
    }

    /// The structural invariants every site must meet before the runtime
    /// writes anything: the run is `pre ++ syscall ++ post`, at least a
    /// `jmp rel32` long, and bounded.
    pub fn check(&self) -> Result<(), String> {
        if self.len < MIN_LEN || self.len > MAX_LEN {
            return Err(format!("site {:#x}: length {} outside {MIN_LEN}..={MAX_LEN}", self.at, self.len));
        }
        if self.orig.len() != self.len || self.pre.len() + 2 + self.post.len() != self.len {
            return Err(format!("site {:#x}: lengths of orig/pre/post do not add up to {}", self.at, self.len));
        }
        let p = self.pre.len();
        if self.orig[..p] != self.pre[..]
            || self.orig[p..p + 2] != SYSCALL
            || self.orig[p + 2..] != self.post[..]
        {
            return Err(format!("site {:#x}: orig is not pre ++ syscall ++ post", self.at));
        }
        if self.kind == Kind::Tail && !self.post.is_empty() {
            return Err(format!("site {:#x}: a tail site never returns, so it displaces nothing after the syscall", self.at));
        }
        Ok(())
    }

    /// Length of this site's trampoline.
    pub fn trampoline_len(&self) -> usize {
        let lea = match self.kind {
            Kind::Normal => LEA_DOWN.len() + LEA_UP.len(),
            Kind::NoRedZone => 0,
            // pre; jmp *slot(%rip)
            Kind::Tail => return self.pre.len() + 6,
        };
        self.pre.len() + lea + 6 + self.post.len() + 5
    }

    /// The trampoline's bytes, for the trampoline at run-time address `here`,
    /// the gate slot at `slot`, returning to `back` (= base + at + len).
    /// `None` when a rel32 cannot reach.
    pub fn trampoline(&self, here: u64, slot: u64, back: u64) -> Option<Vec<u8>> {
        let mut t = vec![0; self.trampoline_len()];
        self.write_trampoline(&mut t, here, slot, back)?;
        Some(t)
    }

    /// Writes the trampoline into `out` (at least [`Site::trampoline_len`]
    /// bytes); see [`Site::trampoline`].
    pub fn write_trampoline(&self, out: &mut [u8], here: u64, slot: u64, back: u64) -> Option<()> {
        let mut n = 0;
        let mut put = |b: &[u8]| {
            out[n..n + b.len()].copy_from_slice(b);
            n += b.len();
            n
        };
        put(&self.pre);
        if self.kind == Kind::Tail {
            let next = put(&JMP_RIP) as u64 + 4;
            let end = put(&rel32(here + next, slot)?.to_le_bytes());
            debug_assert_eq!(end, self.trampoline_len());
            return Some(());
        }
        if self.kind == Kind::Normal {
            put(&LEA_DOWN);
        }
        let next = put(&CALL_RIP) as u64 + 4;
        put(&rel32(here + next, slot)?.to_le_bytes());
        if self.kind == Kind::Normal {
            put(&LEA_UP);
        }
        put(&self.post);
        let next = put(&[JMP_REL32]) as u64 + 4;
        let end = put(&rel32(here + next, back)?.to_le_bytes());
        debug_assert_eq!(end, self.trampoline_len());
        Some(())
    }

    /// What the site's bytes become: `jmp rel32 tramp`, then `int3`s.
    /// `here` is the run-time address of the site.
    pub fn jump(&self, here: u64, tramp: u64) -> Option<Code> {
        let mut j = Code::new(&[INT3; MAX_LEN][..self.len])?;
        j.buf[0] = JMP_REL32;
        j.buf[1..5].copy_from_slice(&rel32(here + 5, tramp)?.to_le_bytes());
        Some(j)
    }
}

/// `to - next` as a rel32, if it fits.
fn rel32(next: u64, to: u64) -> Option<i32> {
    i32::try_from(to.wrapping_sub(next) as i64).ok()
}

/// Whether a site the plan leaves alone is allowed to stay a real `syscall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeftStatus {
    /// Known and harmless (e.g. `__restore_rt`'s `rt_sigreturn`).
    Allowlisted,
    /// No safe patch: the trap fallback will catch it.
    Uncovered,
}

impl LeftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LeftStatus::Allowlisted => "allowlisted",
            LeftStatus::Uncovered => "uncovered",
        }
    }
}

/// A site the plan does not patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Left {
    /// Offset of the `syscall` instruction.
    pub at: u64,
    pub status: LeftStatus,
    pub reason: String,
}

/// The patch plan of one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// GNU build-id, lowercase hex.
    pub build_id: String,
    /// The file the plan was made from (informational).
    pub object: String,
    /// Planner name and version (a newer planner replaces older plans).
    pub planner: String,
    pub sites: Vec<Site>,
    pub left: Vec<Left>,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct PlanError {
    pub line: usize,
    pub msg: String,
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    unhex_code::<4096>(s).map(|(buf, n)| buf[..n].to_vec())
}

/// `s` split at every `sep` byte (an ASCII byte: the pieces stay `str`s).
fn split_bytes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let b = s.as_bytes();
    let mut start = 0;
    let mut done = s.is_empty();
    core::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut i = start;
        while i < b.len() && b[i] != sep {
            i += 1;
        }
        // `sep` is ASCII, so `start..i` lies on char boundaries.
        let piece = &s[start..i];
        if i >= b.len() {
            done = true;
        } else {
            start = i + 1;
        }
        Some(piece)
    })
}

/// Hex digit values; 0xff marks a non-digit.
const NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes hex (or `-` for nothing) into a fixed buffer.
fn unhex_code<const N: usize>(s: &str) -> Option<([u8; N], usize)> {
    let mut out = [0u8; N];
    if s == "-" {
        return Some((out, 0));
    }
    let b = s.as_bytes();
    if b.len() % 2 != 0 || b.len() / 2 > N {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        if (hi | lo) & 0xf0 != 0 {
            return None;
        }
        *o = hi << 4 | lo;
    }
    Some((out, b.len() / 2))
}

fn code(s: &str) -> Option<Code> {
    let (buf, n) = unhex_code::<MAX_LEN>(s)?;
    Some(Code { len: n as u8, buf })
}

fn hex_or_dash(b: &[u8]) -> String {
    if b.is_empty() {
        "-".into()
    } else {
        hex(b)
    }
}

impl Plan {
    /// The plan as a plan file.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        s.push_str(FORMAT);
        s.push('\n');
        s.push_str(&format!("build-id {}\nobject {}\nplanner {}\n", self.build_id, self.object, self.planner));
        s.push_str(&format!(
            "# {} sites patched, {} left to the trap fallback\n# patch <at> <len> <kind> <orig> <pre> <post> [nr]\n",
            self.sites.len(),
            self.left.len()
        ));
        for site in &self.sites {
            s.push_str(&format!(
                "patch {:x} {} {} {} {} {}",
                site.at,
                site.len,
                site.kind.as_str(),
                hex(&site.orig),
                hex_or_dash(&site.pre),
                hex_or_dash(&site.post)
            ));
            if let Some(nr) = site.nr {
                s.push_str(&format!(" {nr}"));
            }
            s.push('\n');
        }
        for l in &self.left {
            s.push_str(&format!("leave {:x} {} {}\n", l.at, l.status.as_str(), l.reason));
        }
        s
    }

    /// Parses a plan file. Every site is checked with [`Site::check`].
    pub fn parse(text: &str) -> Result<Plan, PlanError> {
        let mut plan = Plan::default();
        plan.sites.reserve(text.len() / 48);
        let mut seen_format = false;
        // Byte-level splitting: `str::lines`/`split` search with memchr, which
        // costs more than the whole parse on lines this short.
        for (i, raw_line) in split_bytes(text, b'\n').enumerate() {
            let line = raw_line.trim();
            let err = |msg: String| PlanError { line: i + 1, msg };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !seen_format {
                if line != FORMAT {
                    return Err(err(format!("not a plan file (expected `{FORMAT}`)")));
                }
                seen_format = true;
                continue;
            }
            let mut words = split_bytes(line, b' ');
            let word = words.next().unwrap_or("");
            let rest = line.get(word.len() + 1..).unwrap_or("");
            match word {
                "build-id" => {
                    if !is_key(rest) {
                        return Err(err(format!("bad build-id `{rest}`")));
                    }
                    plan.build_id = rest.to_ascii_lowercase();
                }
                "object" => plan.object = rest.to_string(),
                "planner" => plan.planner = rest.to_string(),
                "patch" => {
                    // Fields are separated by single spaces (as `to_text` writes them).
                    let mut f = [""; 7];
                    let mut n = 0;
                    for word in words {
                        if n == f.len() {
                            n += 1;
                            break;
                        }
                        f[n] = word;
                        n += 1;
                    }
                    if n != 6 && n != 7 {
                        return Err(err("a patch line has 6 or 7 fields".into()));
                    }
                    let at = u64::from_str_radix(f[0], 16).map_err(|_| err(format!("bad offset `{}`", f[0])))?;
                    let len: usize = f[1].parse().map_err(|_| err(format!("bad length `{}`", f[1])))?;
                    let kind = Kind::parse(f[2]).ok_or_else(|| err(format!("unknown kind `{}`", f[2])))?;
                    let orig = code(f[3]).ok_or_else(|| err("bad orig bytes".into()))?;
                    let pre = code(f[4]).ok_or_else(|| err("bad pre bytes".into()))?;
                    let post = code(f[5]).ok_or_else(|| err("bad post bytes".into()))?;
                    let nr = match f[6] {
                        "" => None,
                        n => Some(n.parse().map_err(|_| err(format!("bad syscall number `{n}`")))?),
                    };
                    let site = Site { at, len, kind, orig, pre, post, nr };
                    site.check().map_err(err)?;
                    plan.sites.push(site);
                }
                "leave" => {
                    let mut f = rest.splitn(3, ' ');
                    let at = f.next().and_then(|a| u64::from_str_radix(a, 16).ok());
                    let status = match f.next() {
                        Some("allowlisted") => Some(LeftStatus::Allowlisted),
                        Some("uncovered") => Some(LeftStatus::Uncovered),
                        _ => None,
                    };
                    let (Some(at), Some(status)) = (at, status) else {
                        return Err(err("a leave line is `leave <at> allowlisted|uncovered <reason>`".into()));
                    };
                    plan.left.push(Left { at, status, reason: f.next().unwrap_or("").to_string() });
                }
                other => return Err(err(format!("unknown line `{other}`"))),
            }
        }
        if !seen_format {
            return Err(PlanError { line: 1, msg: format!("not a plan file (expected `{FORMAT}`)") });
        }
        if plan.build_id.is_empty() {
            return Err(PlanError { line: 1, msg: "the plan has no build-id".into() });
        }
        plan.sites.sort_by_key(|s| s.at);
        for w in plan.sites.windows(2) {
            if w[0].at + w[0].len as u64 > w[1].at {
                return Err(PlanError { line: 0, msg: format!("sites {:#x} and {:#x} overlap", w[0].at, w[1].at) });
            }
        }
        Ok(plan)
    }
}

/// Where plans are looked for, in order: `$SHUNT_PLANS`, `<lib_dir>/glibc-plans`
/// (the directory of `libshunt.so`), `$XDG_CACHE_HOME/shunt/glibc-plans` or
/// `~/.cache/shunt/glibc-plans`.
pub fn plan_dirs(lib_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SHUNT_PLANS").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(l) = lib_dir {
        dirs.push(l.join("glibc-plans"));
    }
    if let Some(c) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(c).join("shunt/glibc-plans"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(h).join(".cache/shunt/glibc-plans"));
    }
    dirs
}

/// Whether `s` can key a plan: a GNU build-id (hex), or a content key
/// `sha256-<hex>` for an object without one (see `CONTENT_KEY_PREFIX`).
pub fn is_key(s: &str) -> bool {
    let hex = s.strip_prefix(CONTENT_KEY_PREFIX).unwrap_or(s);
    unhex(hex).is_some_and(|b| !b.is_empty())
}

/// Prefix of a content key: the SHA-256 of the whole file, for objects
/// without a GNU build-id (the applier still checks every original byte, so
/// the key only has to find the plan).
pub const CONTENT_KEY_PREFIX: &str = "sha256-";

/// The file name of the plan for a build-id (or content key).
pub fn plan_file_name(build_id: &str) -> String {
    format!("{build_id}.plan")
}

/// The directory of the object holding this code (`libshunt.so`).
fn own_dir() -> Option<PathBuf> {
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(own_dir as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(info.dli_fname).to_str().ok()?;
        let p = Path::new(name);
        let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        p.parent().map(Path::to_path_buf)
    }
}

// ------------------------------------------------------------- reports

/// What patching did to one object.
#[derive(Debug, Default, Clone)]
pub struct ObjectReport {
    pub name: String,
    pub build_id: String,
    pub plan: PathBuf,
    /// Sites patched.
    pub patched: usize,
    /// Sites not patched, by reason (plan `leave` lines, or why the whole
    /// plan was refused).
    pub skipped: Vec<(String, usize)>,
    /// Bytes of trampolines (their mapping is rounded up to pages).
    pub trampoline_bytes: usize,
    /// Text pages written (each becomes a private copy-on-write page).
    pub cow_pages: usize,
    /// Time spent reading and parsing the plan, and applying it.
    pub parse_micros: u64,
    pub apply_micros: u64,
}

impl ObjectReport {
    pub fn skipped_total(&self) -> usize {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
    fn skip(&mut self, reason: String, n: usize) {
        if n == 0 {
            return;
        }
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, k)) => *k += n,
            None => self.skipped.push((reason, n)),
        }
    }
}

/// What patching did in this process.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Objects for which a plan was found.
    pub objects: Vec<ObjectReport>,
    /// glibc objects loaded without a plan (`name (build-id)`).
    pub missing: Vec<String>,
    pub patched: usize,
    pub skipped: usize,
    /// Why nothing was patched at all, if so.
    pub refused: Option<String>,
    /// Time spent, from the first loaded-object lookup to the last mprotect.
    pub micros: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.objects.is_empty() {
            // Nothing to patch: one line.
            if let Some(r) = &self.refused {
                return write!(f, "glibc not patched: {r}");
            }
            return write!(
                f,
                "glibc not patched: no plan for {}; its syscalls are left to the trap fallback \
                 (`shunt glibc plan` makes plans)",
                if self.missing.is_empty() { "any loaded object".to_string() } else { self.missing.join(", ") }
            );
        }
        write!(f, "glibc patch: {} sites patched, {} skipped, {} µs", self.patched, self.skipped, self.micros)?;
        for o in &self.objects {
            write!(
                f,
                "\n  {} ({}): {} patched, {} skipped, {} B of trampolines, {} text pages copied, \
                 parse {} µs + apply {} µs; plan {}",
                o.name,
                o.build_id,
                o.patched,
                o.skipped_total(),
                o.trampoline_bytes,
                o.cow_pages,
                o.parse_micros,
                o.apply_micros,
                o.plan.display()
            )?;
            for (why, n) in &o.skipped {
                write!(f, "\n    skipped {n}: {why}")?;
            }
        }
        for m in &self.missing {
            write!(f, "\n  {m}: no plan (left to the trap fallback; `shunt glibc plan` makes one)")?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------- applying

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

unsafe extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> i32 {
    let out = &mut *(data as *mut Vec<Loaded>);
    let info = &*info;
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        std::ffi::CStr::from_ptr(info.dlpi_name).to_string_lossy().into_owned()
    };
    let phdrs = core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
    let base = info.dlpi_addr;
    let mut loads = Vec::new();
    let mut build_id = None;
    for p in phdrs {
        if p.p_type == libc::PT_LOAD {
            loads.push((p.p_vaddr, p.p_memsz, p.p_flags));
        } else if p.p_type == libc::PT_NOTE && build_id.is_none() {
            let notes = core::slice::from_raw_parts((base + p.p_vaddr) as *const u8, p.p_memsz as usize);
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
/// [`crate::install`] and while the process is single-threaded (the
/// `libshunt.so` constructor). Never fails: what it cannot patch is left to
/// the trap fallback and listed in the report.
pub fn apply_loaded() -> Report {
    let start = std::time::Instant::now();
    let mut report = Report::default();
    if !crate::instance::installed() {
        report.refused = Some("the runtime is not installed in this process".into());
        return report;
    }
    if unsafe { core::ptr::read_volatile(core::ptr::addr_of!(__libc_single_threaded)) } == 0 {
        report.refused = Some("the process already runs several threads, whose GS is not set".into());
        return report;
    }
    let mut loaded: Vec<Loaded> = Vec::new();
    unsafe { libc::dl_iterate_phdr(Some(collect), &mut loaded as *mut Vec<Loaded> as *mut libc::c_void) };
    let dirs = plan_dirs(own_dir().as_deref());
    let gate = crate::gate::gate_address() as u64;
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
        let now = core::slice::from_raw_parts((obj.base + s.at) as *const u8, s.len);
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
    let area = map_near(lo, hi, area_len).ok_or("no free address within ±2 GiB for the trampolines")?;
    let mut tramp = vec![INT3; area_len];
    tramp[..8].copy_from_slice(&gate.to_le_bytes());
    let mut jumps = Vec::with_capacity(plan.sites.len());
    for (s, &off) in plan.sites.iter().zip(&offsets) {
        let here = area + off as u64;
        let site_addr = obj.base + s.at;
        let t = s.write_trampoline(&mut tramp[off..], here, area, site_addr + s.len as u64);
        let (Some(()), Some(j)) = (t, s.jump(site_addr, here)) else {
            raw::munmap(area as usize, area_len);
            return Err("trampolines out of rel32 reach".into());
        };
        jumps.push((site_addr, j));
    }
    mem::copy(area as *mut u8, tramp.as_ptr(), area_len);
    let r = raw::mprotect(area as usize, area_len, libc::PROT_READ | libc::PROT_EXEC);
    if r < 0 {
        raw::munmap(area as usize, area_len);
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
        let mut r = raw::mprotect(start as usize, len, prot | libc::PROT_WRITE);
        if r == -(libc::EACCES as i64) {
            r = raw::mprotect(start as usize, len, libc::PROT_READ | libc::PROT_WRITE);
        }
        if r < 0 {
            return Err(format!("cannot make the text writable (errno {})", -r));
        }
        for (addr, j) in &jumps {
            if *addr >= start && *addr < end {
                mem::copy(*addr as *mut u8, j.as_ptr(), j.len());
                o.patched += 1;
            }
        }
        let r = raw::mprotect(start as usize, len, prot);
        if r < 0 {
            crate::events::fatal(b"cannot restore the protection of glibc's text after patching");
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
        let r = raw::mmap(
            hint as usize,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if r < 0 {
            continue;
        }
        if r as u64 == hint {
            return Some(hint);
        }
        // An old kernel took the flag as a hint and mapped elsewhere.
        raw::munmap(r as usize, len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            at: 0x1000,
            len: 7,
            kind: Kind::Normal,
            orig: Code::new(&[0xb8, 0x27, 0, 0, 0, 0x0f, 0x05]).unwrap(),
            pre: Code::new(&[0xb8, 0x27, 0, 0, 0]).unwrap(),
            post: Code::default(),
            nr: Some(39),
        }
    }

    #[test]
    fn plan_round_trips() {
        let plan = Plan {
            build_id: "abcd".into(),
            object: "/lib/libc.so.6".into(),
            planner: "test".into(),
            sites: vec![site()],
            left: vec![Left { at: 0x2000, status: LeftStatus::Allowlisted, reason: "rt_sigreturn: restorer".into() }],
        };
        assert_eq!(Plan::parse(&plan.to_text()).unwrap(), plan);
    }

    #[test]
    fn bad_plans_are_refused() {
        assert!(Plan::parse("hello").is_err());
        let mut text = site_text("patch 1000 7 normal b8270000000f05 b827000000 -");
        assert!(Plan::parse(&text).is_ok());
        text = site_text("patch 1000 7 normal b8270000000f06 b827000000 -");
        assert!(Plan::parse(&text).unwrap_err().msg.contains("not pre ++ syscall"));
        text = site_text("patch 1000 4 normal b80f0500 b8 05");
        assert!(Plan::parse(&text).is_err());
        text = site_text("patch 1000 7 sideways b8270000000f05 b827000000 -");
        assert!(Plan::parse(&text).is_err());
    }

    fn site_text(line: &str) -> String {
        format!("{FORMAT}\nbuild-id ab\n{line}\n")
    }

    #[test]
    fn trampoline_bytes() {
        let s = site();
        let t = s.trampoline(0x10_0000, 0x10_0000 - 16, 0x1007).unwrap();
        assert_eq!(t.len(), s.trampoline_len());
        assert_eq!(&t[..5], &s.pre[..]);
        assert_eq!(&t[5..10], &LEA_DOWN);
        assert_eq!(&t[10..12], &[0xff, 0x15]);
        // call *slot(%rip): next = here + 16
        assert_eq!(i32::from_le_bytes(t[12..16].try_into().unwrap()), -32);
        assert_eq!(&t[16..24], &LEA_UP);
        assert_eq!(t[24], 0xe9);
        let j = s.jump(0x1000, 0x10_0000).unwrap();
        assert_eq!(j[0], 0xe9);
        assert_eq!(i32::from_le_bytes(j[1..5].try_into().unwrap()) as i64, 0x10_0000 - 0x1005);
        assert_eq!(&j[5..], &[0xcc, 0xcc]);
        assert!(s.jump(0x1000, 0x1_0000_0000).is_none());
    }

    #[test]
    fn tail_trampoline_pushes_nothing() {
        let mut s = site();
        s.kind = Kind::Tail;
        s.nr = Some(60);
        s.check().unwrap();
        let t = s.trampoline(0x10_0000, 0x10_0000 - 16, 0x1007).unwrap();
        assert_eq!(t.len(), 5 + 6);
        assert_eq!(&t[..5], &s.pre[..]);
        // jmp *slot(%rip): next = here + 11
        assert_eq!(&t[5..7], &[0xff, 0x25]);
        assert_eq!(i32::from_le_bytes(t[7..11].try_into().unwrap()), -27);
        // A tail site has nothing after the syscall.
        s.post = Code::new(&[0x90]).unwrap();
        s.orig = Code::new(&[0xb8, 0x27, 0, 0, 0, 0x0f, 0x05, 0x90]).unwrap();
        s.len = 8;
        assert!(s.check().unwrap_err().contains("tail"));
    }

    #[test]
    fn content_keys_are_keys() {
        assert!(is_key("93ac61ec5a8eb1396f9fbd350e3169a558528a40"));
        assert!(is_key(&format!("{CONTENT_KEY_PREFIX}{}", "ab".repeat(32))));
        assert!(!is_key("sha256-"));
        assert!(!is_key("sha256-zz"));
        let text = format!("{FORMAT}\nbuild-id {CONTENT_KEY_PREFIX}abcd\n");
        assert_eq!(Plan::parse(&text).unwrap().build_id, "sha256-abcd");
    }
}
