//! Installs the shunt runtime in a process: the std layer above the no_std
//! core (`shunt-core`).
//!
//! It turns the environment that `shunt run` (or a stand-alone
//! `SHUNT_STATS=FILE ./prog`) sets into [`Options`] ([`options_from_env`]),
//! finds what the core needs from the host's C library and file system —
//! FSGSBASE, the runtime's own text (the trap fallback's exempt range), the
//! vDSO's functions, the instance directory, the compiled policy — and calls
//! [`shunt_core::install`]. Used by `libshunt.so`'s constructor, by
//! `shunt load` (through the loader) and by benchmarks and tests.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::{Path, PathBuf};

use shunt_abi::policy::Rules;
use shunt_core::vdso;

/// What to install.
#[derive(Default)]
pub struct Options {
    /// Arm the trap fallback (Syscall User Dispatch) on attached threads.
    pub trap: bool,
    /// Instance directory: stats segments and the events file go here.
    /// Without one, counters live in private memory and are not reported.
    pub instance_dir: Option<PathBuf>,
    /// Policy to apply; `None` allows everything.
    pub policy: Option<Rules>,
    /// Stand-alone mode: this process writes the instance's JSON report here
    /// when it exits (requires `instance_dir`).
    pub report_to: Option<PathBuf>,
    /// The runtime library, preloaded into exec'd dynamic programs.
    pub lib: Option<PathBuf>,
    /// The shunt binary, whose `shunt load` runs exec'd static programs.
    pub exe: Option<PathBuf>,
    /// Patch glibc's syscall sites in memory (the preload reads this; off
    /// with `SHUNT_PATCH=0`).
    pub patch: bool,
    /// Rewrite the syscall sites of every other image at load time, from
    /// plans (the loader and the preload read this; off with
    /// `SHUNT_REWRITE=0`, `shunt run --no-rewrite`).
    pub rewrite: bool,
    /// Subsystems that own fds (registered at installation, before the
    /// inherited marks are restored).
    pub fd_owners: Vec<&'static shunt_core::fd_owner::FdOwner>,
    /// Marks of owned fds inherited across `execve` (`SHUNT_FDS`).
    pub inherited_fds: Option<String>,
    /// Ring connections carried across `execve` (`SHUNT_CONNS`).
    pub inherited_conns: Option<String>,
    /// Carry loopback TCP between shunt processes over shared-memory rings
    /// (`SHUNT_TRANSPORT=shm`; `kernel`, the default, leaves sockets alone).
    pub transport: bool,
    /// How blocking waits spin before they park (`SHUNT_SPIN=auto|off|µs`;
    /// off by default).
    pub spin: Option<shunt_core::net::SpinMode>,
    /// The instance's segment broker socket (`SHUNT_SEGMENT_BROKER`, set by
    /// the supervisor): makes the stats segment of a process that changed
    /// its user. Inherited across `execve` like the instance itself.
    pub segment_broker: Option<i32>,
}

/// Why the runtime could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("this CPU or kernel does not allow FSGSBASE instructions from user space (needs Linux 5.9+)")]
    NoFsgsbase,
    #[error("could not locate the runtime's own code")]
    NoText,
    #[error("instance directory {0}: {1}")]
    InstanceDir(PathBuf, std::io::Error),
    #[error("{0}")]
    Core(shunt_core::InstallError),
    #[error("too many subsystems own file descriptors")]
    TooManyFdOwners,
}

/// Installs the runtime in this process and attaches the calling thread.
/// Call it while the process is single-threaded (a constructor, a loader,
/// the start of a benchmark).
pub fn install(opts: Options) -> Result<(), InstallError> {
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: getauxval reads the auxiliary vector; no memory is handed over.
    if unsafe { libc::getauxval(libc::AT_HWCAP2) } & HWCAP2_FSGSBASE == 0 {
        return Err(InstallError::NoFsgsbase);
    }
    let text = own_text().ok_or(InstallError::NoText)?;
    if let Some(dir) = &opts.instance_dir {
        // The supervisor made it; it is never created here: a process that
        // outlives its instance must not recreate (and leak) the directory,
        // and under `--isolate` a policy may deny `mkdir` to everyone.
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(InstallError::InstanceDir(dir.clone(), std::io::Error::from_raw_os_error(libc::ENOTDIR))),
            Err(e) => return Err(InstallError::InstanceDir(dir.clone(), e)),
        }
    }
    let (vars, preload_index, loader) = exec_injection(&opts);
    let var_refs: Vec<&[u8]> = vars.iter().map(Vec::as_slice).collect();
    let bytes = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();
    let dir = opts.instance_dir.as_deref().map(bytes);
    let report = opts.report_to.as_deref().map(bytes);
    let params = shunt_core::InstallParams {
        text,
        vdso: vdso_functions(),
        trap: opts.trap,
        instance_dir: dir.as_deref(),
        report_to: report.as_deref(),
        rules: opts.policy.as_ref(),
        exec_vars: &var_refs,
        preload_index,
        loader: &loader,
        transport: opts.transport,
        spin: opts.spin.unwrap_or(shunt_core::net::SpinMode::Off),
        segment_broker: opts.segment_broker,
    };
    // SAFETY: FSGSBASE was checked; `text` is this object's executable
    // segment and the vDSO functions come from glibc's own lookup; the
    // caller runs this while the process is single-threaded.
    unsafe { shunt_core::install(&params) }.map_err(InstallError::Core)?;
    for o in &opts.fd_owners {
        shunt_core::fd_owner::register_owner(o).map_err(|_| InstallError::TooManyFdOwners)?;
    }
    if let Some(spec) = &opts.inherited_fds {
        shunt_core::fd_owner::restore_inherited(spec);
    }
    if let Some(spec) = &opts.inherited_conns {
        // After the marks above: a connection's fd the table carried as
        // something else (a vfork child's renumbered fds) is re-marked.
        shunt_core::net::restore_conns(spec);
    }
    if opts.trap && opts.rewrite {
        shunt_core::lazy::enable();
        // SIGTRAP may be the runtime's now: an inherited block of it
        // becomes the program's belief only (a rewrite's `int3` must reach
        // the runtime's handler).
        shunt_core::sys::signal::adopt_inherited_mask();
        cover_vdso_fallbacks();
    }
    Ok(())
}

/// The vDSO's `clock_getres`, `clock_gettime` and `gettimeofday` answer
/// what they can in user space and fall back to a `syscall` of their own
/// for the rest: per-thread and per-process CPU clocks (a JVM asks about
/// and reads them), or any clock on a clocksource the vDSO cannot read.
/// Those sites are outside every plan, so they trapped; they are rewritten
/// now, while the process is single-threaded, to go through the gate
/// (`shunt_core::lazy::rewrite_known_site`). The runtime's own time
/// handlers call these functions too; the sites' trampolines send the
/// runtime's own calls straight to the kernel, so the gate is never
/// re-entered from there. Returns how many sites were rewritten.
fn cover_vdso_fallbacks() -> usize {
    let v = vdso_functions();
    [(v.clock_getres, 229u8), (v.clock_gettime, 228), (v.gettimeofday, 96)]
        .into_iter()
        .map(|(f, nr)| cover_vdso_fallback(f, nr))
        .sum()
}

/// Rewrites the `mov $nr,%eax; syscall` sites of the vDSO function at `f`.
fn cover_vdso_fallback(f: usize, nr: u8) -> usize {
    const RTLD_DL_SYMENT: libc::c_int = 1;
    let site: [u8; 7] = [0xb8, nr, 0, 0, 0, 0x0f, 0x05]; // mov $nr,%eax; syscall
    if f == 0 {
        return 0;
    }
    // SAFETY: dladdr1 fills `info` and points `sym` at the vDSO's symbol
    // table entry (an Elf64_Sym, st_size at offset 16) for an address
    // glibc knows; the function's bytes [f, f + size) are mapped text.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let mut sym: *mut libc::c_void = std::ptr::null_mut();
        if libc::dladdr1(f as *const _, &mut info, &mut sym, RTLD_DL_SYMENT) == 0 || sym.is_null() {
            return 0;
        }
        let size = std::ptr::read_unaligned((sym as *const u8).add(16) as *const u64) as usize;
        if !(site.len()..=4096).contains(&size) {
            return 0;
        }
        let text = std::slice::from_raw_parts(f as *const u8, size);
        let mut done = 0;
        for (i, w) in text.windows(site.len()).enumerate() {
            if w == site && shunt_core::lazy::rewrite_known_site((f + i + site.len()) as u64, nr as u64) {
                done += 1;
            }
        }
        done
    }
}

/// Whether the runtime is installed in this process.
pub fn installed() -> bool {
    shunt_core::installed()
}

/// `NAME=value\0`.
fn entry(name: &str, value: &Path) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(b'=');
    v.extend_from_slice(value.as_os_str().as_encoded_bytes());
    v.push(0);
    v
}

/// What `execve` adds to every new image so that it stays in the instance:
/// the variables, which of them is `LD_PRELOAD`, and the loader's path.
fn exec_injection(opts: &Options) -> (Vec<Vec<u8>>, Option<usize>, Vec<u8>) {
    let Some(dir) = &opts.instance_dir else { return (Vec::new(), None, Vec::new()) };
    let mut vars = vec![entry("SHUNT_INSTANCE", dir)];
    if let Some(fd) = opts.segment_broker {
        vars.push(format!("SHUNT_SEGMENT_BROKER={fd}\0").into_bytes());
    }
    let mut preload_index = None;
    if let Some(lib) = &opts.lib {
        preload_index = Some(vars.len());
        vars.push(entry("LD_PRELOAD", lib));
        vars.push(entry("SHUNT_LIB", lib));
    }
    let mut loader = Vec::new();
    if let Some(exe) = &opts.exe {
        vars.push(entry("SHUNT_EXE", exe));
        loader = exe.as_os_str().as_encoded_bytes().to_vec();
        loader.push(0);
    }
    if !opts.trap {
        vars.push(b"SHUNT_TRAP=0\0".to_vec());
    }
    if !opts.patch {
        vars.push(b"SHUNT_PATCH=0\0".to_vec());
    }
    if !opts.rewrite {
        vars.push(b"SHUNT_REWRITE=0\0".to_vec());
    }
    if opts.transport {
        vars.push(b"SHUNT_TRANSPORT=shm\0".to_vec());
    }
    match opts.spin {
        None | Some(shunt_core::net::SpinMode::Off) => {}
        Some(shunt_core::net::SpinMode::Auto) => vars.push(b"SHUNT_SPIN=auto\0".to_vec()),
        Some(shunt_core::net::SpinMode::Fixed(ns)) => vars.push(format!("SHUNT_SPIN={}\0", ns / 1000).into_bytes()),
    }
    (vars, preload_index, loader)
}

/// The runtime's executable segment: the exempt range of the trap fallback.
fn own_text() -> Option<(u64, u64)> {
    let me = own_text as *const () as usize as u64;
    let mut info: libc::Dl_info = empty_dl_info();
    // SAFETY: dladdr fills `info` for an address inside this object.
    if unsafe { libc::dladdr(me as *const libc::c_void, &mut info) } == 0 || info.dli_fbase.is_null() {
        return None;
    }
    let base = info.dli_fbase as usize;
    // SAFETY: `dli_fbase` is the load address of a mapped ELF object, whose
    // header and program headers are mapped with it (the first PT_LOAD).
    let (ehdr, phdrs) = unsafe {
        let ehdr = &*(base as *const libc::Elf64_Ehdr);
        let phdrs = std::slice::from_raw_parts(
            (base + ehdr.e_phoff as usize) as *const libc::Elf64_Phdr,
            ehdr.e_phnum as usize,
        );
        (ehdr, phdrs)
    };
    let bias = if ehdr.e_type == libc::ET_EXEC { 0 } else { base as u64 };
    phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
        .map(|p| (bias + p.p_vaddr, p.p_memsz))
        .find(|(start, len)| me >= *start && me < start + len)
}

/// A `Dl_info` for `dladdr` to fill.
fn empty_dl_info() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

/// The vDSO's functions, found by glibc's dynamic linker (which has parsed
/// the vDSO already): no ELF parser needed here.
fn vdso_functions() -> vdso::Functions {
    // SAFETY: dlopen with RTLD_NOLOAD only looks up an object already
    // loaded (glibc registers the vDSO as linux-vdso.so.1); dlvsym reads
    // its symbol table. Both take NUL-terminated names.
    unsafe {
        let h = libc::dlopen(c"linux-vdso.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if h.is_null() {
            return vdso::Functions::default();
        }
        let sym = |name: &std::ffi::CStr| libc::dlvsym(h, name.as_ptr(), c"LINUX_2.6".as_ptr()) as usize;
        let f = vdso::Functions {
            clock_gettime: sym(c"__vdso_clock_gettime"),
            gettimeofday: sym(c"__vdso_gettimeofday"),
            time: sym(c"__vdso_time"),
            clock_getres: sym(c"__vdso_clock_getres"),
            getcpu: sym(c"__vdso_getcpu"),
        };
        libc::dlclose(h);
        f
    }
}

/// `Options` from the environment that `shunt run` (or a stand-alone
/// `SHUNT_STATS=FILE ./prog`) sets, for the library constructor and the
/// loader: `SHUNT_INSTANCE`, `SHUNT_STATS`, `SHUNT_TRAP`, `SHUNT_LIB`,
/// `SHUNT_EXE`, `SHUNT_PATCH`, `SHUNT_REWRITE`; the policy is read from `<instance>/policy`
/// if present.
///
/// The variables are then removed from the environment, and libshunt.so from
/// `LD_PRELOAD`, so that the program sees the environment it would have
/// natively; `execve` puts them back for the next image (the core's
/// `sys/exec.rs`). Call it while the process is single-threaded (a
/// constructor, a loader).
pub fn options_from_env() -> Result<Options, String> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut opts = Options {
        lib: var("SHUNT_LIB").map(PathBuf::from).or_else(own_shared_object),
        exe: var("SHUNT_EXE").map(PathBuf::from).or_else(own_executable),
        patch: var("SHUNT_PATCH").is_none_or(|v| v != "0"),
        rewrite: var("SHUNT_REWRITE").is_none_or(|v| v != "0"),
        ..Default::default()
    };
    if let Some(dir) = var("SHUNT_INSTANCE") {
        let dir = PathBuf::from(dir);
        let policy_file = dir.join("policy");
        // Only a missing file means "no policy"; one this process may not
        // read is an error (running on without the policy would fail open).
        match std::fs::read_to_string(&policy_file) {
            Ok(text) => opts.policy = Some(Rules::parse_compiled(&text).map_err(|e| format!("{}: {e}", policy_file.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read the instance's policy {}: {e}", policy_file.display())),
        }
        opts.instance_dir = Some(dir);
        // A number that is no descriptor number is no broker: the process
        // then runs as without one.
        opts.segment_broker = var("SHUNT_SEGMENT_BROKER").and_then(|v| v.to_str()?.parse::<i32>().ok()).filter(|fd| *fd > 2);
    } else if let Some(report) = var("SHUNT_STATS") {
        // Stand-alone: this process is the root of its own instance. No
        // supervisor made the directory, so this process does (private to
        // its user; the report writer removes it at exit).
        let report = PathBuf::from(report);
        let dir = std::env::temp_dir().join(format!("shunt-{}-{}", std::process::id(), nanos()));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create the instance directory {}: {e}", dir.display()))?;
        }
        opts.instance_dir = Some(dir);
        opts.report_to = Some(report);
    }
    // The trap fallback is armed when there is an instance to report to
    // (`shunt run`, or stand-alone stats), unless SHUNT_TRAP says otherwise:
    // a `shunt cc` program run natively needs no fallback once glibc is
    // patched, and SUD taxes every syscall it lets through.
    opts.trap = match var("SHUNT_TRAP").as_deref().and_then(|v| v.to_str()) {
        Some("0") => false,
        Some(_) => true,
        None => opts.instance_dir.is_some(),
    };
    opts.inherited_fds = var("SHUNT_FDS").map(|v| v.to_string_lossy().into_owned());
    opts.inherited_conns = var("SHUNT_CONNS").map(|v| v.to_string_lossy().into_owned());
    if let Some(t) = var("SHUNT_TRANSPORT") {
        opts.transport = match t.to_str() {
            Some("shm") => true,
            Some("kernel") => false,
            _ => return Err(format!("SHUNT_TRANSPORT={}: expected shm or kernel", t.to_string_lossy())),
        };
    }
    if let Some(s) = var("SHUNT_SPIN") {
        let mode = s.to_str().and_then(shunt_core::net::SpinMode::parse);
        opts.spin = Some(mode.ok_or_else(|| {
            format!("SHUNT_SPIN={}: expected auto, off or a number of microseconds (at most 1000000)", s.to_string_lossy())
        })?);
    }
    for k in [
        "SHUNT_INSTANCE",
        "SHUNT_STATS",
        "SHUNT_TRAP",
        "SHUNT_LIB",
        "SHUNT_EXE",
        "SHUNT_PATCH",
        "SHUNT_REWRITE",
        "SHUNT_FDS",
        "SHUNT_CONNS",
        "SHUNT_TRANSPORT",
        "SHUNT_SPIN",
        "SHUNT_SEGMENT_BROKER",
    ] {
        // (SHUNT_SIGPIPE is the loader's, read and removed by `shunt load`.)
        std::env::remove_var(k);
    }
    if let (Some(lib), Some(preload)) = (&opts.lib, std::env::var_os("LD_PRELOAD")) {
        let rest: Vec<_> = preload
            .to_string_lossy()
            .split([':', ' '])
            .filter(|e| !e.is_empty() && Path::new(e) != lib.as_path() && !e.ends_with("/libshunt.so"))
            .map(str::to_string)
            .collect();
        if rest.is_empty() {
            std::env::remove_var("LD_PRELOAD");
        } else {
            std::env::set_var("LD_PRELOAD", rest.join(":"));
        }
    }
    Ok(opts)
}

/// The path of the shared object this code is in when it is one
/// (libshunt.so); `None` in the shunt executable.
fn own_shared_object() -> Option<PathBuf> {
    let mut info = empty_dl_info();
    // SAFETY: dladdr fills `info` for an address inside this object.
    let found = unsafe { libc::dladdr(own_shared_object as *const () as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr's file name is a NUL-terminated string owned by the
    // dynamic linker for as long as the object is loaded.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_str().ok()?;
    let file = Path::new(name).file_name()?.to_string_lossy().to_string();
    if !(file.ends_with(".so") || file.contains(".so.")) {
        return None;
    }
    std::fs::canonicalize(name).ok()
}

/// The shunt executable, when this code is in it (the loader).
fn own_executable() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_name()?.to_string_lossy().to_string();
    (name == "shunt" || name == "shunt-load").then_some(exe)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
