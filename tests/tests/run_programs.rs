//! Real programs natively and under `shunt run --no-patch`: same output, same
//! exit status, and stats in which every system call is accounted for. With
//! glibc left unpatched every call of these programs reaches the runtime
//! through the trap fallback (trapped > 0) — these tests cover that path;
//! `c_debian.rs` runs the same kind of programs with glibc patched. Ids,
//! time and random are answered in user space (emulated) either way.


use shunt_tests::*;

fn compare(what: &str, argv: &[&str], stdin: Option<&[u8]>) -> Stats {
    let n = native(argv, stdin);
    let (s, stats) = under_shunt(argv, stdin, &["--no-patch"]);
    assert_same(what, &n, &s);
    assert!(stats.total("trapped") > 0, "{what}: the trap fallback saw nothing: {}", stats.0);
    assert_eq!(stats.total("denied"), 0, "{what}: denied calls under the default profile");
    stats
}


#[test]
fn coreutils_ls_sort_sha256sum_cat() {
    let dir = tempfile::tempdir().unwrap();
    let text = data_file(dir.path(), "lines.txt", 2_000_000, 0x9e3779b97f4a7c15);
    let big = data_file(dir.path(), "big.bin", 40_000_000, 0x9e3779b97f4a7c15);

    compare("ls -l", &["ls", "-l", "/usr/bin"], None);
    let stats = compare("sort", &["sort", &text], None);
    assert!(stats.get("read", "trapped") > 0);
    compare("sha256sum", &["sha256sum", &text, &big], None);
    let stats = compare("cat of a 40 MB file", &["cat", &big], None);
    assert!(stats.get("write", "passthrough") > 0);
    compare("sort from stdin", &["sort", "-r"], Some(b"b\nc\na\n"));
}

#[test]
fn python_files_threads_and_subprocesses() {
    let stats = compare("python3", &["/usr/bin/python3", "-c", PYTHON_WORKLOAD], None);
    assert!(stats.processes() >= 4, "python's subprocesses are part of the instance: {}", stats.0);
    for call in ["getpid", "getrandom"] {
        assert!(stats.get(call, "emulated") > 0, "{call} should be emulated: {}", stats.0["by_syscall"][call]);
    }
    assert!(stats.get("clone3", "passthrough") >= 8, "threads were created through the runtime");
}

#[test]
fn fork_exec_posix_spawn_system_vfork() {
    let p = program(env!("PROG_FORKEXEC"));
    let stats = compare("fork/exec program", &[&p], None);
    assert!(stats.processes() >= 6, "every process of the instance is counted: {}", stats.0);
    assert!(stats.get("execve", "passthrough") >= 3);
    assert!(stats.get("vfork", "trapped") + stats.get("clone", "trapped") + stats.get("clone3", "trapped") >= 3);
}

#[test]
fn threads_and_signals() {
    let p = program(env!("PROG_THREADS_SIGNALS"));
    let stats = compare("threads and signals", &[&p], None);
    // glibc's signal restorer was replaced by the runtime's, whose
    // rt_sigreturn is never trapped.
    // (with the program's handlers installed through the runtime, so
    // signals were delivered to the runtime's restorer)
    assert_eq!(stats.get("rt_sigreturn", "trapped"), 0, "{}", stats.0["by_syscall"]["rt_sigreturn"]);
    assert!(stats.get("rt_sigaction", "trapped") > 0, "{}", stats.0["by_syscall"]["rt_sigaction"]);
    assert!(stats.get("futex", "trapped") > 0);
}

#[test]
fn ids_time_and_random_are_emulated() {
    let p = program(env!("PROG_IDS_TIME_RANDOM"));
    let stats = compare("emulated calls", &[&p], None);
    for call in ["getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "uname", "clock_gettime", "time", "gettimeofday", "getrandom"] {
        assert!(stats.get(call, "emulated") > 0, "{call} not emulated: {}", stats.0["by_syscall"][call]);
    }
    assert!(stats.get("getpid", "emulated") >= 1000);
}

#[test]
fn shell_subshells_and_pipelines() {
    // Forks whose parent keeps running (and entering the runtime) while the
    // child sets itself up: subshells, command substitution, pipelines.
    let script = r#"
n=0
for i in $(seq 1 60); do
  x=$( (echo "$i" | tr 0-9 a-j) )
  n=$((n + ${#x}))
done
echo "total $n"
echo done | cat | sort | wc -l
"#;
    let stats = compare("bash subshells", &["bash", "-c", script], None);
    assert!(stats.processes() >= 120, "{}", stats.0);
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let p = program(env!("PROG_EXIT_WITH"));
    for args in [vec!["0"], vec!["3"], vec!["signal", "15"], vec!["signal", "6"]] {
        let mut argv = vec![p.as_str()];
        argv.extend(args.iter());
        let n = native(&argv, None);
        let (s, _stats) = under_shunt(&argv, None, &[]);
        assert_same(&format!("exit_with {args:?}"), &n, &s);
    }
}

#[test]
fn the_environment_looks_native() {
    // The runtime's variables (LD_PRELOAD, SHUNT_*) are hidden from the
    // program, and put back for the images it execs.
    compare("env", &["env"], None);
    let stats = compare("sh -c env", &["sh", "-c", "env | sort; echo; exec env | sort"], None);
    assert!(stats.processes() >= 2, "the exec'd env stayed in the instance: {}", stats.0);
}

#[test]
fn stats_env_var_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.json");
    let mut cmd = std::process::Command::new(shunt());
    cmd.env("SHUNT_STATS", &out).args(["run", "--", "true"]);
    let o = run(cmd, None, std::time::Duration::from_secs(60));
    assert!(o.status.success(), "{}", o.stderr_str());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    Stats::from_value(v);
}

/// The stats against an independent count: a probe makes exactly 300 raw
/// getppid calls from its own text and 200 through glibc's syscall() (and
/// one getppid() through glibc first).
/// Load-time rewriting sends the raw ones to the gate too; without it they
/// trap.
#[test]
fn counts_match_a_known_number_of_calls() {
    let p = program(env!("PROG_KNOWN_CALLS"));
    let n = native(&[&p, "300", "200"], None);
    assert_eq!(n.stdout_str(), "raw 300 via 200 threads 0 forks 0: calls 501, same in this process 500, children ok\n");
    let (s, stats) = under_shunt(&[&p, "300", "200"], None, &[]);
    assert_same("known calls", &n, &s);
    let getppid = |stats: &Stats| stats.0["by_syscall"]["getppid"].to_string();
    assert_eq!(stats.get("getppid", "redirected"), 501, "rewritten and glibc's calls enter the gate: {}", getppid(&stats));
    assert_eq!(stats.get("getppid", "trapped"), 0, "{}", getppid(&stats));
    assert_eq!(stats.get("getppid", "passthrough"), 501, "{}", getppid(&stats));

    let (s, stats) = under_shunt(&[&p, "300", "200"], None, &["--no-rewrite"]);
    assert_same("known calls, --no-rewrite", &n, &s);
    assert_eq!(stats.get("getppid", "trapped"), 300, "the raw calls trap: {}", getppid(&stats));
    assert_eq!(stats.get("getppid", "redirected"), 201, "glibc's calls enter the gate: {}", getppid(&stats));
    assert_eq!(stats.get("getppid", "passthrough"), 501, "{}", getppid(&stats));
}

/// The same count through every path a call can take into the counters:
/// 8 threads, 4 forked children and 2 execs of the program, each image
/// making (1 + 8 + 4) rounds of 100 raw and 50 glibc getppid calls and one
/// more through glibc — 5,853 in all, 3,900 of them raw — with load-time rewriting, without it (the
/// raw ones trap), and under `--isolate`. A count lost or doubled in a
/// thread's block, a child's merge or an exec'd image fails here.
#[test]
fn counts_match_across_threads_forks_and_execs() {
    let p = program(env!("PROG_KNOWN_CALLS"));
    let argv = [p.as_str(), "100", "50", "8", "4", "2"];
    let n = native(&argv, None);
    let line = "raw 100 via 50 threads 8 forks 4: calls 1951, same in this process 1350, children ok\n";
    assert_eq!(n.stdout_str(), line.repeat(3), "the probe natively");
    for (flags, trapped) in [(&[][..], 0), (&["--no-rewrite"][..], 3900), (&["--isolate"][..], 0), (&["--isolate", "--no-rewrite"][..], 3900)] {
        let (s, stats) = under_shunt(&argv, None, flags);
        assert_same(&format!("known calls {flags:?}"), &n, &s);
        let getppid = stats.0["by_syscall"]["getppid"].to_string();
        assert_eq!(stats.get("getppid", "trapped"), trapped, "{flags:?}: {getppid}");
        assert_eq!(stats.get("getppid", "redirected"), 5853 - trapped, "{flags:?}: {getppid}");
        assert_eq!(stats.get("getppid", "passthrough"), 5853, "{flags:?}: every call answered once: {getppid}");
        assert_eq!(stats.get("getppid", "emulated") + stats.get("getppid", "denied"), 0, "{flags:?}: {getppid}");
        // The other calls the probe makes a known number of times: a
        // thread is a clone3, a fork glibc's clone, each child waited once.
        for (call, n) in [("clone3", 8 * 3), ("clone", 4 * 3), ("execve", 2), ("wait4", 4 * 3)] {
            assert_eq!(stats.get(call, "redirected") + stats.get(call, "trapped"), n, "{flags:?}: {call}: {}", stats.0["by_syscall"][call]);
        }
        assert_eq!(stats.processes(), 3 + 4 * 3, "{flags:?}: 3 images (an exec starts one) and 12 children: {}", stats.0);
    }
}

/// `--no-trap`: the same raw calls run, and the trap fallback sees none of
/// them (without the flag it sees every one: the test above).
#[test]
fn no_trap_mode_runs_unobserved() {
    let p = program(env!("PROG_KNOWN_CALLS"));
    let n = native(&[&p, "300", "200"], None);
    let (s, stats) = under_shunt(&[&p, "300", "200"], None, &["--no-rewrite", "--no-trap"]);
    assert_same("known calls, --no-trap", &n, &s);
    let getppid = stats.0["by_syscall"]["getppid"].to_string();
    assert_eq!(stats.get("getppid", "trapped"), 0, "{getppid}");
    assert_eq!(stats.get("getppid", "redirected"), 201, "{getppid}");
    assert_eq!(stats.get("getppid", "passthrough"), 201, "only the gate's calls are seen: {getppid}");
    assert_eq!(stats.total("trapped"), 0);
}

/// A program started with signals ignored finds them ignored, natively and
/// under `shunt run`, and so do the images it execs: a dynamic program
/// (through the preload) and a static one (through the loader), each
/// exec'ing the other. `shunt run` relays SIGINT, SIGTERM, SIGHUP, SIGQUIT
/// and SIGUSR1 to its program, but not those it was started with ignored:
/// before, it handed the program SIG_DFL for them, so a background CI job
/// (SIGINT and SIGQUIT ignored) ran Go's os tests differently under shunt.
#[test]
fn ignored_signals_stay_ignored() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let dynamic = program(env!("PROG_SIGDISP"));
    let fixed = dir.path().join("sigdisp-static");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/sigdisp.c");
    let o = std::process::Command::new("gcc").args(["-O2", "-static", "-o"]).arg(&fixed).arg(&src).output().expect("gcc");
    assert!(o.status.success(), "gcc -static sigdisp.c: {}", String::from_utf8_lossy(&o.stderr));
    let fixed = fixed.to_str().unwrap();
    let ignored = [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2];
    let start = |argv: &[&str], shunt_args: Option<&std::path::Path>| {
        let mut cmd = match shunt_args {
            Some(stats) => {
                let mut c = std::process::Command::new(shunt());
                c.arg("run").arg("--stats").arg(stats).arg("--").args(argv);
                c
            }
            None => {
                let mut c = std::process::Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        // SAFETY: only signal(2), async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for sig in ignored {
                    if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        run(cmd, None, std::time::Duration::from_secs(120))
    };
    let want = "ignored: HUP INT QUIT USR1 USR2 TERM\n";
    for chain in [[dynamic.as_str(), fixed, dynamic.as_str()], [fixed, dynamic.as_str(), fixed]] {
        let n = start(&chain, None);
        assert_eq!(n.stdout_str(), want.repeat(3), "natively: {}", n.stderr_str());
        let stats = dir.path().join("stats.json");
        let s = start(&chain, Some(&stats));
        assert_same(&format!("sigdisp {chain:?}"), &n, &s);
        let stats = Stats::parse(&std::fs::read_to_string(&stats).unwrap());
        assert!(stats.get("execve", "passthrough") >= 2, "the execs stayed in the instance: {}", stats.0);
    }
}

/// The blocked signal mask a program is started with is the invoker's, as
/// `execve` keeps it, under `shunt run` too — across dynamic ↔ static exec
/// chains inside the instance. Before, the supervisor and the loader each
/// started the program with an empty mask. Each program prints its mask
/// and shows the block is real (a blocked SIGUSR2, SIGTERM, SIGRTMIN+1
/// raised stays pending instead of ending it). SIGSYS and SIGTRAP, which
/// the runtime needs unblocked (trap fallback, first-trap rewriting), still
/// read back as blocked; SIGCHLD is blocked in the supervisor's own process
/// too.
#[test]
fn the_blocked_signal_mask_is_inherited() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let dynamic = program(env!("PROG_SIGMASK"));
    let fixed = dir.path().join("sigmask-static");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/sigmask.c");
    let o = std::process::Command::new("gcc").args(["-O2", "-static", "-o"]).arg(&fixed).arg(&src).output().expect("gcc");
    assert!(o.status.success(), "gcc -static sigmask.c: {}", String::from_utf8_lossy(&o.stderr));
    let fixed = fixed.to_str().unwrap();
    let rtmin1 = libc::SIGRTMIN() + 1;
    let blocked = [libc::SIGHUP, libc::SIGTRAP, libc::SIGUSR2, libc::SIGTERM, libc::SIGCHLD, libc::SIGSYS, rtmin1];
    let start = |argv: &[&str], stats: Option<&std::path::Path>| {
        let mut cmd = match stats {
            Some(stats) => {
                let mut c = std::process::Command::new(shunt());
                c.arg("run").arg("--stats").arg(stats).arg("--").args(argv);
                c
            }
            None => {
                let mut c = std::process::Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        // SAFETY: sigemptyset/sigaddset/sigprocmask, async-signal-safe,
        // between fork and exec (after std's own reset of the mask).
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for sig in blocked {
                    libc::sigaddset(&mut set, sig);
                }
                if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run(cmd, None, std::time::Duration::from_secs(120))
    };
    let want = "blocked: HUP TRAP USR2 TERM CHLD SYS RTMIN+1\nheld: USR2 TERM RTMIN+1\n";
    for chain in [[dynamic.as_str(), fixed, dynamic.as_str()], [fixed, dynamic.as_str(), fixed]] {
        let n = start(&chain, None);
        assert_eq!(n.stdout_str(), want.repeat(3), "natively: {}", n.stderr_str());
        let stats = dir.path().join("stats.json");
        let s = start(&chain, Some(&stats));
        assert_same(&format!("sigmask {chain:?}"), &n, &s);
        let stats = Stats::parse(&std::fs::read_to_string(&stats).unwrap());
        assert!(stats.get("execve", "passthrough") >= 2, "the execs stayed in the instance: {}", stats.0);
    }
}
