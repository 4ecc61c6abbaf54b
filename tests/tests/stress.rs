//! Stress, bounded in count (each run takes seconds): a signal storm
//! against threads blocked in system calls, thread churn, a fork/exec
//! storm. Each workload runs natively and under `shunt run` (with
//! load-time rewriting, without it so that its raw calls trap, and under
//! `--isolate`); outputs and exit statuses must match, and the stats must
//! show exactly the calls the program made (`programs/stress.c` makes a
//! known number of getppid calls, and of threads and execs).

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
