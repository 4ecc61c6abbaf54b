//! Rewriting on first trap: code generated at run time (`programs/jit_syscalls.c`
//! copies routines into anonymous mappings and calls each N times) makes
//! system calls no load-time plan could reach. Under `shunt run` a site
//! `shunt_core::lazy` recognises traps once and then calls the gate; a site
//! it does not recognise (the number in a register) traps every time, and
//! so does one first reached while the process has two threads (the rule:
//! text is only rewritten while one thread runs). The counts are exact:
//! the program's own loop count is the independent count. The program runs
//! dynamically linked (libshunt.so's trap path) and `gcc -static` (the
//! loader's), natively and under shunt: same output and status; with
//! `--no-rewrite` nothing is rewritten and every call of the routines traps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const N: u64 = 200;

fn compile(flags: &[&str], out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/jit_syscalls.c");
    let o = Command::new("gcc")
        .args(["-O2", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}): scripts/setup.sh installs it"));
    assert!(o.status.success(), "gcc {flags:?} failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn under(argv: &[&str], shunt_args: &[&str]) -> (Outcome, Stats) {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let mut cmd = Command::new(shunt());
    cmd.arg("run").arg("--stats").arg(&stats).args(shunt_args).arg("--").args(argv);
    let out = run(cmd, None, Duration::from_secs(120));
    let text = std::fs::read_to_string(&stats)
        .unwrap_or_else(|e| panic!("no stats report from {argv:?} ({e}); stderr:\n{}", out.stderr_str()));
    (out, Stats::parse(&text))
}

fn rewritten(s: &Stats) -> u64 {
    s.1.rewritten_at_runtime.unwrap_or(0)
}

fn check(what: &str, bin: &PathBuf) {
    let n = N.to_string();
    let argv = [bin.to_str().unwrap(), n.as_str()];
    let native = native(&argv, None);
    assert!(native.status.success(), "{what} natively: {}", native.stderr_str());
    assert!(native.stdout_str().contains("D getegid"), "{what}: {}", native.stdout_str());

    let (s, st) = under(&argv, &[]);
    assert_same(what, &native, &s);
    for name in ["geteuid", "getuid"] {
        assert_eq!(st.get(name, "trapped"), 1, "{what}: {name} traps once, then is rewritten: {}", st.0);
        assert_eq!(st.get(name, "redirected"), N - 1, "{what}: {name}'s later calls go through the gate: {}", st.0);
    }
    assert_eq!(st.get("getgid", "trapped"), N, "{what}: a site with the number in a register is left alone: {}", st.0);
    assert_eq!(st.get("getegid", "trapped"), N, "{what}: no rewrite while two threads run: {}", st.0);
    assert_eq!(rewritten(&st), 2, "{what}: {}", st.0);
    assert_eq!(st.total("trapped"), 2 + 2 * N, "{what}: the routines' traps and no other: {}", st.0);

    let (off, st) = under(&argv, &["--no-rewrite"]);
    assert_same(what, &native, &off);
    for name in ["geteuid", "getuid", "getgid", "getegid"] {
        assert_eq!(st.get(name, "trapped"), N, "{what} --no-rewrite: {name}: {}", st.0);
    }
    assert_eq!(rewritten(&st), 0, "{what} --no-rewrite: {}", st.0);
}

#[test]
fn generated_code_traps_once_per_rewritable_site() {
    let dir = tempfile::tempdir().unwrap();
    let dynamic = dir.path().join("jit_dynamic");
    compile(&[], &dynamic);
    check("dynamic (libshunt.so)", &dynamic);
    let stat = dir.path().join("jit_static");
    compile(&["-static"], &stat);
    check("gcc -static (the loader)", &stat);
}
