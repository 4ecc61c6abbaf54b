//! The shunt instance's cold start, broken down (`shunt bench platform`,
//! Go): where the time from "start the instance" to "first answer" goes.
//!
//! Each stage is measured end to end, from the spawn of a process to the
//! first 200 with the reference answer on the function's port (connect
//! retried every 100 µs), the stages interleaved in every repetition:
//!
//! 0. `shunt --version`, spawn to exit: starting the shunt binary at all;
//! 1. the native build (plain `go build`): Go's runtime, the function's
//!    init and its first accept, without shunt;
//! 2. the shunt build under `shunt load` alone (the loader in one process);
//! 3. under `shunt run` (+ the supervisor: instance directory, fork, the
//!    runtime's re-exec into `shunt load`);
//! 4. under `shunt run --isolate --transport shm --spin auto` (the daemon's
//!    settings for the `shunt` configuration: + seccomp filter, transport).
//!
//! The parts are differences of those p50s (so each is "what this step
//! adds"), and the last part is the daemon's own share: the instance start
//! it reports (`shunt_instance_start_seconds`, launch → healthy) minus
//! stage 4. A difference can come out negative within noise.
//!
//! The daemon reports that share itself, part by part, for every instance
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

pub const STAGES: [&str; 5] = [
    "shunt --version (spawn to exit)",
    "native build -> first 200",
    "shunt load -> first 200",
    "shunt run -> first 200",
    "shunt run --isolate --transport shm --spin auto -> first 200",
];

pub const PARTS: [&str; 6] = [
    "process start (shunt binary)",
    "function itself (Go runtime, init, first accept; native)",
    "loader + runtime init (load - native - process start)",
    "supervisor (run - load)",
    "isolation + transport + spin",
    "daemon (fork, health probe, table)",
];

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

/// The stages' samples (ms), `reps` repetitions interleaved, for the Go
/// function `image` of the store in state directory `store`.
pub fn stages(store: &Path, image: &str, reps: usize, body: &[u8], answer: &str) -> Result<Vec<Vec<f64>>> {
    let exe = std::env::current_exe()?.display().to_string();
    let resolve = |native: bool| -> Result<(String, Option<std::path::PathBuf>)> {
        let images = crate::faas::daemon::StoreImages { store: shunt_image::Store::open(store)?, native };
        let r = images.resolve(image).map_err(|e| anyhow!("{e}"))?;
        let bin = r.entrypoint.first().cloned().ok_or_else(|| anyhow!("{image} has no entrypoint"))?;
        Ok((bin, r.workdir.map(Into::into)))
    };
    let (native, ndir) = resolve(true)?;
    let (shunt, sdir) = resolve(false)?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cmds: Vec<(Vec<String>, Option<std::path::PathBuf>)> = vec![
        (s(&[&native]), ndir.clone()),
        (s(&[&exe, "load", "--argv0", &shunt, "--", &shunt]), sdir.clone()),
        (s(&[&exe, "run", "--", &shunt]), sdir.clone()),
        (s(&[&exe, "run", "--isolate", "--transport", "shm", "--spin", "auto", "--", &shunt]), sdir.clone()),
    ];
    let mut out = vec![Vec::new(); STAGES.len()];
    for _ in 0..reps {
        let t0 = Instant::now();
        let st = Command::new(&exe).arg("--version").stdout(Stdio::null()).status()?;
        if !st.success() {
            bail!("shunt --version failed");
        }
        out[0].push(t0.elapsed().as_secs_f64() * 1e3);
        for (i, (cmd, dir)) in cmds.iter().enumerate() {
            out[i + 1].push(first_answer(cmd, dir.as_deref(), body, answer)?);
        }
    }
    Ok(out)
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

/// The parts (ms) from the stages' p50s and the daemon's instance start p50.
pub fn parts(p50: &[f64], daemon_instance_start: f64) -> Vec<f64> {
    vec![
        p50[0],
        p50[1],
        p50[2] - p50[1] - p50[0],
        p50[3] - p50[2],
        p50[4] - p50[3],
        daemon_instance_start - p50[4],
    ]
}

#[cfg(test)]
mod tests {
    use super::daemon_parts;

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
