//! The shunt instance's cold start, broken down (`shunt bench platform`,
//! Go): where the time from "start the instance" to "first answer" goes.
//!
//! Each stage is measured end to end, from the spawn of a process to the
//! first 200 with the reference answer on the function's port (connect
//! retried every 100 µs), the stages interleaved in every repetition:
//!
//! 0. `shunt --version`, spawn to exit: starting the shunt binary at all;
//! 1. the helper, spawn to exit (no arguments: its usage line, exit 2).
//!    The helper is what the supervisor starts a static program in (its
//!    `SHUNT_EXE`), chosen by the supervisor's own rule
//!    ([`shunt_supervisor::loader_executable`]): `shunt-load`, or `shunt`
//!    where there is none. Its stages are named after its file name;
//! 2. the native build (plain `go build`): Go's runtime, the function's
//!    init and its first accept, without shunt;
//! 3. the shunt build under `shunt load` alone (the loader in the `shunt`
//!    binary), kept to compare with stage 4;
//! 4. the shunt build under `HELPER load` alone: the loader in one process,
//!    as the supervisor execs it;
//! 5. under `shunt run` (+ the supervisor: instance directory, fork, the
//!    exec into `HELPER load`);
//! 6. under `shunt run --isolate --transport shm --spin auto` (the daemon's
//!    settings for the `shunt` configuration: + seccomp filter, transport).
//!
//! The parts are differences of those p50s (so each is "what this step
//! adds"), and the last part of the sum is the daemon's own share: the
//! instance start it reports (`shunt_instance_start_seconds`, launch →
//! healthy) minus stage 6. The parts but the last add up to that instance
//! start; the last ([`PARTS`]' "for comparison") is what starting the
//! program in `shunt` instead of the helper would cost, outside the sum. A
//! difference can come out negative within noise.
//!
//! The daemon reports its share itself, part by part, for every instance
//! it starts (`shunt_instance_start_part_seconds`, parts
//! [`shunt_manager::metrics::START_PARTS`]): waiting for a launch thread,
//! the supervisor's prepare / fork / exec, the handover back to the
//! function's controller, the program's start until its first HTTP answer
//! to the health probe, and that answer until it is healthy.
//! [`daemon_parts`] reads them, once per deploy.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use shunt_manager::images::Images;

use super::client::Conn;

/// The stages' names, in order, for a helper whose file name is `helper`
/// (`shunt-load`). Where the helper is `shunt` itself its stages get
/// "(helper)" in their names, so that no two stages share a name.
pub fn stage_names(helper: &str) -> Vec<String> {
    let h = if helper == "shunt" { "shunt (helper)" } else { helper };
    vec![
        "shunt --version (spawn to exit)".into(),
        format!("{h} (spawn to exit)"),
        "native build -> first 200".into(),
        "shunt load -> first 200".into(),
        format!("{h} load -> first 200"),
        "shunt run -> first 200".into(),
        "shunt run --isolate --transport shm --spin auto -> first 200".into(),
    ]
}

/// How many stages [`stage_names`] gives.
pub const STAGE_COUNT: usize = 7;

pub const PARTS: [&str; 7] = [
    "process start (the helper, spawn to exit)",
    "function itself (Go runtime, init, first accept; native)",
    "loader + runtime init (helper load - native - helper start)",
    "supervisor (run - helper load)",
    "isolation + transport + spin",
    "daemon (fork, health probe, table)",
    "for comparison, not in the sum: shunt instead of the helper (shunt load - helper load)",
];

/// The stages measured: the helper they name and each stage's samples
/// (ms), in [`stage_names`]' order.
#[derive(Clone, Debug)]
pub struct Breakdown {
    pub helper: std::path::PathBuf,
    pub names: Vec<String>,
    pub samples: Vec<Vec<f64>>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Spawn → first 200 with `answer` on the function's port, in ms.
fn first_answer(cmd: &[String], dir: Option<&Path>, body: &[u8], answer: &str) -> Result<f64> {
    let port = free_port()?;
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]).env("port", port.to_string()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(d) = dir {
        c.current_dir(d);
    }
    // SAFETY: prctl is async-signal-safe; the stage dies with the benchmark.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let t0 = Instant::now();
    let mut child = c.spawn().with_context(|| format!("cannot start {}", cmd[0]))?;
    let deadline = t0 + Duration::from_secs(10);
    let result = (|| loop {
        if Instant::now() >= deadline {
            bail!("{}: no answer on port {port} within 10 s", cmd.join(" "));
        }
        if let Some(st) = child.try_wait()? {
            bail!("{} exited ({st}) before answering", cmd.join(" "));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let mut conn = Conn::connect("127.0.0.1", port)?;
            let (status, resp) = conn.post("/", body)?;
            if status == 200 && resp == answer.as_bytes() {
                return Ok(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    })();
    // Measured: no drain wanted (the front waits on SIGTERM); SIGKILL ends
    // a `shunt run` instance with it.
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Spawn → exit of `cmd` in ms; its exit status must be `code`.
fn spawn_to_exit(cmd: &[&str], code: i32) -> Result<f64> {
    let t0 = Instant::now();
    let st = Command::new(cmd[0]).args(&cmd[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()
        .with_context(|| format!("cannot start {}", cmd[0]))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if st.code() != Some(code) {
        bail!("{}: {st}, expected exit status {code}", cmd.join(" "));
    }
    Ok(ms)
}

/// The stages (`reps` repetitions interleaved) for the Go function `image`
/// of the store in state directory `store`.
pub fn stages(store: &Path, image: &str, reps: usize, body: &[u8], answer: &str) -> Result<Breakdown> {
    let exe = std::env::current_exe()?.display().to_string();
    // The supervisor's rule, so these stages time what `shunt run` and the
    // daemon exec.
    let helper_path = shunt_supervisor::loader_executable(&shunt_supervisor::runtime_library()?)?;
    let helper = helper_path.display().to_string();
    let helper_name = helper_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| helper.clone());
    let resolve = |native: bool| -> Result<(String, Option<std::path::PathBuf>)> {
        let images = crate::faas::daemon::StoreImages { store: shunt_image::Store::open(store)?, native };
        let r = images.resolve(image).map_err(|e| anyhow!("{e}"))?;
        let bin = r.entrypoint.first().cloned().ok_or_else(|| anyhow!("{image} has no entrypoint"))?;
        Ok((bin, r.workdir.map(Into::into)))
    };
    let (native, ndir) = resolve(true)?;
    let (shunt, sdir) = resolve(false)?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // Stages 2.. (first 200); 0 and 1 are spawn → exit.
    let cmds: Vec<(Vec<String>, Option<std::path::PathBuf>)> = vec![
        (s(&[&native]), ndir.clone()),
        (s(&[&exe, "load", "--argv0", &shunt, "--", &shunt]), sdir.clone()),
        (s(&[&helper, "load", "--argv0", &shunt, "--", &shunt]), sdir.clone()),
        (s(&[&exe, "run", "--", &shunt]), sdir.clone()),
        (s(&[&exe, "run", "--isolate", "--transport", "shm", "--spin", "auto", "--", &shunt]), sdir.clone()),
    ];
    let names = stage_names(&helper_name);
    let mut out = vec![Vec::new(); names.len()];
    for _ in 0..reps {
        out[0].push(spawn_to_exit(&[&exe, "--version"], 0)?);
        // No arguments: both `shunt-load` and `shunt` print their usage
        // and exit 2, having started (dynamic linking, main) and nothing
        // more.
        out[1].push(spawn_to_exit(&[&helper], 2)?);
        for (i, (cmd, dir)) in cmds.iter().enumerate() {
            out[i + 2].push(first_answer(cmd, dir.as_deref(), body, answer)?);
        }
    }
    Ok(Breakdown { helper: helper_path, names, samples: out })
}

/// The daemon's parts of its instance starts so far, for the function
/// whose `function_name` label starts with `function_label` (`aes-go.`):
/// (sum in seconds, count) for each of
/// [`START_PARTS`](shunt_manager::metrics::START_PARTS), from the text of
/// its `/metrics`.
pub fn daemon_parts(metrics: &str, function_label: &str) -> Vec<(f64, f64)> {
    let name = "shunt_instance_start_part_seconds";
    let f = format!("function_name=\"{function_label}");
    shunt_manager::metrics::START_PARTS
        .iter()
        .map(|p| {
            let part = format!("part=\"{p}\"");
            let sum = super::daemon::metric(metrics, &format!("{name}_sum"), &[&f, &part]).unwrap_or(0.0);
            let count = super::daemon::metric(metrics, &format!("{name}_count"), &[&f, &part]).unwrap_or(0.0);
            (sum, count)
        })
        .collect()
}

/// The parts (ms, [`PARTS`]) from the stages' p50s (in [`stage_names`]'
/// order) and the daemon's instance start p50.
pub fn parts(p50: &[f64], daemon_instance_start: f64) -> Vec<f64> {
    // `shunt --version` is in the stage table only: the instance starts in
    // the helper, whose start is the first part.
    let [_version, helper, native, shunt_load, helper_load, run, run_isolated] = p50[..] else {
        panic!("{} stage p50s, expected {STAGE_COUNT}", p50.len())
    };
    vec![
        helper,
        native,
        helper_load - native - helper,
        run - helper_load,
        run_isolated - run,
        daemon_instance_start - run_isolated,
        shunt_load - helper_load,
    ]
}

#[cfg(test)]
mod tests {
    use super::{daemon_parts, parts, stage_names, PARTS, STAGE_COUNT};

    #[test]
    fn the_parts_but_the_comparison_add_up_to_the_daemons_start() {
        let names = stage_names("shunt-load");
        assert_eq!(names.len(), STAGE_COUNT);
        assert_eq!(names[1], "shunt-load (spawn to exit)");
        assert_eq!(names[4], "shunt-load load -> first 200");
        let fallback = stage_names("shunt");
        let distinct: std::collections::BTreeSet<&String> = fallback.iter().collect();
        assert_eq!(distinct.len(), STAGE_COUNT, "stage names collide when the helper is shunt: {fallback:?}");
        // version, helper, native, shunt load, helper load, run, run --isolate
        let p = parts(&[7.0, 1.0, 6.0, 14.0, 9.0, 20.0, 23.0], 37.0);
        assert_eq!(p.len(), PARTS.len());
        assert_eq!(p, vec![1.0, 6.0, 2.0, 11.0, 3.0, 14.0, 5.0]);
        assert_eq!(p[..6].iter().sum::<f64>(), 37.0);
    }

    #[test]
    fn reads_the_daemons_start_parts() {
        let text = "# TYPE shunt_instance_start_part_seconds histogram\n\
            shunt_instance_start_part_seconds_sum{function_name=\"aes-go.openfaas-fn\",part=\"exec\"} 0.25\n\
            shunt_instance_start_part_seconds_count{function_name=\"aes-go.openfaas-fn\",part=\"exec\"} 2\n\
            shunt_instance_start_part_seconds_sum{function_name=\"aes-cpp.openfaas-fn\",part=\"listen\"} 9\n\
            shunt_instance_start_part_seconds_count{function_name=\"aes-cpp.openfaas-fn\",part=\"listen\"} 1\n";
        let parts = daemon_parts(text, "aes-go.");
        assert_eq!(parts.len(), shunt_manager::metrics::START_PARTS.len());
        let exec = shunt_manager::metrics::START_PARTS.iter().position(|p| *p == "exec").unwrap();
        let listen = shunt_manager::metrics::START_PARTS.iter().position(|p| *p == "listen").unwrap();
        assert_eq!(parts[exec], (0.25, 2.0));
        assert_eq!(parts[listen], (0.0, 0.0), "another function's part is not this one's");
    }
}
