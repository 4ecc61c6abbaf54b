//! The bypass transport under glibc: `tests/programs/sockets.c`
//! runs each loopback TCP scenario natively (the kernel is the oracle) and
//! under `shunt run --transport shm`, with the same transcript and exit
//! status, and the stats show that the connections were carried by rings.
//! With the transport off (`--transport kernel`) nothing is upgraded.

use shunt_tests::*;

fn sockets() -> String {
    program(env!("PROG_SOCKETS"))
}

fn transport(s: &Stats) -> (u64, u64, u64) {
    let t = &s.0["transport"];
    let n = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    (n("shm_connections"), n("kernel_connections"), n("shm_bytes"))
}

/// Runs `scenario` natively and under shunt with the transport on; returns
/// the shunt run's stats after comparing the two runs.
fn same_as_kernel(scenario: &[&str], spin: &str) -> Stats {
    let mut argv = vec![sockets()];
    argv.extend(scenario.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let reference = native(&argv, None);
    assert!(reference.status.success(), "{scenario:?} natively: {}", reference.stderr_str());
    let (out, stats) = under_shunt(&argv, None, &["--transport", "shm", "--spin", spin]);
    assert_same(&format!("{scenario:?} with --transport shm --spin {spin}"), &reference, &out);
    assert_eq!(stats.total("trapped"), 0, "{scenario:?}: {}", stats.0);
    stats
}

#[test]
fn connect_accept_read_write_close_over_rings() {
    for spin in ["off", "auto"] {
        let s = same_as_kernel(&["connect-blocking"], spin);
        let (shm, kernel, bytes) = transport(&s);
        assert_eq!((shm, kernel), (2, 0), "one connection, counted at both ends: {}", s.0);
        // "early" goes through the kernel before the acceptor attached;
        // "late" through the ring.
        assert!(bytes >= 4, "{}", s.0);
        let s = same_as_kernel(&["read-write"], spin);
        assert_eq!(transport(&s).0, 2, "{}", s.0);
        assert!(transport(&s).2 > 0, "{}", s.0);
    }
}

/// Every scenario of the program (one per semantic of the list), the
/// shunt run's transcript equal to the kernel's, spin off and auto.
#[test]
fn every_socket_semantic_matches_the_kernel() {
    const SCENARIOS: [&str; 26] = [
        "connect-blocking",
        "connect-nonblocking",
        "accept4",
        "read-write",
        "peek-dontwait",
        "partial-writes",
        "shutdown",
        "close-reset",
        "linger-reset",
        "splice",
        "sendfile",
        "ppoll-pselect",
        "epoll-hup",
        "peer-dies",
        "dup",
        "nonblock-fionread",
        "names-options",
        "poll-select",
        "epoll",
        "fork",
        "fork-while-parked",
        "exec",
        "exec-ring",
        "hidden-fds",
        "hidden-poll",
        "many",
    ];
    for spin in ["off", "auto"] {
        for sc in SCENARIOS {
            let args: &[&str] = if sc == "many" { &["many", "50"] } else { &[sc] };
            let s = same_as_kernel(args, spin);
            assert!(transport(&s).0 >= 2, "{sc}: no connection was carried by rings: {}", s.0);
        }
    }
}

#[test]
fn names_and_options_are_the_kernel_connection() {
    let s = same_as_kernel(&["names-options"], "off");
    assert!(transport(&s).0 >= 2, "{}", s.0);
}

#[test]
fn many_connections_at_once() {
    let s = same_as_kernel(&["many", "1000"], "auto");
    let (shm, kernel, bytes) = transport(&s);
    assert_eq!((shm, kernel), (2000, 0), "{}", s.0);
    assert_eq!(bytes, 2000 * 4, "each end sends one int through its ring: {}", s.0);
}

/// `shm` is `shunt run`'s default: no flag, the connection is on rings.
#[test]
fn shm_is_the_default() {
    let argv = [sockets()];
    let argv = [argv[0].as_str(), "read-write"];
    let reference = native(&argv, None);
    let (out, stats) = under_shunt(&argv, None, &[]);
    assert_same("read-write without --transport", &reference, &out);
    assert_eq!(transport(&stats).0, 2, "{}", stats.0);
}

#[test]
fn kernel_transport_upgrades_nothing() {
    let argv = [sockets()];
    let argv = [argv[0].as_str(), "read-write"];
    let reference = native(&argv, None);
    let (out, stats) = under_shunt(&argv, None, &["--transport", "kernel"]);
    assert_same("read-write with --transport kernel", &reference, &out);
    assert!(stats.0.get("transport").is_none(), "{}", stats.0);
    // `socket` stays on the gate's kernel route: no full path for it.
    assert_eq!(stats.get("socket", "emulated"), 0);
}

/// Rings survive an exec without privileges: the instance's segment broker
/// keeps each end's segment, which the new image asks for. The program runs as uid 65534 with no capabilities (`setpriv`,
/// as in `uid_change.rs`), so `/proc/self/map_files`, the old way, is shut;
/// its children exec with the connection kept at its number, dup2'd by a
/// vfork child, and dup2'd then `closefrom(4)` (which must not close the
/// hidden memfd). Compared with the same run natively on kernel sockets;
/// the bulk each exec'd child sends after its exec went through the rings.
#[test]
fn exec_keeps_rings_without_privileges() {
    // SAFETY: geteuid(2) takes no arguments.
    assert!(unsafe { libc::geteuid() } == 0, "this test needs root (it changes its user with setpriv)");
    let drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    // The premise: the new user has no capabilities at all.
    let caps: Vec<&str> = drop.iter().copied().chain(["grep", "^CapEff", "/proc/self/status"]).collect();
    let o = native(&caps, None);
    assert_eq!(o.stdout_str(), "CapEff:\t0000000000000000\n", "{}", o.stderr_str());
    let prog = sockets();
    let argv: Vec<&str> = drop.iter().copied().chain([prog.as_str(), "exec-ring"]).collect();
    let reference = native(&argv, None);
    assert!(reference.status.success(), "natively: {}", reference.stderr_str());
    assert_eq!(reference.stdout_str().matches("bulk from the child: 300000 bytes").count(), 3, "{}", reference.stdout_str());
    for spin in ["off", "auto"] {
        let (out, stats) = under_shunt(&argv, None, &["--transport", "shm", "--spin", spin]);
        let err = out.stderr_str();
        assert_same(&format!("exec-ring as uid 65534, --spin {spin}"), &reference, &out);
        assert!(!err.contains("does not follow this exec"), "spin {spin}: a connection fell back to the bare kernel socket: {err}");
        let (shm, kernel, bytes) = transport(&stats);
        assert_eq!((shm, kernel), (6, 0), "three connections, both ends on rings: {}", stats.0);
        // Each exec'd child sends 6 + 300000 bytes after its exec; they
        // count as ring bytes only if its end is still on the rings.
        assert!(bytes >= 3 * 300_006, "spin {spin}: {bytes} ring bytes: {}", stats.0);
        assert_eq!(stats.total("trapped"), 0, "{}", stats.0);
    }
}

/// An exec carries every ring connection it keeps open, however many: 200
/// connector ends (every tenth with a dup) follow a vfork child's exec, then
/// 200 more a fork child's exec after a first exec of a missing file failed
/// (whose undo must leave the connections as they were). The exec'd child
/// reads, on every connection, what was unread at the exec and what was sent
/// during it, and answers; compared with the same run natively.
///
/// The fixture raises its soft RLIMIT_NOFILE to the hard limit first, as
/// Go's runtime does (each ring end kept its segment's memfd at a hidden fd
/// >= 1000 before the segment broker kept them; see
/// `an_exec_at_the_common_fd_limit_carries_1000_ring_connections` for a
/// program left at 1024).
#[test]
fn exec_carries_hundreds_of_ring_connections() {
    const N: u64 = 200;
    let prog = sockets();
    let argv = [prog.as_str(), "exec-many", "200"];
    let reference = native(&argv, None);
    assert!(reference.status.success(), "natively: {}", reference.stderr_str());
    assert_eq!(reference.stdout_str().matches("answers intact: 200,").count(), 2, "{}", reference.stdout_str());
    for spin in ["off", "auto"] {
        let (out, stats) = under_shunt(&argv, None, &["--transport", "shm", "--spin", spin]);
        let err = out.stderr_str();
        assert_same(&format!("exec-many 200, --spin {spin}"), &reference, &out);
        assert!(!err.contains("does not follow this exec"), "spin {spin}: a connection was not carried: {err}");
        let (shm, kernel, bytes) = transport(&stats);
        assert_eq!((shm, kernel), (4 * N, 0), "two rounds of 200 connections, both ends on rings: {}", stats.0);
        // Every byte goes through a ring, counted once by its sender: per
        // connection 5 bytes each way before the exec, 5 sent during it,
        // and the exec'd child's answer of 5 + 2000 bytes. Had an end been
        // left with its kernel socket after the exec, its answer would not
        // count (and the parent would not read it either).
        assert_eq!(bytes, 2 * N * (5 + 5 + 5 + 2005), "spin {spin}: {}", stats.0);
        assert_eq!(stats.total("trapped"), 0, "{}", stats.0);
    }
}

/// The other side of the exec above: an end that cannot be carried says so,
/// one warning line each, naming its fd and why. The program closes the
/// instance's segment broker's socket (fd 1000; natively an unused number),
/// so no broker keeps the segments; it runs without capabilities (root with
/// an empty bounding set: `/proc/self/map_files` is shut, while its stats
/// segment is still its own to create in the instance directory, which
/// needs no broker) and with its soft RLIMIT_NOFILE at 256 (so no end could
/// keep its memfd at 1000 or above either); 40 connector ends are open
/// without `FD_CLOEXEC` at its exec. Natively the same program runs alike
/// (the exec'd child does not touch them).
#[test]
fn an_exec_warns_once_for_each_connection_it_cannot_carry() {
    // SAFETY: geteuid(2) takes no arguments.
    assert!(unsafe { libc::geteuid() } == 0, "this test needs root (it drops its capabilities with setpriv)");
    let prog = sockets();
    let drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"];
    let caps: Vec<&str> = drop.iter().copied().chain(["grep", "^CapEff", "/proc/self/status"]).collect();
    let o = native(&caps, None);
    assert_eq!(o.stdout_str(), "CapEff:\t0000000000000000\n", "the premise: no capabilities; {}", o.stderr_str());
    let argv: Vec<&str> = drop.iter().copied().chain([prog.as_str(), "exec-uncarried", "40"]).collect();
    let reference = native(&argv, None);
    assert!(reference.status.success(), "natively: {}", reference.stderr_str());
    let (out, stats) = under_shunt(&argv, None, &["--transport", "shm"]);
    // The same transcript and exit; stderr differs by the warnings alone.
    assert_eq!(out.status.code(), reference.status.code(), "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), reference.stdout_str(), "{}", out.stderr_str());
    assert_eq!(reference.stderr_str(), "", "natively nothing is said");
    let err = out.stderr_str();
    assert!(err.lines().all(|l| l.contains("a ring connection does not follow this exec")), "nothing else: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("a ring connection does not follow this exec")).collect();
    assert_eq!(lines.len(), 40, "one warning per connector end kept open: {err}");
    let mut fds: Vec<&str> = lines
        .iter()
        .map(|l| {
            assert!(l.contains("needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE"), "the reason is given: {l}");
            l.split("fd ").nth(1).and_then(|r| r.split(':').next()).unwrap_or("")
        })
        .collect();
    fds.sort();
    fds.dedup();
    assert_eq!(fds.len(), 40, "each names its own fd: {lines:?}");
    assert_eq!(transport(&stats).0, 80, "{}", stats.0);
}

/// A program at the common soft RLIMIT_NOFILE of 1024 execs itself with
/// `n` ring connections open (`exec-self`: to a server it forked before
/// connecting, which raised its own limit), and the new image checks that
/// every connection still echoes, through the rings: the stats count each
/// byte sent after the exec as a ring byte. Without capabilities (as uid
/// 65534, `setpriv`), so `/proc/self/map_files` cannot stand in for a
/// descriptor an end does not have: each end follows the exec through the
/// instance's segment broker, never through an fd of the program's own at
/// 1000 or above (of which about 23 fit under 1024). `prlimit` sets the
/// limits for the run, the hard one high enough for the server's 1000
/// ends. `fork`: a fork child execs with the connections while the parent
/// keeps its ends and uses them again afterwards. Compared with the same
/// run natively on kernel sockets; bounded by the program's receive
/// timeouts (a connection that did not follow fails, it does not hang).
fn exec_self_at_the_fd_limit(n: u64, fork: bool, spins: &[&str]) {
    // SAFETY: geteuid(2) takes no arguments.
    assert!(unsafe { libc::geteuid() } == 0, "this test needs root (it sets its hard fd limit and changes its user)");
    let prog = sockets();
    let count = n.to_string();
    let scenario = if fork { "fork-exec-self" } else { "exec-self" };
    let argv = [
        "prlimit",
        "--nofile=1024:8192",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        prog.as_str(),
        scenario,
        count.as_str(),
    ];
    let reference = native(&argv, None);
    assert!(reference.status.success(), "natively: {}", reference.stderr_str());
    let want = if fork {
        format!(
            "before the exec: {n} of {n} connections echo\nafter the exec: {n} of {n} connections echo\nexec'd child: 0\n\
             the parent after its child's exec: {n} of {n} connections echo\nserver: 0\n"
        )
    } else {
        format!("before the exec: {n} of {n} connections echo\nafter the exec: {n} of {n} connections echo\nserver: 0\n")
    };
    assert_eq!(reference.stdout_str(), want, "natively");
    for spin in spins {
        let (out, stats) = under_shunt(&argv, None, &["--transport", "shm", "--spin", spin]);
        let err = out.stderr_str();
        assert_same(&format!("{scenario} {n} at a soft fd limit of 1024, --spin {spin}"), &reference, &out);
        assert!(!err.contains("does not follow this exec"), "spin {spin}: a connection fell back to the bare kernel socket: {err}");
        let (shm, kernel, bytes) = transport(&stats);
        assert_eq!((shm, kernel), (2 * n, 0), "every connection on rings at both ends: {}", stats.0);
        // 5 bytes each way before the exec (some of the first may go
        // through the kernel, before the acceptor attached); 1005 each way
        // after it (and, with the fork, 1005 each way again from the
        // parent): ring bytes only while every end is still on its rings.
        let after = n * if fork { 2 } else { 1 } * 2010;
        assert!((after..=after + 10 * n).contains(&bytes), "spin {spin}: {bytes} ring bytes, {after} at least: {}", stats.0);
        assert_eq!(stats.total("trapped"), 0, "{}", stats.0);
    }
}

#[test]
fn an_exec_at_the_common_fd_limit_carries_100_ring_connections() {
    exec_self_at_the_fd_limit(100, false, &["off", "auto"]);
}

#[test]
fn an_exec_at_the_common_fd_limit_carries_1000_ring_connections() {
    exec_self_at_the_fd_limit(1000, false, &["auto"]);
}

#[test]
fn a_fork_child_execs_with_the_rings_while_its_parent_keeps_its_ends() {
    exec_self_at_the_fd_limit(100, true, &["auto"]);
}
