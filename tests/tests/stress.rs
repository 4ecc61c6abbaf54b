//! Stress, bounded in count (each run takes seconds): a signal storm
//! against threads blocked in system calls, thread churn, a fork/exec
//! storm. Each workload runs natively and under `shunt run` (with
//! load-time rewriting, without it so that its raw calls trap, and under
//! `--isolate`); outputs and exit statuses must match, and the stats must
//! show exactly the calls the program made (`programs/stress.c` makes a
//! known number of getppid calls, and of threads and execs).
//!
//! A Go program built with `shunt go build` runs for a bounded time under
//! heavy asynchronous preemption and os/signal traffic
//! (`gofixtures/preempt_signals`): `SHUNT_STRESS_SECS` seconds each,
//! natively and under shunt (default 3; set 60 for the minute-long run).

use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const MODES: [&[&str]; 3] = [&[], &["--no-rewrite"], &["--isolate"]];

fn storm(what: &str, n: u64, getppid: u64, checks: &[(&str, u64)]) {
    let p = program(env!("PROG_STRESS"));
    let count = n.to_string();
    let argv = [p.as_str(), what, count.as_str()];
    let native = native(&argv, None);
    assert!(native.status.success(), "{what} natively: {native:?}");
    for flags in MODES {
        let (s, stats) = under_shunt(&argv, None, flags);
        assert_same(&format!("stress {what} {n} {flags:?}"), &native, &s);
        let row = |call: &str| stats.0["by_syscall"][call].to_string();
        assert_eq!(stats.get("getppid", "redirected") + stats.get("getppid", "trapped"), getppid, "{what} {flags:?}: {}", row("getppid"));
        assert_eq!(stats.get("getppid", "passthrough"), getppid, "{what} {flags:?}: {}", row("getppid"));
        for (call, want) in checks {
            assert_eq!(stats.get(call, "redirected") + stats.get(call, "trapped"), *want, "{what} {flags:?}: {call}: {}", row(call));
        }
        assert_eq!(stats.total("denied"), 0, "{what} {flags:?}");
    }
}

/// 10,000 signals, each interrupting (or arriving just before) a thread's
/// read(2), each handler making a system call of its own; every one is
/// handled once.
#[test]
fn signal_storm_against_threads_in_syscalls() {
    storm("signals", 10_000, 1 + 10_000, &[("tgkill", 10_000), ("clone3", 4)]);
}

/// 5,000 threads created and joined, 16 alive at a time.
#[test]
fn thread_churn() {
    storm("threads", 5000, 1 + 5000, &[("clone3", 5000)]);
}

/// 3,000 threads alive at once (before: thread 1,023 failed, the runtime
/// had 1,024 thread slots; now 4,096).
#[test]
fn three_thousand_live_threads() {
    storm("live", 3000, 1 + 3000, &[("clone3", 3000)]);
}

/// 500 forks, each child exec'ing the program again.
#[test]
fn fork_exec_storm() {
    storm("forkexec", 500, 1 + 2 * 500, &[("execve", 500), ("clone", 500), ("wait4", 500)]);
}

/// Seconds each Go stress run lasts: `SHUNT_STRESS_SECS`, default 3.
fn stress_secs() -> u64 {
    match std::env::var("SHUNT_STRESS_SECS") {
        Err(_) => 3,
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if (1..=3600).contains(&n) => n,
            _ => panic!("SHUNT_STRESS_SECS={v:?}: give whole seconds, 1 to 3600"),
        },
    }
}

/// Six goroutines in call-free loops on two Ps (only SIGURG preemption
/// lets main and the signal goroutine run), a garbage-collecting
/// allocator, and rounds of 20 SIGUSR2 plus one SIGUSR1 through os/signal,
/// each round waited for. Same output natively and under shunt, no traps,
/// and shunt counted exactly the kill(2) calls the program says it made.
#[test]
fn go_preemption_and_os_signal_storm() {
    let secs = stress_secs();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("preempt_signals");
    let mut c = Command::new(shunt());
    c.current_dir(go_fixture("preempt_signals")).args(["go", "build", "-o"]).arg(&bin).arg(".");
    c.env("CGO_ENABLED", "0").env("GOTOOLCHAIN", go_toolchain());
    let o = run(c, None, Duration::from_secs(900));
    assert!(o.status.success(), "shunt go build of preempt_signals: {}", o.stderr_str());
    let secs_arg = secs.to_string();
    let counts = [dir.path().join("native.count"), dir.path().join("shunt.count")];
    let argv = |i: usize| [bin.to_str().unwrap().to_string(), secs_arg.clone(), counts[i].to_str().unwrap().to_string()];
    let (a0, a1) = (argv(0), argv(1));
    let native_run = native(&a0.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(native_run.status.success(), "natively: {native_run:?}");
    let want = "signals: every round's SIGUSR1 received: true at least 10 rounds: true\n\
                preemption: every spinning goroutine progressed and main ran: true\n\
                gc: collections ran while goroutines spun: true\n";
    assert_eq!(native_run.stdout_str(), want, "natively");
    let (s, stats) = under_shunt(&a1.iter().map(String::as_str).collect::<Vec<_>>(), None, &[]);
    assert_same(&format!("preempt_signals {secs}s"), &native_run, &s);
    let sent: u64 = std::fs::read_to_string(&counts[1]).unwrap().trim().parse().unwrap();
    assert!(sent >= 21 * 10, "{sent} signals");
    let kills = stats.get("kill", "redirected") + stats.get("kill", "trapped");
    assert_eq!(kills, sent, "kill(2) calls counted vs made: {}", stats.0["by_syscall"]["kill"]);
    let go = &stats.0["by_program"]["preempt_signals"];
    assert_eq!(go["trapped"].as_u64(), Some(0), "the Go program trapped: {go}");
    // Asynchronous preemption: the runtime's tgkill(SIGURG), through the gate.
    assert!(stats.get("tgkill", "redirected") > 0, "no preemption signal went through the gate: {}", stats.0["by_syscall"]["tgkill"]);
}
