//! Installing the runtime core in a process: once per process image, before
//! any thread can enter the gate.
//!
//! The std installer (`shunt-install`) gathers what needs the host's C
//! library or the file system — the runtime's text range, the vDSO's
//! functions, the instance directory, the compiled policy — and hands it
//! here as plain bytes and addresses. Installation then seeds the RNG, maps
//! the stats segment and reserves the runtime stacks, fills the action
//! table, stores what `execve` injects, registers the built-in fork hooks,
//! installs the SIGSYS handler, and attaches the calling thread.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use shunt_abi::policy::Rules;
use shunt_abi::segment::SegmentHeader;

use crate::layout::{MAX_SLOTS, STACK_STRIDE};
use crate::slot::{SEGMENT_BASE, SLOT_BITMAP_PTR, STACKS_BASE};
use crate::thread::AttachError;
use crate::{events, exec_env, hooks, raw, rng, segment, standalone, sys, table, thread, trap, vdso};

/// What the std installer found and decided.
pub struct InstallParams<'a> {
    /// The runtime's executable segment (start, length): the trap
    /// fallback's exempt range.
    pub text: (u64, u64),
    /// The vDSO's functions.
    pub vdso: vdso::Functions,
    /// Arm the trap fallback on attached threads.
    pub trap: bool,
    /// The instance directory (exists already), without a NUL; `None`: no
    /// instance (counters in private memory, not reported).
    pub instance_dir: Option<&'a [u8]>,
    /// Stand-alone mode: write the instance's report here at exit.
    pub report_to: Option<&'a [u8]>,
    /// The policy; `None` allows everything.
    pub rules: Option<&'a Rules>,
    /// NUL-terminated `NAME=value` variables that `execve` adds to every
    /// new image.
    pub exec_vars: &'a [&'a [u8]],
    /// Which of `exec_vars` is `LD_PRELOAD`.
    pub preload_index: Option<usize>,
    /// NUL-terminated path of the shunt binary, whose `shunt load` runs
    /// exec'd static programs (empty: they run outside the instance).
    pub loader: &'a [u8],
    /// Carry loopback TCP between shunt processes over shared memory.
    pub transport: bool,
    /// How blocking waits spin before they park.
    pub spin: shunt_transport::spin::SpinMode,
    /// The instance's segment broker socket (`SHUNT_SEGMENT_BROKER`),
    /// which makes the stats segment of a process that changed its user.
    pub segment_broker: Option<i32>,
}

/// Why installation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallError {
    AlreadyInstalled,
    Seed(i64),
    Map { what: &'static str, errno: i64 },
    InjectionTooLarge,
    Sigsys(i64),
    Attach(AttachError),
    TooManyOwners,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::AlreadyInstalled => f.write_str("the runtime is already installed in this process"),
            InstallError::Seed(e) => write!(f, "could not seed the random number generator (errno {e})"),
            InstallError::Map { what, errno } => write!(f, "could not map {what} (errno {errno})"),
            InstallError::InjectionTooLarge => {
                f.write_str("the instance's environment for exec'd programs is too large (paths too long?)")
            }
            InstallError::Sigsys(e) => write!(f, "could not install the SIGSYS handler (errno {e})"),
            InstallError::Attach(e) => e.fmt(f),
            InstallError::TooManyOwners => f.write_str("too many subsystems own file descriptors"),
        }
    }
}

impl core::error::Error for InstallError {}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether the runtime is installed in this process.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Installs the runtime core and attaches the calling thread.
///
/// # Safety
/// The process is single-threaded (no other thread may run runtime code
/// meanwhile), FSGSBASE is enabled, and `params.text` and `params.vdso`
/// describe this process's runtime text and the kernel's vDSO.
pub unsafe fn install(params: &InstallParams<'_>) -> Result<(), InstallError> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(InstallError::AlreadyInstalled);
    }
    // SAFETY: the caller vouches for the vDSO addresses.
    unsafe { vdso::set(&params.vdso) };
    rng::reseed().map_err(|e| InstallError::Seed(-e))?;
    sys::ids::refresh_pid();

    // SAFETY: single-threaded installation (the caller's promise),
    // so nothing reads these statics yet.
    unsafe {
        if let Some(dir) = params.instance_dir {
            segment::set_instance_dir(dir);
            segment::set_broker(params.segment_broker);
            events::set_path(&[dir, b"/events"]);
            if let Some(out) = params.report_to {
                standalone::set_report(out);
            }
        }
        exec_env::set_injection(params.exec_vars, params.preload_index, params.loader)
            .map_err(|_| InstallError::InjectionTooLarge)?;
    }
    let seg = segment::map_new().map_err(|e| InstallError::Map { what: "the stats segment", errno: -e })?;
    // SAFETY: an anonymous PROT_NONE reservation at a kernel-chosen address.
    let stacks = unsafe {
        raw::mmap(
            0,
            MAX_SLOTS * STACK_STRIDE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if stacks < 0 {
        return Err(InstallError::Map { what: "the runtime stacks", errno: -stacks });
    }
    STACKS_BASE.store(stacks as usize, Ordering::Relaxed);
    SEGMENT_BASE.store(seg, Ordering::Relaxed);
    // SAFETY: single-threaded installation; the segment header is mapped
    // for the life of the process (a fork child moves its own over it).
    unsafe {
        *core::ptr::addr_of_mut!(SLOT_BITMAP_PTR) =
            (*(seg as *mut SegmentHeader)).slot_bitmap.as_mut_ptr() as *mut u64;
        table::configure(params.rules, params.transport, params.spin != shunt_transport::spin::SpinMode::Off);
    }
    crate::net::configure(params.transport, params.spin).map_err(|_| InstallError::TooManyOwners)?;
    register_builtin_hooks();
    if params.trap {
        // SAFETY: single-threaded; the caller vouches for the text range.
        unsafe { trap::install(params.text.0, params.text.1) }.map_err(|e| InstallError::Sigsys(-e))?;
    }
    thread::attach_current(params.trap).map_err(InstallError::Attach)?;
    // The inherited mask is the program's, but SIGSYS cannot stay blocked
    // under the trap fallback (see there).
    sys::signal::adopt_inherited_mask();
    Ok(())
}

/// The built-in subsystems' fork hooks, in the order a child needs them:
/// ids first (everything after may log with the pid), then the RNG, then
/// the trap fallback (the kernel does not inherit SUD).
fn register_builtin_hooks() {
    for hook in [sys::ids::after_fork as hooks::ForkChildHook, rng::after_fork, trap::after_fork] {
        if hooks::on_fork_child(hook).is_err() {
            events::fatal(b"too many fork hooks");
        }
    }
    // Owned fds that survive the exec keep their owner in the new image.
    if hooks::on_exec(crate::fd_owner::exec_hook).is_err() {
        events::fatal(b"too many exec hooks");
    }
}
