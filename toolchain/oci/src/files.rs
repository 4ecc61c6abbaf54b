//! The runtime's files as a container sees them, read-only at `/.shunt`:
//!
//! ```text
//! /.shunt/shunt-load     the runtime's helper executable, what a static program is started
//!                        in (`shunt-load load --argv0 ARG0 -- PROGRAM`), chosen by the
//!                        supervisor's rule: `shunt-load`, or `shunt` (`shunt load`, the
//!                        same command line) where there is no shunt-load; given its own loader:
//! /.shunt/lib/           ... the host's ld.so and the libraries it needs (it must start
//!                        in any image: a busybox or scratch image has no glibc at all)
//! /.shunt/libshunt.so    the runtime library, preloaded into the image's own programs
//!                        (which keep the image's glibc: libshunt.so has no RUNPATH)
//! /.shunt/glibc-plans/   in-memory patch plans of the images' glibc builds (libshunt.so
//!                        looks next to itself) and load-time rewrite plans of the
//!                        containers' programs and their libraries (found through
//!                        `SHUNT_PLANS`), all made on the host at `create`
//! /.shunt/instance/      the mount point of the container's stats directory
//! ```
//!
//! Made once per build of shunt on the host, under `<cache root>/oci/<key>`
//! (the key names the source files' identity: inode, size, mtime), in a
//! temporary directory renamed into place, so concurrent `create`s never see
//! it half made. The helper's copy gets its interpreter and library path
//! rewritten by `patchelf` (Debian's); nothing else is changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, elf};

/// Where the runtime's files appear inside a container.
pub const MOUNT: &str = "/.shunt";
/// The container's stats directory inside it.
pub const INSTANCE: &str = "/.shunt/instance";

pub struct RuntimeFiles {
    /// The host directory bound at [`MOUNT`].
    pub dir: PathBuf,
}

/// The names the helper executable can have (the supervisor's
/// [`shunt_supervisor::loader_executable`] chose one): `shunt-load`, or
/// the whole `shunt` it falls back to.
const HELPERS: [&str; 2] = [shunt_supervisor::LOADER, "shunt"];

impl RuntimeFiles {
    /// The helper executable, as the container sees it (`SHUNT_EXE`):
    /// `/.shunt/shunt-load`, or `/.shunt/shunt` when this installation has
    /// no shunt-load. Both take `load --argv0 ARG0 -- PROGRAM ARGS…`.
    pub fn exe(&self) -> Result<String> {
        helper_in(&self.dir)
            .map(|name| format!("{MOUNT}/{name}"))
            .ok_or_else(|| anyhow!("{}: neither {} is there", self.dir.display(), HELPERS.join(" nor ")))
    }
}

/// The helper's name in a runtime-files directory, if it is made.
fn helper_in(dir: &Path) -> Option<&'static str> {
    HELPERS.into_iter().find(|n| dir.join(n).is_file())
}

/// Directories searched for a library, on the host and in images.
pub const LIB_DIRS: [&str; 6] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// The helper executable and `libshunt.so` of this installation, found
/// as the supervisor finds them (`shunt run` and the daemon): the library
/// next to `shunt-oci` (the cargo build layout), in `../lib/shunt`, or
/// `$SHUNT_LIB`; `shunt-load` beside `shunt-oci` or the library, else
/// `shunt`.
fn sources() -> Result<(PathBuf, PathBuf)> {
    let lib = shunt_supervisor::runtime_library()?;
    let exe = shunt_supervisor::loader_executable(&lib)
        .map_err(|e| anyhow!("{e:#} — build the whole workspace (cargo build --release)"))?;
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !HELPERS.contains(&name) {
        bail!("{}: the runtime's helper is named none of {}", exe.display(), HELPERS.join(", "));
    }
    Ok((exe, lib))
}

fn cache_root() -> PathBuf {
    shunt_paths::cache_root().unwrap_or_else(|| PathBuf::from("/var/cache/shunt"))
}

fn identity(p: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(format!("{:x}-{:x}-{:x}-{:x}", m.dev(), m.ino(), m.size(), m.mtime_nsec() as u64 ^ (m.mtime() as u64) << 30))
}

/// The runtime's files for containers, made if missing.
pub fn prepare() -> Result<RuntimeFiles> {
    let (exe, lib) = sources()?;
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (identity(&exe)?, identity(&lib)?).hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let base = cache_root().join("oci");
    let dir = base.join(&key);
    if helper_in(&dir).is_some() {
        return Ok(RuntimeFiles { dir });
    }
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let tmp = base.join(format!(".{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let made = make(&tmp, &exe, &lib);
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another create made it first.
        let _ = std::fs::remove_dir_all(&tmp);
        if helper_in(&dir).is_none() {
            bail!("cannot put the runtime's files in {}", dir.display());
        }
    }
    Ok(RuntimeFiles { dir })
}

fn make(tmp: &Path, exe: &Path, lib: &Path) -> Result<()> {
    for d in ["lib", "glibc-plans", "instance"] {
        std::fs::create_dir_all(tmp.join(d)).with_context(|| format!("cannot create {}", tmp.join(d).display()))?;
    }
    std::fs::copy(lib, tmp.join("libshunt.so")).with_context(|| format!("cannot copy {}", lib.display()))?;
    // Under its own name (sources() checked it is one of HELPERS).
    let helper = tmp.join(exe.file_name().context("the helper has no file name")?);
    std::fs::copy(exe, &helper).with_context(|| format!("cannot copy {}", exe.display()))?;
    // The host's loader and the helper's libraries, under their sonames.
    let interp = interpreter(exe)?.ok_or_else(|| anyhow!("{}: not dynamically linked", exe.display()))?;
    let interp_name = interp.file_name().context("the interpreter has no file name")?.to_owned();
    std::fs::copy(&interp, tmp.join("lib").join(&interp_name)).with_context(|| format!("cannot copy {}", interp.display()))?;
    let mut todo = vec![exe.to_path_buf()];
    let mut seen: Vec<String> = Vec::new();
    while let Some(obj) = todo.pop() {
        for name in needed(&obj)? {
            if seen.contains(&name) || Path::new(&name).file_name() == Some(interp_name.as_os_str()) {
                continue;
            }
            let found = LIB_DIRS
                .iter()
                .map(|d| Path::new(d).join(&name))
                .find(|p| p.is_file())
                .ok_or_else(|| anyhow!("{}: needs {name}, which is in none of {}", obj.display(), LIB_DIRS.join(", ")))?;
            std::fs::copy(&found, tmp.join("lib").join(&name)).with_context(|| format!("cannot copy {}", found.display()))?;
            seen.push(name);
            todo.push(found);
        }
    }
    let loader = Path::new(MOUNT).join("lib").join(&interp_name);
    let out = Command::new("patchelf")
        .arg("--set-interpreter")
        .arg(&loader)
        .arg("--set-rpath")
        .arg(Path::new(MOUNT).join("lib"))
        .arg(&helper)
        .output()
        .map_err(|e| anyhow!("cannot run patchelf ({e}): apt-get install patchelf (scripts/setup.sh does)"))?;
    if !out.status.success() {
        bail!("patchelf {}: {}", helper.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The program interpreter (`PT_INTERP`) of an ELF file.
pub fn interpreter(path: &Path) -> Result<Option<PathBuf>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let hdr = elf::FileHeader64::<Endianness>::parse(&*data).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let e = hdr.endian().map_err(|err| anyhow!("{}: {err}", path.display()))?;
    for ph in hdr.program_headers(e, &*data).map_err(|err| anyhow!("{}: {err}", path.display()))? {
        if let Some(bytes) = ph.interpreter(e, &*data).map_err(|err| anyhow!("{}: {err}", path.display()))? {
            return Ok(Some(PathBuf::from(String::from_utf8_lossy(bytes).into_owned())));
        }
    }
    Ok(None)
}

/// The `DT_NEEDED` names of an ELF file.
fn needed(path: &Path) -> Result<Vec<String>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = |err: object::Error| anyhow!("{}: {err}", path.display());
    let hdr = elf::FileHeader64::<Endianness>::parse(&*data).map_err(bad)?;
    let e = hdr.endian().map_err(bad)?;
    let sections = hdr.sections(e, &*data).map_err(bad)?;
    let mut out = Vec::new();
    if let Some((dyns, link)) = sections.dynamic(e, &*data).map_err(bad)? {
        let strings = sections.strings(e, &*data, link).map_err(bad)?;
        for d in dyns {
            if d.d_tag(e) == elf::DT_NEEDED {
                let name = strings.get(d.val(e) as u32).map_err(|()| anyhow!("{}: a bad DT_NEEDED entry", path.display()))?;
                out.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(out)
}

/// Makes sure `files` holds patch plans for the glibc of the image at
/// `rootfs` (its libc and ld.so, wherever the image keeps them), so that
/// the image's programs run with glibc patched instead of trapping.
pub fn plan_image_glibc(files: &RuntimeFiles, rootfs: &Path) -> Vec<String> {
    let plans = files.dir.join("glibc-plans");
    let mut warnings = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for d in LIB_DIRS {
        for name in ["libc.so.6", "ld-linux-x86-64.so.2"] {
            let Ok(host) = shunt_supervisor::in_root(rootfs, &Path::new(d).join(name)) else { continue };
            let key = match shunt_glibc_patch::plan_key_of(&host) {
                Ok(k) => k,
                Err(e) => {
                    warnings.push(format!("{e:#}"));
                    continue;
                }
            };
            if done.contains(&key) {
                continue;
            }
            done.push(key.clone());
            let plan = plans.join(shunt_glibc_patch::plan_file_name(&key));
            if plan.is_file() && shunt_glibc_patch::planner_of(&plan).as_deref() == Some(shunt_glibc_patch::PLANNER) {
                continue;
            }
            if let Err(e) = shunt_glibc_patch::write_plan(&host, &plans) {
                warnings.push(format!("cannot plan the patch of the image's {name} ({e:#}); its calls are trapped"));
            }
        }
    }
    warnings
}

/// Makes sure `files` holds the load-time rewrite plans of `program` (its
/// file on the host, inside the image at `rootfs`; none for a script) and
/// of the libraries it needs, and with `preloaded` of those `libshunt.so`
/// needs (found in the image's library directories), so that the runtime
/// inside the container finds them (`SHUNT_PLANS`) instead of planning at
/// every start and caching the plans in the container's own filesystem
/// (its `$HOME`) with calls counted as the program's. Libraries the
/// program opens later (`dlopen`) are planned in the container as before.
pub fn plan_program(files: &RuntimeFiles, rootfs: &Path, program: Option<&Path>, preloaded: bool) -> Vec<String> {
    let plans = files.dir.join("glibc-plans");
    let mut warnings = Vec::new();
    let mut todo: Vec<PathBuf> = program.map(Path::to_path_buf).into_iter().collect();
    let mut seen: Vec<String> = Vec::new();
    let in_image = |name: &str| {
        LIB_DIRS.iter().find_map(|d| shunt_supervisor::in_root(rootfs, &Path::new(d).join(name)).ok().filter(|p| p.is_file()))
    };
    if preloaded {
        // libshunt.so itself is the runtime (never rewritten); its
        // libraries come from the image.
        for name in needed(&files.dir.join("libshunt.so")).unwrap_or_default() {
            if !seen.contains(&name) {
                todo.extend(in_image(&name));
                seen.push(name);
            }
        }
    }
    while let Some(obj) = todo.pop() {
        let key = match shunt_glibc_patch::plan_key_of(&obj) {
            Ok(k) => k,
            Err(e) => {
                warnings.push(format!("{e:#}"));
                continue;
            }
        };
        let plan = plans.join(shunt_glibc_patch::plan_file_name(&key));
        let current = plan.is_file() && shunt_glibc_patch::planner_of(&plan).as_deref() == Some(shunt_glibc_patch::PLANNER);
        if !current {
            if let Err(e) = shunt_glibc_patch::write_plan(&obj, &plans) {
                warnings.push(format!("cannot plan the rewrite of {} ({e:#}); it is planned in the container", obj.display()));
            }
        }
        let Ok(names) = needed(&obj) else { continue };
        for name in names {
            if seen.contains(&name) || name.contains('/') {
                continue;
            }
            // Not found: the dynamic linker will say so when it runs.
            todo.extend(in_image(&name));
            seen.push(name);
        }
    }
    warnings
}
