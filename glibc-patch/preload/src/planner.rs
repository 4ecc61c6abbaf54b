//! Plans for objects seen for the first time, made by a helper process
//! (`shunt glibc plan-for`), so that no planner runs inside the program.
//!
//! The helper is started and waited for with raw system calls issued from
//! the runtime's own text: nothing goes through the gate (no call is
//! counted, the fork hooks of the instance do not run) and glibc is not
//! involved. `clone` is given no exit signal, so the program gets no
//! `SIGCHLD` and its `wait(-1)` cannot reap the helper (only `__WALL`
//! waits for such a child); the helper's environment holds only what it
//! needs to find the plan cache, so it runs natively, outside the instance.

use std::ffi::CString;
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shunt_abi::syscalls::nr;
use shunt_core::raw;
use shunt_patch::Plan;

/// The shunt binary that plans (set by the constructor).
static HELPER: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The variables the helper gets: where plans are cached.
const KEPT: [&str; 4] = ["SHUNT_CACHE", "SHUNT_PLANS", "HOME", "XDG_CACHE_HOME"];

/// The largest plan read from the helper (as for plan files).
const MAX_PLAN: usize = 64 << 20;

/// Chooses the helper: the instance's shunt binary (`SHUNT_EXE`), else a
/// `shunt-load` or `shunt` beside `libshunt.so` (a `shunt cc` program run natively).
/// Whether there is one.
pub(crate) fn set_helper(exe: Option<PathBuf>, lib: Option<PathBuf>) -> bool {
    let beside = lib.and_then(|l| {
        let dir = l.parent()?;
        ["shunt-load", "shunt"].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
    });
    let found = exe.filter(|e| e.is_file()).or_else(|| beside.filter(|e| e.is_file()));
    let some = found.is_some();
    *HELPER.lock().unwrap_or_else(|e| e.into_inner()) = found;
    some
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{what} holds a NUL byte"))
}

/// The plan of `file` (a loaded object whose build-id, if any, is
/// `loaded_id`), from `shunt glibc plan-for`: its error line when it fails.
pub(crate) fn plan_out_of_process(file: &Path, loaded_id: Option<&str>) -> Result<Plan, String> {
    let helper = HELPER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or("no shunt binary to plan with (SHUNT_EXE, or shunt beside libshunt.so)")?;
    let mut args = vec![
        cstring(helper.as_os_str().as_bytes(), "the shunt path")?,
        c"glibc".to_owned(),
        c"plan-for".to_owned(),
        cstring(file.as_os_str().as_bytes(), "the object's path")?,
    ];
    if let Some(id) = loaded_id {
        args.push(c"--loaded-id".to_owned());
        args.push(cstring(id.as_bytes(), "the build-id")?);
    }
    let env: Vec<CString> = KEPT
        .iter()
        .filter_map(|k| {
            let v = std::env::var_os(k)?;
            CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()).ok()
        })
        .collect();
    let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const c_char> = env.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let (status, out) = run(&argv, &envp)?;
    let text = String::from_utf8(out).map_err(|_| "the planner's output is not text".to_string())?;
    if status != 0 {
        let why = text.lines().last().unwrap_or("").trim();
        return Err(format!("the planner failed (exit status {status}): {why}"));
    }
    Plan::parse(&text).map_err(|e| format!("the planner's plan: {e}"))
}

/// Runs `argv` (with `envp`), its stdout on a pipe, stdin and stderr on
/// `/dev/null`; its exit status (or 128 + signal) and what it printed.
fn run(argv: &[*const c_char], envp: &[*const c_char]) -> Result<(i32, Vec<u8>), String> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the live array.
    let r = unsafe { raw::syscall2(nr::PIPE2, fds.as_mut_ptr() as u64, libc::O_CLOEXEC as u64) };
    if r < 0 {
        return Err(format!("cannot make a pipe (errno {})", -r));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let null = raw::open(b"/dev/null\0", libc::O_RDWR | libc::O_CLOEXEC, 0);
    if null < 0 || rd <= 2 || wr <= 2 {
        // (the program closed its standard fds: the helper's could not be set)
        raw::close(rd);
        raw::close(wr);
        if null >= 0 {
            raw::close(null as i32);
        }
        return Err("cannot set up the planner's standard fds".into());
    }
    let null = null as i32;
    // SAFETY: a fork (no CLONE_VM: the child gets a copy of memory) of a
    // single-threaded process (apply_loaded runs only then), with no exit
    // signal.
    let pid = unsafe { raw::syscall6(nr::CLONE, [0, 0, 0, 0, 0, 0]) };
    if pid == 0 {
        // The child: only raw calls, then execve or exit.
        // SAFETY: fds this process owns; argv/envp are NUL-terminated
        // arrays of NUL-terminated strings, alive in this copy of memory.
        unsafe {
            raw::syscall3(nr::DUP3, wr as u64, 1, 0);
            raw::syscall3(nr::DUP3, null as u64, 0, 0);
            raw::syscall3(nr::DUP3, null as u64, 2, 0);
            raw::syscall3(nr::EXECVE, argv[0] as u64, argv.as_ptr() as u64, envp.as_ptr() as u64);
        }
        raw::exit_group(127);
    }
    raw::close(wr);
    raw::close(null);
    if pid < 0 {
        raw::close(rd);
        return Err(format!("cannot start the planner (errno {})", -pid));
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { raw::syscall3(nr::READ, rd as u64, buf.as_mut_ptr() as u64, buf.len() as u64) };
        if n == -(libc::EINTR as i64) {
            continue;
        }
        if n <= 0 || out.len() + n as usize > MAX_PLAN {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    raw::close(rd);
    let mut status = 0i32;
    loop {
        // SAFETY: wait4 writes the status into the live local; __WALL
        // waits for a child without an exit signal.
        let r = unsafe {
            raw::syscall4(nr::WAIT4, pid as u64, &mut status as *mut i32 as u64, libc::__WALL as u64, 0)
        };
        if r == -(libc::EINTR as i64) {
            continue;
        }
        if r < 0 {
            return Err(format!("cannot wait for the planner (errno {})", -r));
        }
        break;
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    Ok((code, out))
}
