//! `shunt daemon`: the manager crate (`shunt-manager`) with the image store
//! functions are deployed from: `shunt-image`'s OCI store in the state
//! directory, which `shunt faas build` and `shunt image import` fill.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use shunt_image::Store;
use shunt_manager::cli::DaemonArgs;
use shunt_manager::images::{Images, ResolvedImage};

use super::build::{IMAGE_APP_DIR, LABEL_BINARY, LABEL_ROOT};

pub fn run(args: DaemonArgs) -> Result<ExitCode> {
    // A long-running server: a closed stdout, pipe or peer is an error to
    // report, never a reason to die (`main` restores SIGPIPE's default for
    // the commands that print to pipes). A handler that does nothing, not
    // SIG_IGN: exec resets handlers, so the functions start with SIGPIPE
    // as usual, while an ignored signal would stay ignored in them.
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: installing an async-signal-safe handler (it does nothing).
    unsafe { libc::signal(libc::SIGPIPE, nothing as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    let native = args.native;
    shunt_manager::cli::run(args, move |state| Ok(Arc::new(StoreImages { store: Store::open(state)?, native }) as Arc<dyn Images>))
}

/// Whether `reference` names its registry (`host[:port]/…`, `docker.io/…`).
fn names_registry(reference: &str) -> bool {
    reference.split_once('/').is_some_and(|(first, _)| first.contains(['.', ':']) || first == "localhost")
}

/// The manager's view of the store. An image is resolved to its unpacked
/// root (layers verified when unpacked, manifest and config on every
/// resolve). Images `shunt faas build` made (label `dev.shunt.root=host`)
/// run on the host's root from their unpacked directory, in the variant
/// the daemon runs (`--native`: native, else shunt); every other image runs
/// in its own root.
pub struct StoreImages {
    pub store: Store,
    pub native: bool,
}

impl Images for StoreImages {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String> {
        let img = match self.store.get(reference) {
            Ok(img) => img,
            // Not in the store: pulled when the name says from where
            // (a deployment of a bare name may mean Docker Hub, which
            // is pulled only when named: docker.io/...).
            Err(_) if !self.store.has(reference) && names_registry(reference) => {
                shunt_image::pull::pull(&self.store, reference).map_err(|e| format!("{e:#}"))?
            }
            Err(e) => return Err(format!("{e:#}")),
        };
        let root = self.store.rootfs(&img).map_err(|e| format!("{e:#}"))?;
        let labels = img.config.config().as_ref().and_then(|c| c.labels().clone()).unwrap_or_default();
        if labels.get(LABEL_ROOT).map(String::as_str) == Some("host") {
            let variant = if self.native { "native" } else { "shunt" };
            let Some(rel) = labels.get(&format!("{LABEL_BINARY}{variant}")) else {
                return Err(format!(
                    "image {} has no {variant} build (build it with `shunt faas build{}`)",
                    img.reference,
                    if self.native { " --native" } else { "" }
                ));
            };
            let dir = root.join(IMAGE_APP_DIR.trim_start_matches('/')).join(variant);
            return Ok(ResolvedImage {
                reference: img.reference.clone(),
                digest: img.digest.clone(),
                entrypoint: vec![dir.join(rel).display().to_string()],
                cmd: Vec::new(),
                env: img.env(),
                workdir: Some(dir.display().to_string()),
                user: None,
                root: None,
                host_dir: Some(dir),
            });
        }
        if !self.native {
            plan_image_glibc(&root);
        }
        Ok(ResolvedImage {
            reference: img.reference.clone(),
            digest: img.digest.clone(),
            entrypoint: img.entrypoint(),
            cmd: img.cmd(),
            env: img.env(),
            workdir: img.workdir(),
            user: img.user(),
            root: Some(root),
            host_dir: None,
        })
    }
}

/// Where images keep glibc and its loader (Debian's multiarch paths, then
/// the classic ones).
const IMAGE_GLIBC: &[&str] = &[
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
];

/// Plans the in-memory patch of an image's own glibc (once per glibc build,
/// keyed by build-id, beside the runtime library where `libshunt.so` finds
/// it inside the instance), so that its programs reach the runtime by call
/// as the host's do. A glibc that cannot be planned stays unpatched: its
/// calls are trapped, and counted so. Images without glibc (musl, static)
/// have nothing to plan.
fn plan_image_glibc(root: &std::path::Path) {
    let Some(lib_dir) = shunt_supervisor::runtime_library().ok().and_then(|l| l.parent().map(|d| d.to_path_buf())) else { return };
    let mut seen = Vec::new();
    for inside in IMAGE_GLIBC {
        let Ok(file) = shunt_supervisor::in_root(root, std::path::Path::new(inside)) else { continue };
        if !file.is_file() || seen.contains(&file) {
            continue;
        }
        seen.push(file.clone());
        match shunt_glibc_patch::current_plan(&file, Some(&lib_dir)) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                eprintln!("shunt daemon: cannot read {inside} of an image ({e:#}); its calls will be trapped");
                continue;
            }
        }
        match shunt_glibc_patch::write_plan(&file, &lib_dir.join("glibc-plans")) {
            Ok((path, a)) => eprintln!("shunt daemon: planned the image's {inside}: {}", shunt_glibc_patch::summary(&a, &path)),
            Err(e) => eprintln!("shunt daemon: cannot plan the image's {inside} ({e:#}); its calls will be trapped"),
        }
    }
}
