//! What `execve` adds so that a new image stays in the instance: the
//! instance's variables (stored once at installation), and what exec hooks
//! add at the moment of the exec ([`ExecEnv`]).

use crate::mem::copy_slice;

/// Variables of the runtime that the program does not see and that `execve`
/// replaces with the instance's own.
pub(crate) const INJECTED_PREFIXES: [&[u8]; 10] = [
    b"SHUNT_INSTANCE=",
    b"SHUNT_LIB=",
    b"SHUNT_EXE=",
    b"SHUNT_TRAP=",
    b"SHUNT_STATS=",
    b"SHUNT_PATCH=",
    b"SHUNT_REWRITE=",
    b"SHUNT_FDS=",
    b"SHUNT_SEGMENT_BROKER=",
    b"SHUNT_CONNS=",
];

const ARENA: usize = 16 * 1024;
const MAX_VARS: usize = 12;

/// The instance's variables, written once at installation.
struct Injection {
    set: bool,
    arena: [u8; ARENA],
    used: usize,
    vars: [(usize, usize); MAX_VARS],
    nvars: usize,
    preload_index: Option<usize>,
    loader: (usize, usize),
}

static mut INJECTION: Injection = Injection {
    set: false,
    arena: [0; ARENA],
    used: 0,
    vars: [(0, 0); MAX_VARS],
    nvars: 0,
    preload_index: None,
    loader: (0, 0),
};

/// The injection as handlers read it.
pub(crate) struct ExecInjection {
    inj: &'static Injection,
}

impl ExecInjection {
    /// Number of variables.
    pub(crate) fn len(&self) -> usize {
        self.inj.nvars
    }
    /// Variable `i`: NUL-terminated `NAME=value`.
    pub(crate) fn var(&self, i: usize) -> &'static [u8] {
        let (o, n) = self.inj.vars[i];
        &self.inj.arena[o..o + n]
    }
    /// Which variable is `LD_PRELOAD` (merged with the program's own).
    pub(crate) fn preload_index(&self) -> Option<usize> {
        self.inj.preload_index
    }
    /// NUL-terminated path of the shunt binary (empty: static programs are
    /// exec'd as they are, outside the instance).
    pub(crate) fn loader(&self) -> &'static [u8] {
        let (o, n) = self.inj.loader;
        &self.inj.arena[o..o + n]
    }
}

/// The instance's injection, if installation stored one.
pub(crate) fn exec_injection() -> Option<ExecInjection> {
    // SAFETY: written only at installation (single-threaded), read-only
    // afterwards.
    let inj = unsafe { &*core::ptr::addr_of!(INJECTION) };
    inj.set.then_some(ExecInjection { inj })
}

/// The injection did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectionTooLarge;

/// Stores the injection: `vars` are NUL-terminated `NAME=value` entries,
/// `loader` the NUL-terminated path of the shunt binary (or empty).
///
/// # Safety
/// Installation only (single-threaded).
pub(crate) unsafe fn set_injection(
    vars: &[&[u8]],
    preload_index: Option<usize>,
    loader: &[u8],
) -> Result<(), InjectionTooLarge> {
    // SAFETY: by the caller's promise, the only reference to the storage.
    let inj = unsafe { &mut *core::ptr::addr_of_mut!(INJECTION) };
    if vars.len() > MAX_VARS {
        return Err(InjectionTooLarge);
    }
    let mut put = |b: &[u8]| -> Result<(usize, usize), InjectionTooLarge> {
        let o = inj.used;
        let end = o.checked_add(b.len()).filter(|&e| e <= ARENA).ok_or(InjectionTooLarge)?;
        copy_slice(&mut inj.arena[o..end], b);
        inj.used = end;
        Ok((o, b.len()))
    };
    let mut spans = [(0, 0); MAX_VARS];
    for (i, v) in vars.iter().enumerate() {
        spans[i] = put(v)?;
    }
    let loader = put(loader)?;
    inj.vars = spans;
    inj.nvars = vars.len();
    inj.preload_index = preload_index;
    inj.loader = loader;
    inj.set = true;
    Ok(())
}

/// Variables exec hooks add to the new image's environment, in buffers on
/// the exec handler's stack.
pub struct ExecEnv<'a> {
    bytes: &'a mut [u8],
    used: usize,
    ptrs: &'a mut [u64],
    n: usize,
    /// Descriptors a hook opened for the new image only (they carry
    /// something across, and the new image closes them): closed again if
    /// the exec fails.
    undo: [i32; MAX_UNDO],
    nundo: usize,
    /// What hooks want done if the exec fails ([`ExecEnv::on_failure`]).
    failed: [Option<fn()>; MAX_ON_FAILURE],
}

/// Hooks' functions one exec runs if it fails.
const MAX_ON_FAILURE: usize = 4;

/// Descriptors hooks may open for one exec ([`ExecEnv::open_for_exec`]).
pub const MAX_UNDO: usize = 64;

impl<'a> ExecEnv<'a> {
    pub(crate) fn new(bytes: &'a mut [u8], ptrs: &'a mut [u64]) -> Self {
        ExecEnv { bytes, used: 0, ptrs, n: 0, undo: [-1; MAX_UNDO], nundo: 0, failed: [None; MAX_ON_FAILURE] }
    }

    /// Records `fd`, opened by a hook for the new image, to be closed if the
    /// exec fails. `false` (and `fd` is closed now) when the list is full.
    pub fn open_for_exec(&mut self, fd: i32) -> bool {
        if self.nundo == MAX_UNDO {
            crate::raw::close(fd);
            return false;
        }
        self.undo[self.nundo] = fd;
        self.nundo += 1;
        true
    }

    /// Runs `f` if the exec fails (a hook that changed something of this
    /// image for the new one undoes it). `false` when the list is full:
    /// the hook must not make the change.
    pub fn on_failure(&mut self, f: fn()) -> bool {
        match self.failed.iter_mut().find(|s| s.is_none()) {
            Some(s) => {
                *s = Some(f);
                true
            }
            None => false,
        }
    }

    /// The exec failed: the old image goes on, and closes what the hooks
    /// opened for the new one.
    pub(crate) fn exec_failed(&mut self) {
        for &fd in &self.undo[..self.nundo] {
            crate::raw::close(fd);
        }
        self.nundo = 0;
        for f in self.failed.iter_mut() {
            if let Some(f) = f.take() {
                f();
            }
        }
    }

    /// Bytes still free for variables.
    pub fn room(&self) -> usize {
        self.bytes.len() - self.used
    }

    /// Adds the variable `parts` joined (`NAME=value`, without the NUL).
    /// `false` when the buffers are full (the variable is then left out).
    pub fn add(&mut self, parts: &[&[u8]]) -> bool {
        if self.n == self.ptrs.len() {
            return false;
        }
        let start = self.used;
        let Some(len) = crate::text::join(&mut self.bytes[start..], parts) else { return false };
        self.ptrs[self.n] = self.bytes[start..].as_ptr() as u64;
        self.n += 1;
        self.used += len;
        true
    }

    /// The added variables' addresses.
    pub(crate) fn pointers(&self) -> &[u64] {
        &self.ptrs[..self.n]
    }
}
