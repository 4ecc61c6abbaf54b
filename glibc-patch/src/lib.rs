//! glibc-patch: makes glibc's own `syscall` sites call the shunt gate.
//!
//! glibc inlines its system calls: `printf → write`, `malloc → mmap`,
//! `pthread_create → clone3` never pass through an exported wrapper that a
//! preload could interpose. glibc 2.36 (Debian 12) has 526 `syscall` sites in
//! libc.so.6 and 46 in ld.so. This crate finds them and plans, for each, how to
//! replace it by a jump to a trampoline that calls the gate; the runtime
//! (`shunt_patch`) applies the plan in memory when `libshunt.so`
//! loads.
//!
//! # Decision: patch in memory from a per-build plan
//!
//! Not shipped: patched copies of libc.so.6 and ld.so. Instead:
//!
//! - **`shunt run` of any existing binary gets the patch for free**: the
//!   preloaded runtime patches the glibc the program already loaded. A patched
//!   copy would need the program's interpreter and library path changed.
//! - **`shunt cc` programs stay ordinary**: `libshunt.so` is a normal
//!   `DT_NEEDED` dependency with an rpath; the interpreter is the system's
//!   ld.so, so the binary runs (natively) wherever libshunt.so is.
//! - **Safe across glibc builds**: a plan is keyed by the GNU build-id and the
//!   runtime applies it only when every original byte of every site matches.
//!   Another glibc build gets its plan regenerated (`shunt glibc plan`,
//!   automatic in `shunt cc`), or is left whole to the trap fallback — never
//!   patched unsafely.
//! - **Cost, measured on this machine** (Debian 12, glibc 2.36, 2 vCPU VM,
//!   release build; `SHUNT_DEBUG=1` prints the figures of every process):
//!   - coverage: libc.so.6 525 of 526 sites patched (520 backward, 5
//!     forward), ld.so 45 of 46 (42 backward, 3 forward); the one left in
//!     each is `__restore_rt`'s `rt_sigreturn`, allowlisted;
//!   - start-up, per process: ~0.6 ms to find, parse and apply both plans
//!     (libc: parse ~0.15 ms, apply ~0.3 ms; ld.so ~0.1 ms), on top of the
//!     runtime's own installation;
//!   - memory: the text pages that hold a site become private copies, 60
//!     pages of libc and 14 of ld.so (`Private_Dirty` 240 + 56 KiB in
//!     `/proc/self/smaps`), plus 5 + 1 pages of trampolines (16.4 + 1.5 KB);
//!     `fork` children share them until they write them;
//!   - planning (once per glibc build, `shunt glibc plan` or the first
//!     `shunt cc`): ~0.2 s for both objects.
//!
//!   A patched copy of the libraries would cost nothing per process, but
//!   every program would need a custom interpreter and library path, and
//!   `shunt run` could not patch the binaries it is given. If the start-up
//!   cost ever matters, the patched text pages and trampolines can be cached
//!   in a file per build-id and mapped over the text (shared page cache, no
//!   parsing, no copy-on-write): the rewrite stays in memory and keyed by
//!   build-id, only its result is reused.
//!
//! # The planner
//!
//! See [`planner`]: linear decoding with iced-x86, a branch-target analysis of
//! the whole text, and per-site runs displaced backward (before the
//! `syscall`), forward (after it) or both, never displacing a branch or a
//! RIP-relative instruction and never swallowing a branch target.
//!
//! # The audit
//!
//! [`audit`]: every `syscall`/`sysenter`/`int $0x80` with its function and
//! status (`patched` / `allowlisted` / `uncovered`, with the reason), as a
//! table or JSON (`shunt audit FILE [--json]`).

pub mod audit;
pub mod check;
pub mod elf;
pub mod planner;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use audit::{audit_file, Audit, AuditSite, Status};
pub use check::check_plan;
pub use elf::{ElfError, Flavour, Image};
pub use planner::{analyse, Analysis, PLANNER};
pub use shunt_patch::{plan_dirs, plan_file_name, Plan};

/// The glibc objects this process (linked with the machine's glibc) loaded:
/// libc.so.6 and the dynamic loader, as canonical paths.
pub fn machine_glibc() -> Result<Vec<PathBuf>> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("cannot read /proc/self/maps")?;
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else { continue };
        let file = path.rsplit('/').next().unwrap_or(path);
        if (file.starts_with("libc.so") || file.starts_with("libc-2.") || file.starts_with("ld-linux"))
            && !out.iter().any(|p| p == Path::new(path))
        {
            out.push(PathBuf::from(path));
        }
    }
    if out.is_empty() {
        bail!("this process has no glibc loaded (a static build of shunt?): name the files to plan");
    }
    Ok(out)
}

/// A plan file's `planner` line, if the file is a plan.
pub fn planner_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix("planner ").map(str::to_string))
}

/// Plans `object` and writes `<dir>/<key>.plan` (atomically: another
/// process may be doing the same), keyed by its GNU build-id or, without
/// one, its content (`sha256-…`). Returns the path and the analysis.
pub fn write_plan(object: &Path, dir: &Path) -> Result<(PathBuf, Analysis)> {
    let img = Image::load(object, false)?;
    let id = img.key.clone();
    let analysis = analyse(&img);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(plan_file_name(&id));
    let tmp = dir.join(format!(".{}.{}.tmp", plan_file_name(&id), std::process::id()));
    std::fs::write(&tmp, analysis.plan.to_text()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, analysis))
}

/// The build-id of an ELF file.
pub fn build_id_of(object: &Path) -> Result<String> {
    let img = Image::load(object, false)?;
    img.build_id.with_context(|| format!("{}: has no GNU build-id", object.display()))
}

/// What a plan of `object` is keyed by: its GNU build-id, else `sha256-…`
/// of its content. A build-id in a PT_NOTE (every glibc build) is read
/// from the file's first bytes ([`elf::build_id_in_file`]); only a file
/// without one is read whole.
pub fn plan_key_of(object: &Path) -> Result<String> {
    if let Some(id) = elf::build_id_in_file(object) {
        return Ok(id);
    }
    Ok(Image::load(object, false)?.key)
}


/// One line about a plan: how many sites it patches.
pub fn summary(a: &Analysis, path: &Path) -> String {
    let total = a.found.len();
    let allow = a.plan.left.iter().filter(|l| l.status == shunt_patch::LeftStatus::Allowlisted).count();
    format!(
        "{} of {total} syscall sites patched, {allow} allowlisted, {} uncovered; wrote {}",
        a.plan.sites.len(),
        a.plan.left.len() - allow,
        path.display()
    )
}

/// The first plan directory (of [`plan_dirs`]) that can be written.
pub fn writable_plan_dir(lib_dir: Option<&Path>) -> Result<PathBuf> {
    let dirs = plan_dirs(lib_dir);
    for d in &dirs {
        if std::fs::create_dir_all(d).is_ok() {
            let probe = d.join(format!(".probe-{}", std::process::id()));
            if std::fs::write(&probe, b"").is_ok() {
                let _ = std::fs::remove_file(&probe);
                return Ok(d.clone());
            }
        }
    }
    bail!(
        "no writable directory for glibc patch plans (tried {}); set SHUNT_PLANS",
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

/// The plan `libshunt.so` (in `lib_dir`) would use for `object`, if it
/// exists and was made by this planner.
pub fn current_plan(object: &Path, lib_dir: Option<&Path>) -> Result<Option<PathBuf>> {
    let id = plan_key_of(object)?;
    let name = plan_file_name(&id);
    let found = plan_dirs(lib_dir).into_iter().map(|d| d.join(&name)).find(|p| p.is_file());
    Ok(found.filter(|p| planner_of(p).as_deref() == Some(PLANNER)))
}

/// Makes sure the machine's glibc has current plans where `libshunt.so` (in
/// `lib_dir`) finds them; plans what is missing, with a progress line on
/// stderr. Returns the plan files.
pub fn ensure_plans(lib_dir: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for f in machine_glibc()? {
        if let Some(p) = current_plan(&f, lib_dir)? {
            out.push(p);
            continue;
        }
        let dir = writable_plan_dir(lib_dir)?;
        eprintln!("shunt: planning the in-memory patch of {} (once per glibc build)…", f.display());
        let (path, analysis) =
            write_plan(&f, &dir).with_context(|| format!("cannot plan the patch of {}", f.display()))?;
        eprintln!("shunt: {}", summary(&analysis, &path));
        out.push(path);
    }
    Ok(out)
}

/// The plan of one object as text, cached or made (and cached) now: what
/// `libshunt.so` asks its helper for (`glibc plan-for FILE [--loaded-id
/// ID]`) when it has no plan for an object it loaded, so that no planner
/// runs inside the program. `loaded_id`: the key of the loaded object; a
/// file on disk that is another build is refused.
pub fn plan_for(file: &Path, loaded_id: Option<&str>) -> Result<String> {
    let data = shunt_userfile::read(file, shunt_userfile::limit::ELF)?;
    let key = elf::plan_key(&data);
    if loaded_id.is_some_and(|id| id != key) {
        bail!("{} on disk is not the loaded object (build-id {key})", file.display());
    }
    Ok(cached_or_new_plan(file, &data, &key)?.to_text())
}

/// The arguments of `glibc plan-for` after its name, as `shunt` and
/// `shunt-load` both take them (one parser for the one command line the
/// preload's helper is started with, see [`plan_for`]): `FILE [--loaded-id ID]`.
#[derive(Debug, PartialEq)]
pub struct PlanForArgs {
    pub file: PathBuf,
    /// The build-id of the loaded object: a file that is another build is refused.
    pub loaded_id: Option<String>,
}

/// [`PlanForArgs`]' command line, for usage lines.
pub const PLAN_FOR_USAGE: &str = "glibc plan-for FILE [--loaded-id ID]";

impl PlanForArgs {
    /// Parses the words after `plan-for`; the error is a usage line.
    pub fn parse(args: &[std::ffi::OsString]) -> Result<Self, String> {
        let (file, loaded_id) = match args {
            [f] => (f, None),
            [f, flag, id] if flag == "--loaded-id" => (f, Some(id.to_string_lossy().into_owned())),
            _ => return Err(format!("usage: {PLAN_FOR_USAGE}")),
        };
        Ok(PlanForArgs { file: PathBuf::from(file), loaded_id })
    }

    /// Answers as the preload expects (it reads only the pipe): the plan on
    /// stdout and exit status 0, or one error line on stdout and 1.
    pub fn answer(&self) -> std::process::ExitCode {
        match plan_for(&self.file, self.loaded_id.as_deref()) {
            Ok(text) => {
                print!("{text}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// The plan of an image that is about to run (`data` is its file, `key` its
/// [`Image::key`]): the cached plan when one made by this planner exists in
/// [`plan_dirs`], else a new one, cached in the first writable plan
/// directory when there is one (best effort: a read-only cache only costs
/// planning again next time). Used by the loader for every static image it
/// maps.
pub fn cached_or_new_plan(path: &Path, data: &[u8], key: &str) -> Result<Plan> {
    let name = plan_file_name(key);
    for d in plan_dirs(None) {
        let p = d.join(&name);
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        if let Ok(plan) = Plan::parse(&text) {
            if plan.planner == PLANNER && plan.build_id == key {
                return Ok(plan);
            }
        }
    }
    let img = Image::parse(path, data.to_vec())?;
    if img.key != key {
        bail!("{}: its key changed while it was read ({} vs {key})", path.display(), img.key);
    }
    let analysis = analyse(&img);
    if let Ok(dir) = writable_plan_dir(None) {
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, analysis.plan.to_text()).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join(&name));
        }
    }
    Ok(analysis.plan)
}

#[cfg(test)]
mod tests {
    use super::PlanForArgs;
    use std::ffi::OsString;

    fn parse(a: &[&str]) -> Result<PlanForArgs, String> {
        PlanForArgs::parse(&a.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn plan_for_arguments_as_the_preload_writes_them() {
        assert_eq!(parse(&["/lib/libc.so.6"]).unwrap(), PlanForArgs { file: "/lib/libc.so.6".into(), loaded_id: None });
        assert_eq!(
            parse(&["/l", "--loaded-id", "ab12"]).unwrap(),
            PlanForArgs { file: "/l".into(), loaded_id: Some("ab12".into()) }
        );
        for bad in [&[][..], &["/l", "--loaded-id"], &["/l", "--other", "x"], &["/l", "/m"], &["/l", "--loaded-id", "x", "y"]] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
