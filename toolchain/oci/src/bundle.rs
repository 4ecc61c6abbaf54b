//! The edit of a bundle's `config.json` (and of `exec`'s process file)
//! that puts the container's process on the shunt runtime.
//!
//! The file is read twice over: as a typed OCI spec (`oci-spec`), which
//! validates it and gives the fields shunt needs (version, process, root,
//! annotations, user namespace mappings), and as a JSON tree, which is
//! what is edited and written back — so every field `shunt-oci` does not
//! change (including ones newer than the `oci-spec` release) reaches runc
//! exactly as containerd wrote it. The changes:
//!
//! - `mounts` += the runtime's files, read-only, at `/.shunt`, and the
//!   container's stats directory at `/.shunt/instance`;
//! - `process.env` += where the runtime is (`SHUNT_INSTANCE`, `SHUNT_LIB`,
//!   `SHUNT_EXE`, `SHUNT_PLANS`: the plans made on the host, and `SHUNT_TRAP=0` / `SHUNT_PATCH=0` / `SHUNT_REWRITE=0` when asked), and for
//!   a dynamically linked program or a script `LD_PRELOAD` of
//!   `libshunt.so` (the runtime hides all of these from the program);
//! - for a static program, `process.args` becomes
//!   `/.shunt/shunt-load load --argv0 ARG0 -- PROGRAM ARGS…`, the command
//!   line the supervisor execs (`/.shunt/shunt load …` where the
//!   installation has no `shunt-load`: [`files::RuntimeFiles::exe`]).
//!
//! The program is found as runc will find it — `process.args[0]` in the
//! process's `PATH`, inside the container's root filesystem (which the
//! shim has mounted by `create`), symlinks resolved inside it — and
//! classified by the supervisor's own rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::runtime::{Process, Spec};
use serde_json::{Value, json};
use shunt_supervisor::Kind;

use crate::args::Invocation;
use crate::files::{self, INSTANCE, MOUNT};
use crate::settings;
use crate::stats::{self, Record};

fn read_json(path: &Path, what: &str) -> Result<(String, Value)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{}: no such file: {what}", path.display()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    Ok((text, v))
}

/// Writes `v` to `path` whole or not at all, keeping the file's mode.
fn write_json(path: &Path, v: &Value) -> Result<()> {
    let tmp = path.with_extension("json.shunt-oci");
    std::fs::write(&tmp, serde_json::to_vec(v)?).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Ok(m) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, m.permissions());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The OCI runtime spec versions this edit is made for.
fn check_version(v: &str) -> Result<()> {
    let major = v.split('.').next().unwrap_or("");
    if major != "1" {
        bail!("config.json: OCI runtime spec version {v:?} is not supported (shunt-oci handles 1.x)");
    }
    Ok(())
}

/// `create`/`run`: edits `<bundle>/config.json` for the shunt runtime,
/// unless its annotations ask for the native path.
pub fn wrap_container(inv: &Invocation, bundle: &Path, id: &str) -> Result<()> {
    let config = bundle.join("config.json");
    if !bundle.is_dir() {
        bail!("bundle {}: no such directory", bundle.display());
    }
    let (text, mut tree) = read_json(&config, "the bundle has no config.json (an OCI bundle needs one)")?;
    let spec: Spec = serde_json::from_str(&text).with_context(|| format!("{}: not an OCI runtime spec", config.display()))?;
    check_version(spec.version())?;
    let settings = settings::from_annotations(&spec.annotations().clone().unwrap_or_default())?;
    if !settings.enabled {
        return Ok(());
    }
    let mounts = spec.mounts().clone().unwrap_or_default();
    if mounts.iter().any(|m| m.destination() == Path::new(MOUNT)) {
        return Ok(()); // edited already (a retried create)
    }
    let Some(process) = spec.process() else { return Ok(()) };
    let root = spec.root().as_ref().ok_or_else(|| anyhow!("{}: no root filesystem (root.path)", config.display()))?;
    let rootfs = if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) };

    let files = files::prepare()?;
    for w in files::plan_image_glibc(&files, &rootfs) {
        crate::log::warn(&inv.log, &w);
    }
    let stats_dir = settings.stats_dir.clone().unwrap_or_else(|| stats::default_stats_dir(&inv.root, id));
    let owner = host_owner(&spec, process);
    stats::prepare_dir(&stats_dir, &settings.policy.to_text(), owner)?;
    let record = Record { rootfs, stats_dir: stats_dir.clone(), trap: settings.trap, patch: settings.patch, rewrite: settings.rewrite, files: files.dir.clone() };

    let proc_tree = tree.get_mut("process").ok_or_else(|| anyhow!("config.json: no process"))?;
    wrap_process(proc_tree, process, &record, &inv.log)?;
    let mounts = tree.as_object_mut().context("config.json: not an object")?.entry("mounts").or_insert_with(|| json!([]));
    let list = mounts.as_array_mut().context("config.json: mounts is not a list")?;
    list.push(json!({
        "destination": MOUNT, "type": "bind", "source": files.dir,
        "options": ["rbind", "ro", "nosuid", "nodev"],
    }));
    list.push(json!({
        "destination": INSTANCE, "type": "bind", "source": stats_dir,
        "options": ["rbind", "rw", "nosuid", "nodev", "noexec"],
    }));
    write_json(&config, &tree)?;
    stats::save(&inv.root, id, &record)
}

/// `exec --process FILE`: the new process joins the container's instance
/// (a container that does not run on shunt is left alone).
pub fn wrap_exec(inv: &Invocation, id: &str, file: &Path) -> Result<()> {
    let Some(record) = stats::load(&inv.root, id)? else { return Ok(()) };
    let (text, mut tree) = read_json(file, "exec's process file")?;
    let process: Process = serde_json::from_str(&text).with_context(|| format!("{}: not an OCI process", file.display()))?;
    wrap_process(&mut tree, &process, &record, &inv.log)?;
    write_json(file, &tree)
}

/// The host uid and gid of the container's process (through the user
/// namespace's mappings, if it has one).
fn host_owner(spec: &Spec, p: &Process) -> (u32, u32) {
    let (uid, gid) = (p.user().uid(), p.user().gid());
    let Some(linux) = spec.linux() else { return (uid, gid) };
    let map = |id: u32, maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.as_ref()
            .and_then(|ms| {
                ms.iter().find(|m| id >= m.container_id() && id - m.container_id() < m.size()).map(|m| m.host_id() + (id - m.container_id()))
            })
            .unwrap_or(id)
    };
    (map(uid, linux.uid_mappings()), map(gid, linux.gid_mappings()))
}

fn env_map(env: &[String]) -> HashMap<&str, &str> {
    env.iter().filter_map(|e| e.split_once('=')).collect()
}

/// Edits one process (`config.json`'s `process`, or exec's file).
fn wrap_process(tree: &mut Value, p: &Process, r: &Record, log: &crate::log::Log) -> Result<()> {
    let args = p.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else { bail!("the process has no args: nothing to run") };
    let env = p.env().clone().unwrap_or_default();
    let vars = env_map(&env);
    let (inside, host) = find_program(&r.rootfs, arg0, vars.get("PATH").copied(), p.cwd())?;
    let kind = shunt_supervisor::classify(&host).with_context(|| {
        format!("{arg0}: cannot run it on shunt (set the annotation io.shunt.runtime=native to run it on plain runc)")
    })?;
    let files = files::RuntimeFiles { dir: r.files.clone() };
    let program = (kind != Kind::Script).then_some(host.as_path());
    for w in files::plan_program(&files, &r.rootfs, program, kind != Kind::Static) {
        crate::log::warn(log, &w);
    }

    let exe = files.exe()?;
    let lib = format!("{MOUNT}/libshunt.so");
    let mut new_env: Vec<String> = env
        .iter()
        .filter(|e| {
            let k = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            !matches!(k, "SHUNT_STATS" | "SHUNT_INSTANCE" | "SHUNT_LIB" | "SHUNT_EXE" | "SHUNT_TRAP" | "SHUNT_PATCH" | "SHUNT_REWRITE" | "SHUNT_PLANS")
                && !(k == "LD_PRELOAD" && kind != Kind::Static)
        })
        .cloned()
        .collect();
    if kind != Kind::Static {
        let preload = match vars.get("LD_PRELOAD").filter(|v| !v.is_empty()) {
            Some(old) => format!("{lib}:{old}"),
            None => lib.clone(),
        };
        new_env.push(format!("LD_PRELOAD={preload}"));
    }
    new_env.push(format!("SHUNT_INSTANCE={INSTANCE}"));
    new_env.push(format!("SHUNT_LIB={lib}"));
    new_env.push(format!("SHUNT_EXE={exe}"));
    new_env.push(format!("SHUNT_PLANS={MOUNT}/glibc-plans"));
    if !r.trap {
        new_env.push("SHUNT_TRAP=0".into());
    }
    if !r.patch {
        new_env.push("SHUNT_PATCH=0".into());
    }
    if !r.rewrite {
        new_env.push("SHUNT_REWRITE=0".into());
    }
    let obj = tree.as_object_mut().context("the process is not an object")?;
    obj.insert("env".into(), json!(new_env));
    if kind == Kind::Static {
        let mut new_args = vec![exe, "load".into(), "--argv0".into(), arg0.clone(), "--".into(), inside.display().to_string()];
        new_args.extend(args[1..].iter().cloned());
        obj.insert("args".into(), json!(new_args));
    }
    Ok(())
}

/// `name` as runc's exec will find it inside the container: its path there
/// and where that file is on the host now.
fn find_program(rootfs: &Path, name: &str, path_var: Option<&str>, cwd: &Path) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        let inside = if name.starts_with('/') { PathBuf::from(name) } else { Path::new("/").join(cwd).join(name) };
        let host = shunt_supervisor::in_root(rootfs, &inside).with_context(|| format!("{name}: not in the container's root filesystem"))?;
        return Ok((inside, host));
    }
    let path_var = path_var.unwrap_or("");
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let inside = Path::new(dir).join(name);
        if let Ok(host) = shunt_supervisor::in_root(rootfs, &inside) {
            if std::fs::metadata(&host).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
                return Ok((inside, host));
            }
        }
    }
    bail!("{name}: not found in the container's PATH ({path_var:?}) inside its root filesystem")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(check_version("1.0.2-dev").is_ok());
        assert!(check_version("1.1.0").is_ok());
        assert!(check_version("2.0.0").is_err());
        assert!(check_version("").is_err());
    }
}
