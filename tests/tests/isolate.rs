//! `--isolate`: the policy's deny and kill rules hold in the kernel, against
//! a program that goes around the runtime (tests/programs/escape.c), while
//! the same program without `--isolate` shows what the cooperative policy
//! alone cannot stop (documented in the README's threat model).
//!
//! Every mode makes a forbidden `mkdirat` (policy: deny:EACCES) and the
//! directory on disk is the independent witness of whether it happened.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use shunt_tests::*;

const POLICY: &str = "[syscalls]\nmkdir = \"deny:EACCES\"\nmkdirat = \"deny:EACCES\"\nunshare = \"kill\"\n";

fn policy(dir: &Path) -> String {
    let p = dir.join("policy.toml");
    std::fs::write(&p, POLICY).unwrap();
    p.to_string_lossy().into_owned()
}

/// Runs `escape <args>` natively, under shunt, and under shunt --isolate,
/// each with its own target directory `<tmp>/<which>/made` in place of
/// `{DIR}`. Returns the three outcomes and whether each made the directory.
///
/// The shunt runs load the program without rewriting its syscall sites
/// (`--no-rewrite`): the escapes attack the trap fallback, which is the path
/// of every site load-time rewriting cannot reach (code generated at run
/// time, sites the planner leaves alone). A rewritten site calls the gate,
/// where disarming SUD or flipping the selector changes nothing.
fn three_ways(args: &[&str]) -> [(Outcome, bool); 3] {
    let tmp = tempfile::tempdir().unwrap();
    let pol = policy(tmp.path());
    let prog = program(env!("PROG_ESCAPE"));
    let mut out = Vec::new();
    for (which, extra) in [("native", None), ("shunt", Some(&[][..])), ("isolated", Some(&["--isolate"][..]))] {
        let base = tmp.path().join(which);
        std::fs::create_dir(&base).unwrap();
        let target = base.join("made");
        let target = target.to_str().unwrap();
        let argv: Vec<&str> =
            std::iter::once(prog.as_str()).chain(args.iter().map(|a| if *a == "{DIR}" { target } else { a })).collect();
        let o = match extra {
            None => native(&argv, None),
            Some(extra) => {
                let mut shunt_args = vec!["--policy", pol.as_str(), "--no-rewrite"];
                shunt_args.extend_from_slice(extra);
                under_shunt(&argv, None, &shunt_args).0
            }
        };
        out.push((o, Path::new(target).exists()));
    }
    out.try_into().unwrap()
}

fn check_escape(args: &[&str], call: &str) {
    let [(n, n_made), (s, s_made), (i, i_made)] = three_ways(args);
    assert!(n.status.success(), "native: {}", n.stderr_str());
    assert!(n.stdout_str().ends_with(&format!("{call}: ok\n")), "native: {}", n.stdout_str());
    assert!(n_made, "natively the call happens");
    // Without the filter the program gets past the cooperative policy.
    assert!(s.status.success(), "shunt: {}", s.stderr_str());
    assert!(s.stdout_str().ends_with(&format!("{call}: ok\n")), "shunt: {}", s.stdout_str());
    assert!(s_made, "without --isolate the escape works (documented)");
    // With it, the kernel refuses the call with the policy's errno.
    assert!(i.status.success(), "isolated: {}", i.stderr_str());
    assert!(i.stdout_str().ends_with(&format!("{call}: -1 EACCES\n")), "isolated: {}", i.stdout_str());
    assert!(!i_made, "under --isolate the denied call must not happen");
}

#[test]
fn a_syscall_in_the_runtimes_text_is_still_filtered() {
    check_escape(&["gadget", "{DIR}"], "mkdirat");
}

#[test]
fn disarming_syscall_user_dispatch_does_not_lift_the_policy() {
    check_escape(&["sud-off", "{DIR}"], "mkdirat");
}

#[test]
fn flipping_the_selector_byte_does_not_lift_the_policy() {
    let off = shunt_core::layout::off::TB_SELECTOR.to_string();
    check_escape(&["selector", &off, "{DIR}"], "mkdirat");
}

/// The offset of the runtime's action table in libshunt.so (its symbol).
fn action_table_offset() -> String {
    let lib = target_dir().join("libshunt.so");
    let out = Command::new("nm").arg(&lib).output().expect("nm (binutils) is needed: apt-get install binutils");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("shunt_core5table7ACTIONS"))
        .unwrap_or_else(|| panic!("no action table symbol in {}", lib.display()));
    format!("0x{}", line.split_whitespace().next().unwrap())
}

#[test]
fn overwriting_the_action_table_does_not_lift_the_policy() {
    check_escape(&["actions", &action_table_offset(), "{DIR}"], "mkdir");
}

#[test]
fn io_uring_is_refused_by_the_builtin_profile() {
    let [(n, _), (s, _), (i, _)] = three_ways(&["io_uring"]);
    assert_eq!(n.stdout_str(), "io_uring_setup: ok\n", "native: {}", n.stderr_str());
    assert_eq!(s.stdout_str(), "io_uring_setup: ok\n", "shunt, through the gadget: {}", s.stderr_str());
    assert_eq!(i.stdout_str(), "io_uring_setup: -1 EPERM\n", "isolated: {}", i.stderr_str());
}

#[test]
fn a_kill_rule_kills_in_the_kernel() {
    let [(n, _), (s, _), (i, _)] = three_ways(&["kill"]);
    assert_eq!(n.stdout_str(), "calling unshare\nunshare: ok\n");
    assert_eq!(s.stdout_str(), "calling unshare\nunshare: ok\n", "without --isolate the escape works");
    assert!(s.status.success());
    assert_eq!(i.stdout_str(), "calling unshare\n", "nothing runs after the killed call");
    assert_eq!(i.status.signal(), Some(libc::SIGSYS), "isolated: {:?} {}", i.status, i.stderr_str());
    assert!(i.stderr_str().contains("seccomp filter killed"), "says why: {}", i.stderr_str());
}

#[test]
fn moving_gs_is_refused_under_isolate() {
    let [(n, _), (_shunt, _), (i, _)] = three_ways(&["setgs"]);
    assert_eq!(n.stdout_str(), "arch_prctl: ok\ngetppid: ok\n");
    // Without the filter the call reaches the kernel and the gate then
    // works through the program's GS (today: the program crashes in its
    // next call). That is the program's own memory (README, threat model),
    // so only the isolated run is pinned down.
    assert_eq!(i.stdout_str(), "arch_prctl: -1 EPERM\ngetppid: ok\n", "isolated: {}", i.stderr_str());
    assert!(i.status.success());
}

#[test]
fn ordinary_programs_run_the_same_isolated() {
    let p = program(env!("PROG_THREADS_SIGNALS"));
    let n = native(&[&p], None);
    let (i, stats) = under_shunt(&[&p], None, &["--isolate"]);
    assert_same("threads_signals isolated", &n, &i);
    assert!(stats.total("passthrough") > 0, "the runtime still runs: {}", stats.0);
    let p = program(env!("PROG_FORKEXEC"));
    let n = native(&[&p], None);
    let (i, _) = under_shunt(&[&p], None, &["--isolate"]);
    assert_same("forkexec isolated", &n, &i);
}

#[test]
fn a_policy_restricting_what_the_runtime_needs_is_refused_under_isolate() {
    let tmp = tempfile::tempdir().unwrap();
    let pol = tmp.path().join("p.toml");
    std::fs::write(&pol, "[syscalls]\nmmap = \"deny\"\n").unwrap();
    let mut cmd = Command::new(shunt());
    cmd.arg("run").arg("--isolate").arg("--policy").arg(&pol).arg("--").arg("/bin/true");
    let o = run(cmd, None, std::time::Duration::from_secs(60));
    assert!(!o.status.success());
    let err = o.stderr_str();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("denies mmap") && err.contains("--isolate"), "{err}");
}
