//! Starting a program on the shunt runtime (or natively): what to exec, with
//! which arguments and environment.
//!
//! On the runtime, the instance directory gets the compiled policy
//! (`policy`) and an empty `events` file, and the program is started so
//! that every process of the instance installs the runtime:
//! - a dynamically linked program or a `#!` script: with `libshunt.so` in
//!   `LD_PRELOAD` (after making sure this machine's glibc has its in-memory
//!   patch plans);
//! - a static program (a Go binary): inside `shunt load`, which maps it into
//!   the runtime's own process.
//!
//! `SHUNT_INSTANCE`, `SHUNT_LIB`, `SHUNT_EXE` (and `SHUNT_TRAP=0`,
//! `SHUNT_PATCH=0`, `SHUNT_REWRITE=0`) tell the runtime where it is; it hides them, and its own
//! `LD_PRELOAD` entry, from the program, and `execve` puts them back for
//! every new image.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use object::read::elf::FileHeader;
use object::{elf, Endianness};
use shunt_policy::Compiled;

use crate::spec::{LaunchSpec, Runtime, ShuntOptions, Spin, Transport};

pub const RUNTIME_LIBRARY: &str = "libshunt.so";

/// The policy in `file`, or the built-in profile.
pub fn load_policy(file: Option<&Path>) -> Result<Compiled> {
    match file {
        None => Ok(Compiled::builtin()),
        Some(f) => {
            let text = shunt_userfile::read_to_string(f, shunt_userfile::limit::POLICY).map_err(|e| anyhow!("policy {e}"))?;
            Ok(Compiled::from_toml(&f.display().to_string(), &text)?)
        }
    }
}

/// `$SHUNT_LIB`, else `libshunt.so` next to this executable (the cargo
/// build layout) or in `../lib/shunt` (an installed layout).
pub fn runtime_library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHUNT_LIB").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("SHUNT_LIB={} is not a file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot find the shunt executable")?;
    let dir = exe.parent().context("the shunt executable has no directory")?;
    for candidate in [dir.join(RUNTIME_LIBRARY), dir.join("../lib/shunt").join(RUNTIME_LIBRARY)] {
        if candidate.is_file() {
            return Ok(candidate.canonicalize().unwrap_or(candidate));
        }
    }
    bail!(
        "the runtime library {RUNTIME_LIBRARY} is not next to {} — build the whole workspace \
         (`cargo build --release`) or set SHUNT_LIB",
        exe.display()
    )
}

/// The runtime's helper executable (`SHUNT_EXE`: what a static program is
/// started in, `EXE load --argv0 …`, and what `libshunt.so` plans with):
/// `shunt-load` beside this executable or beside the runtime library (in
/// `../../bin` of an installed one), else `shunt` itself.
///
/// `shunt-load` is a small binary (the runtime, the loader, the planner),
/// where `shunt` links the whole toolchain — libssl and libcrypto among
/// it — whose dynamic linking alone cost ~4 ms of every cold start.
pub fn loader_executable(lib: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().ok();
    let lib_dir = lib.parent().unwrap_or(Path::new("."));
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = exe.as_deref().and_then(Path::parent) {
        candidates.push(dir.join(LOADER));
    }
    candidates.push(lib_dir.join(LOADER));
    candidates.push(lib_dir.join("../../bin").join(LOADER));
    if let Some(e) = exe.as_ref().filter(|e| e.file_name().is_some_and(|n| n == "shunt")) {
        candidates.push(e.clone());
    }
    candidates.push(lib_dir.join("shunt"));
    candidates.push(lib_dir.join("../../bin/shunt"));
    for c in candidates {
        if c.is_file() {
            return Ok(c.canonicalize().unwrap_or(c));
        }
    }
    bail!("cannot find {LOADER} (or shunt) next to {} (name it in ShuntOptions::exe)", lib.display())
}

/// The file name of the runtime's helper executable.
pub const LOADER: &str = "shunt-load";

/// What kind of program a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A dynamically linked ELF (the runtime is preloaded).
    Dynamic,
    /// A `#!` script (its interpreter is preloaded).
    Script,
    /// A static ELF (a Go binary): `shunt load` maps it into the runtime's
    /// own process.
    Static,
}

/// Resolves `name` like the shell: a path if it has a `/` (relative to
/// `cwd` when given), else a search of `path_var`.
pub fn resolve(name: &OsStr, path_var: Option<&OsStr>, cwd: Option<&Path>) -> Result<PathBuf> {
    let p = Path::new(name);
    if name.as_encoded_bytes().contains(&b'/') {
        let full = match cwd {
            Some(d) if p.is_relative() => d.join(p),
            _ => p.to_path_buf(),
        };
        if !full.exists() {
            bail!("{}: no such file", p.display());
        }
        return Ok(full);
    }
    let here = cwd.map(Path::to_path_buf).or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| PathBuf::from("/"));
    which::which_in(name, path_var, here).map_err(|_| anyhow!("{}: command not found in PATH", p.display()))
}

/// Where `path` (absolute, inside `root`) is on this host: every symlink on
/// the way resolved inside `root` (an absolute target starts again at
/// `root`, `..` stops at it), as it will be once the program's process has
/// pivoted into it.
pub fn in_root(root: &Path, path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        bail!("{}: a program in a root of its own must be named by its absolute path inside it", path.display());
    }
    // Components still to walk, last first.
    fn parts(p: &Path) -> Vec<OsString> {
        use std::path::Component;
        let mut v: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        v.reverse();
        v
    }
    let mut todo = parts(path);
    let mut inside = PathBuf::from("/");
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            inside.pop();
            continue;
        }
        let next = inside.join(&c);
        let host = root.join(next.strip_prefix("/").unwrap_or(&next));
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    bail!("{}: too many symlinks inside {}", path.display(), root.display());
                }
                let target = std::fs::read_link(&host).with_context(|| format!("cannot read {}", host.display()))?;
                if target.is_absolute() {
                    inside = PathBuf::from("/");
                }
                todo.extend(parts(&target));
            }
            Ok(_) => inside = next,
            Err(_) => bail!("{}: no such file inside {}", path.display(), root.display()),
        }
    }
    Ok(root.join(inside.strip_prefix("/").unwrap_or(&inside)))
}

/// Checks that `path` is something the runtime can run, and says what it is.
pub fn classify(path: &Path) -> Result<Kind> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        bail!("{}: not executable (chmod +x it, or run its interpreter)", path.display());
    }
    let data = Mapped::of(path)?;
    let data: &[u8] = &data;
    if data.starts_with(b"#!") {
        return Ok(Kind::Script);
    }
    if !data.starts_with(b"\x7fELF") {
        bail!("{}: not an ELF executable or a #! script", path.display());
    }
    match data.get(4) {
        Some(2) => {} // ELFCLASS64
        Some(1) => bail!("{}: a 32-bit ELF; shunt runs x86-64 programs", path.display()),
        _ => bail!("{}: truncated or malformed ELF (no valid ELF class)", path.display()),
    }
    let hdr = elf::FileHeader64::<Endianness>::parse(data)
        .map_err(|e| anyhow!("{}: malformed ELF header ({e})", path.display()))?;
    let endian = hdr.endian().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if hdr.e_machine(endian) != elf::EM_X86_64 {
        bail!(
            "{}: built for another architecture (ELF machine {}); shunt runs x86-64 programs",
            path.display(),
            hdr.e_machine(endian)
        );
    }
    hdr.program_headers(endian, data)
        .map_err(|e| anyhow!("{}: truncated or malformed ELF ({e})", path.display()))?;
    if !shunt_loader::loader_runs(data) {
        return Ok(Kind::Dynamic);
    }
    // Everything the loader would refuse (cgo, collisions with fixed
    // addresses, bad segments) is refused here, before the instance.
    shunt_loader::Image::open(path)?;
    Ok(Kind::Static)
}

/// A program file mapped read-only: classifying a Go program of several
/// MiB touches its headers and tables only, where reading it copied all of
/// it (tens of milliseconds of every `shunt run` under load).
struct Mapped {
    ptr: *const u8,
    len: usize,
    /// A file that cannot be mapped (or is empty), read instead.
    read: Vec<u8>,
}

impl Mapped {
    fn of(path: &Path) -> Result<Mapped> {
        use std::os::fd::AsRawFd;
        let (file, size) = shunt_userfile::open_regular(path, shunt_userfile::limit::ELF)?;
        if size > 0 {
            // SAFETY: a fresh read-only private mapping of an open file at a
            // kernel-chosen address, unmapped once, in `drop`.
            let ptr = unsafe {
                libc::mmap(std::ptr::null_mut(), size as usize, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
            };
            if ptr != libc::MAP_FAILED {
                return Ok(Mapped { ptr: ptr as *const u8, len: size as usize, read: Vec::new() });
            }
        }
        Ok(Mapped { ptr: std::ptr::null(), len: 0, read: shunt_userfile::read(path, shunt_userfile::limit::ELF)? })
    }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &self.read;
        }
        // SAFETY: `len` bytes mapped readable at `ptr` while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: the mapping made in `of`; slices of it borrow `self`.
            unsafe { libc::munmap(self.ptr as *mut _, self.len) };
        }
    }
}

/// What this process has already found out, so that starting the next
/// instance of the same program costs nothing of it again (a daemon starts
/// many): each program file's [`Kind`] (keyed by the file's identity, so a
/// rebuilt file is classified again), the runtime libraries whose glibc
/// plans were made or found, and the seccomp filter of each policy. Reading
/// and parsing a Go program of several MiB, and libc's and ld.so's
/// symbol tables, took tens of milliseconds of every start.
mod once {
    use std::collections::{HashMap, HashSet};
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use anyhow::Result;

    use super::Kind;

    type FileId = (PathBuf, u64, u64, u64, i64, i64);

    static KINDS: Mutex<Option<HashMap<FileId, Kind>>> = Mutex::new(None);
    static PLANNED: Mutex<Option<HashSet<Option<PathBuf>>>> = Mutex::new(None);
    static FILTERS: Mutex<Option<HashMap<String, shunt_seccomp::Filter>>> = Mutex::new(None);

    fn id(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some((path.to_path_buf(), m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
    }

    /// [`super::classify`], once per file version.
    pub fn classify(path: &Path) -> Result<Kind> {
        let key = id(path);
        if let Some(k) = &key {
            if let Some(kind) = KINDS.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).get(k) {
                return Ok(*kind);
            }
        }
        let kind = super::classify(path)?;
        // Only when the file did not change while it was read.
        if let Some(k) = key.filter(|k| id(path).as_ref() == Some(k)) {
            KINDS.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).insert(k, kind);
        }
        Ok(kind)
    }

    /// `shunt_glibc_patch::ensure_plans`, until it succeeds once for `lib_dir`.
    pub fn ensure_plans(lib_dir: Option<&Path>) -> Result<()> {
        let key = lib_dir.map(Path::to_path_buf);
        if PLANNED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashSet::new).contains(&key) {
            return Ok(());
        }
        shunt_glibc_patch::ensure_plans(lib_dir)?;
        PLANNED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashSet::new).insert(key);
        Ok(())
    }

    /// The seccomp filter of `policy` (whose text is `text`), made once.
    pub fn filter(policy: &shunt_policy::Compiled, text: &str) -> Result<shunt_seccomp::Filter> {
        if let Some(f) = FILTERS.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).get(text) {
            return Ok(f.clone());
        }
        let f = shunt_seccomp::Filter::new(policy)?;
        FILTERS.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).insert(text.to_string(), f.clone());
        Ok(f)
    }
}

/// What the instance's first process execs.
pub(crate) struct Prepared {
    pub path: PathBuf,
    pub argv: Vec<OsString>,
    pub env: BTreeMap<OsString, OsString>,
    pub warnings: Vec<String>,
    /// The seccomp filter installed just before `execve` (`--isolate`).
    pub filter: Option<shunt_seccomp::Filter>,
}

/// Prepares `spec` (on the runtime: in `dir`, which exists).
pub(crate) fn prepare(spec: &LaunchSpec, dir: Option<&Path>) -> Result<Prepared> {
    let mut env = spec.resolved_env();
    // `path` is what is exec'd; `file` is where this process reads it.
    let (path, file) = match &spec.root {
        None => {
            let p = resolve(&spec.program, env.get(OsStr::new("PATH")).map(OsString::as_os_str), spec.cwd.as_deref())?;
            (p.clone(), p)
        }
        Some(root) => {
            if spec.cwd.is_some() {
                bail!("a program in a root of its own takes its working directory from the pre-exec hook, not current_dir");
            }
            let p = PathBuf::from(&spec.program);
            let file = in_root(root, &p)?;
            (p, file)
        }
    };
    let arg0 = spec.arg0.clone().unwrap_or_else(|| spec.program.clone());
    let opts = match &spec.runtime {
        Runtime::Native => {
            let mut argv = vec![arg0];
            argv.extend(spec.args.iter().cloned());
            return Ok(Prepared { path, argv, env, warnings: Vec::new(), filter: None });
        }
        Runtime::Shunt(o) => o,
    };
    check_supported(opts)?;
    let dir = dir.context("an instance on the runtime needs an instance directory")?;
    let kind = once::classify(&file)?;
    let lib = match &opts.lib {
        Some(l) => l.clone(),
        None => runtime_library()?,
    };
    let exe = match &opts.exe {
        Some(e) => e.clone(),
        None => loader_executable(&lib)?,
    };
    let policy = opts.policy.clone().unwrap_or_else(Compiled::builtin);
    let policy_text = policy.to_text();
    let filter = if opts.isolate { Some(once::filter(&policy, &policy_text)?) } else { None };
    std::fs::write(dir.join("policy"), &policy_text).context("cannot write the policy")?;
    // Every process of the instance reads the policy when it starts, also one
    // that changed its user (`setpriv --reuid`): the directory is searchable
    // and the policy readable by anyone (it is no secret; the stats segments
    // stay 0600, and the broker makes them for a new user). Without this such
    // a process found no policy and ran without one.
    // Whatever the umask: add search to the directory (o+x) and read to the
    // policy (a+r), take nothing away.
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let widen = |p: &Path, bits: u32| -> Result<()> {
            let mode = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?.mode() & 0o7777;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | bits))
                .with_context(|| format!("cannot open {} to the instance's other users", p.display()))
        };
        widen(dir, 0o111)?;
        widen(&dir.join("policy"), 0o444)?;
    }
    std::fs::write(dir.join("events"), b"").context("cannot create the events file")?;

    let mut warnings = Vec::new();
    if opts.patch {
        // The plans that let libshunt.so patch glibc in memory (made once per
        // glibc build); without them glibc's calls are trapped, still counted.
        // Also for a static program: the dynamic programs it execs preload.
        if let Err(e) = once::ensure_plans(lib.parent()) {
            warnings.push(format!("{e:#} (glibc stays unpatched: its calls are trapped)"));
        }
    }
    let (path, argv) = match kind {
        Kind::Static => {
            let mut argv: Vec<OsString> =
                vec![exe.clone().into(), "load".into(), "--argv0".into(), arg0, "--".into(), path.into()];
            argv.extend(spec.args.iter().cloned());
            (exe.clone(), argv)
        }
        Kind::Dynamic | Kind::Script => {
            let mut preload = OsString::from(&lib);
            if let Some(existing) = env.get(OsStr::new("LD_PRELOAD")).filter(|v| !v.is_empty()) {
                preload.push(":");
                preload.push(existing);
            }
            env.insert("LD_PRELOAD".into(), preload);
            let mut argv = vec![arg0];
            argv.extend(spec.args.iter().cloned());
            (path, argv)
        }
    };
    env.insert("SHUNT_INSTANCE".into(), dir.into());
    env.insert("SHUNT_LIB".into(), lib.into());
    env.insert("SHUNT_EXE".into(), exe.into());
    env.remove(OsStr::new("SHUNT_STATS"));
    match opts.transport {
        Transport::SharedMemory => env.insert("SHUNT_TRANSPORT".into(), "shm".into()),
        Transport::Kernel => env.remove(OsStr::new("SHUNT_TRANSPORT")),
    };
    match opts.spin {
        Spin::Default => env.remove(OsStr::new("SHUNT_SPIN")),
        Spin::Never => env.insert("SHUNT_SPIN".into(), "off".into()),
        Spin::Auto => env.insert("SHUNT_SPIN".into(), "auto".into()),
        Spin::Micros(n) => env.insert("SHUNT_SPIN".into(), n.to_string().into()),
    };
    for (k, on) in [("SHUNT_TRAP", opts.trap), ("SHUNT_PATCH", opts.patch), ("SHUNT_REWRITE", opts.rewrite)] {
        if on {
            env.remove(OsStr::new(k));
        } else {
            env.insert(k.into(), "0".into());
        }
    }
    Ok(Prepared { path, argv, env, warnings, filter })
}

/// Options that later issues implement are refused, not ignored.
fn check_supported(o: &ShuntOptions) -> Result<()> {
    if let Spin::Micros(n) = o.spin {
        if n > 1_000_000 {
            bail!("spin of {n} µs: at most 1000000");
        }
    }
    if let Some(f) = &o.stats_file {
        crate::report::check_stats_path(f)?;
    }
    Ok(())
}
