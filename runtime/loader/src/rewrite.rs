//! Load-time rewriting: the `syscall` sites of the image the loader maps
//! become calls of the gate, from a plan (`shunt_glibc_patch`'s planner,
//! cached per build-id or content key like the glibc plans) applied by the
//! same applier as the preload's (`shunt_patch::apply_plan`).
//!
//! Without it, an unmodified static program (plain `go build`, musl, static
//! glibc) reaches the runtime only through the trap fallback, ~15x the cost
//! of the syscall itself. The plan is applied after the segments are mapped
//! and protected and before the runtime is installed and the program's first
//! instruction runs: the process is single-threaded and nothing runs the
//! text. A plan that cannot be applied (bytes differ, no room for the
//! trampolines within ±2 GiB) leaves the whole image to the trap fallback,
//! with one line on stderr saying why; a site the planner left alone stays a
//! trap, counted, and `shunt audit` lists it.

use shunt_patch::{apply_plan, Mapped, ObjectReport};

use crate::Image;

/// What the plan of an image is keyed by (`shunt_glibc_patch::elf::plan_key`):
/// its GNU build-id, else the SHA-256 of its content.
pub fn image_key(data: &[u8]) -> String {
    shunt_glibc_patch::elf::plan_key(data)
}

/// Rewrites the mapped `image` (at `bias`) from its plan. `Err` says why
/// nothing was rewritten; the image then runs on the trap fallback.
pub(crate) fn rewrite(image: &Image, bias: u64) -> Result<ObjectReport, String> {
    let key = image_key(&image.data);
    let t0 = std::time::Instant::now();
    let plan = shunt_glibc_patch::cached_or_new_plan(&image.path, &image.data, &key).map_err(|e| format!("{e:#}"))?;
    let mut report = ObjectReport {
        name: image.path.display().to_string(),
        build_id: key,
        parse_micros: t0.elapsed().as_micros() as u64,
        ..Default::default()
    };
    for l in &plan.left {
        report.skip(format!("{}: {}", l.status.as_str(), l.reason), 1);
    }
    let loads: Vec<(u64, u64, u32)> = image.loads.iter().map(|&(v, m, _, _, f)| (v, m, f)).collect();
    let t1 = std::time::Instant::now();
    let gate = shunt_core::gate::gate_address() as u64;
    // SAFETY: the loader's process runs one thread and none of the image's
    // code yet; `loads` are the image's segments as `Image::map` mapped them
    // at `bias`; the main thread's GS is set by `install` before the jump,
    // and every later thread is a clone through the gate.
    unsafe { apply_plan(&Mapped { base: bias, loads: &loads }, &plan, gate, &mut report) }?;
    report.apply_micros = t1.elapsed().as_micros() as u64;
    Ok(report)
}

