//! A JVM under `shunt run` traps nothing. The JVM asks the vDSO's
//! `clock_getres` about its per-thread CPU clocks at start, and reads them
//! through the vDSO's `clock_gettime`; the vDSO answers those with a
//! `syscall` of its own, sites outside every plan, which trapped once per
//! JVM each until the installer rewrote them (`runtime/install`'s
//! `cover_vdso_fallbacks`; their trampolines send the runtime's own vDSO
//! calls straight to the kernel, so its time handlers never re-enter the
//! gate). `java -version` and a small program reading its thread's CPU
//! time (`ThreadMXBean`, the per-thread CPU clock through `clock_gettime`)
//! run natively and under shunt: the same output and status, and a trapped
//! count of 0.
//!
//! Needs a JDK (`java`, `javac`): `scripts/setup.sh` installs Debian's
//! `default-jdk-headless`.

use std::process::Command;

use shunt_tests::*;

fn jdk_tool(name: &str) -> String {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().map(|o| o.status.success());
    assert!(matches!(ok, Ok(true)), "no `{name}` on PATH: scripts/setup.sh installs a JDK (Debian's default-jdk-headless)");
    name.to_string()
}

/// Runs `argv` natively and under shunt; asserts the same outcome and no
/// trapped call.
fn same_and_untrapped(what: &str, argv: &[&str]) {
    let n = native(argv, None);
    assert!(n.status.success(), "{what} natively: {}", n.stderr_str());
    let (s, stats) = under_shunt(argv, None, &[]);
    assert_same(what, &n, &s);
    assert!(stats.total("redirected") > 0, "{what}: no call went through the gate: {}", stats.0);
    assert_eq!(stats.total("trapped"), 0, "{what}: calls were trapped: {}", stats.0);
}

#[test]
fn java_version_traps_nothing() {
    let java = jdk_tool("java");
    same_and_untrapped("java -version", &[&java, "-Xshare:auto", "-version"]);
}

#[test]
fn a_java_program_reading_its_thread_cpu_clock_traps_nothing() {
    let java = jdk_tool("java");
    let javac = jdk_tool("javac");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("CpuClock.java");
    std::fs::write(
        &src,
        r#"import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
public class CpuClock {
    public static void main(String[] args) {
        ThreadMXBean t = ManagementFactory.getThreadMXBean();
        long a = t.getCurrentThreadCpuTime();
        long x = 0;
        for (int i = 0; i < 20_000_000; i++) x += i ^ (x >>> 3);
        long b = t.getCurrentThreadCpuTime();
        System.out.println("supported " + t.isCurrentThreadCpuTimeSupported());
        System.out.println("cpu time grows " + (a >= 0 && b > a) + " " + (x != 1));
    }
}
"#,
    )
    .unwrap();
    let o = Command::new(&javac).arg("-d").arg(dir.path()).arg(&src).output().unwrap();
    assert!(o.status.success(), "javac: {}", String::from_utf8_lossy(&o.stderr));
    let cp = dir.path().to_str().unwrap();
    let argv = [java.as_str(), "-cp", cp, "CpuClock"];
    let n = native(&argv, None);
    assert!(n.status.success(), "java CpuClock natively: {}", n.stderr_str());
    let (s, stats) = under_shunt(&argv, None, &[]);
    assert_same("java CpuClock", &n, &s);
    assert_eq!(stats.get("clock_getres", "trapped"), 0, "java CpuClock: clock_getres trapped: {}", stats.0);
    assert_eq!(stats.get("clock_gettime", "trapped"), 0, "java CpuClock: clock_gettime trapped: {}", stats.0);
    assert_eq!(stats.total("trapped"), 0, "java CpuClock: calls trapped: {}", stats.0);
    // The per-thread CPU clock reads went through the gate (to the kernel).
    assert!(stats.get("clock_gettime", "passthrough") >= 2, "java CpuClock: {}", stats.0);
}
