//! A patch plan: the sites of one object, what each becomes, and the plan
//! file format (see the crate docs).

use std::fmt;

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
pub(crate) const INT3: u8 = 0xcc;
/// Each trampoline starts on this boundary.
pub(crate) const TRAMP_ALIGN: usize = 16;
/// The gate slot and its padding at the start of a trampoline area.
pub(crate) const SLOT_AREA: usize = 16;

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
