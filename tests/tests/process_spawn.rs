//! Children that share the parent's memory until they exec or exit:
//! glibc's `posix_spawn` (a `CLONE_VM|CLONE_VFORK` child on a stack of its
//! own, which `system()` and `popen()` use too) and `vfork`.
//! `tests/programs/spawn.c` runs each scenario natively and under `shunt
//! run` (with `--transport shm` while the parent holds ring connections);
//! transcripts and exit status must be the same.

use shunt_tests::*;

fn spawn_prog() -> String {
    program(env!("PROG_SPAWN"))
}

fn shm_connections(s: &Stats) -> u64 {
    s.0["transport"].get("shm_connections").and_then(|v| v.as_u64()).unwrap_or(0)
}

/// Runs the scenario natively, then under shunt with `shunt_args`;
/// returns the shunt run's stats after comparing the two runs.
fn same_as_native(args: &[&str], shunt_args: &[&str]) -> Stats {
    let prog = spawn_prog();
    let mut argv = vec![prog.as_str()];
    argv.extend_from_slice(args);
    let reference = native(&argv, None);
    assert!(reference.status.success(), "{args:?} natively: {}{}", reference.stdout_str(), reference.stderr_str());
    let (out, stats) = under_shunt(&argv, None, shunt_args);
    assert_same(&format!("{args:?} with {shunt_args:?}"), &reference, &out);
    stats
}

/// The `posix_spawn` child runs on a block of its own but in the parent's
/// memory: its file actions (`dup2` of a ring connection onto the number
/// of the parent's pipe, of the pipe onto a ring connection's number,
/// `close` of ring ends, `closefrom`) and its `SETSIGDEF` reset of SIGSYS
/// are its own. Before, they went into the parent's fd table and handler
/// records: the parent's connections fell back to dead kernel sockets and
/// its SIGSYS handler was gone. Spin off and auto; the connections were
/// carried by rings throughout, and the spawned child that got one by
/// `dup2` kept it on the rings across its exec.
#[test]
fn posix_spawn_children_leave_the_parents_rings_and_handlers_alone() {
    for spin in ["off", "auto"] {
        let s = same_as_native(&["posix-spawn"], &["--transport", "shm", "--spin", spin]);
        assert_eq!(shm_connections(&s), 4, "two connections, both ends on rings: {}", s.0);
        assert_eq!(s.total("trapped"), 0, "{}", s.0);
        assert!(s.processes() >= 3, "the spawned children ran in the instance: {}", s.0);
    }
}

/// `system()` and both kinds of `popen()` (posix_spawn underneath) while
/// the parent holds a ring connection, used between each.
#[test]
fn system_and_popen_with_a_ring_connection_open() {
    let s = same_as_native(&["system-popen"], &["--transport", "shm"]);
    assert_eq!(shm_connections(&s), 2, "{}", s.0);
    assert_eq!(s.total("trapped"), 0, "{}", s.0);
}

/// A register-only vfork child runs on its parent's thread block, where
/// the runtime keeps what the program believes the thread blocks of the
/// signals it never lets it block (SIGSYS, SIGTRAP). The child's
/// `sigprocmask` changes (block, clear, unblock; then `_exit`, exec, or an
/// exec that fails) are its own: the parent's `sigprocmask(SIG_BLOCK,
/// NULL, &old)` afterwards reads what it had, and the exec'd child the
/// mask its vfork child asked for. Before, the parent read the child's
/// beliefs. Through the gate and through the trap fallback.
#[test]
fn a_vfork_childs_mask_is_not_the_parents() {
    for shunt_args in [&[][..], &["--no-patch"][..]] {
        same_as_native(&["vfork-mask"], shunt_args);
    }
}

/// An exec with more argv + envp pointers than the exec handler keeps on
/// its stack (768) puts its new arrays in a mapping. In a vfork child (a
/// register-only vfork, and glibc's posix_spawn child) that mapping is in
/// the parent's memory, and an exec that succeeds never comes back to
/// unmap it: before, each such exec left about 20 KiB in the parent (4 MB
/// over 200). Now each thread slot keeps one mapping, reused by every
/// exec: 200 vfork+exec and 200 posix_spawn of /bin/true with 2000
/// arguments leave the parent's mappings and VmSize flat, as natively.
#[test]
fn long_exec_argument_lists_do_not_grow_the_parent() {
    let prog = spawn_prog();
    let argv = [prog.as_str(), "exec-arrays", "2000", "200"];
    let reference = native(&argv, None);
    let text = reference.stdout_str();
    let flat = "0 failed; mappings grew by more than 4: no; VmSize grew by 1 MiB or more: no";
    assert_eq!(text.matches(flat).count(), 2, "natively: {text}{}", reference.stderr_str());
    let (out, s) = under_shunt(&argv, None, &[]);
    assert_same("exec-arrays 2000 200", &reference, &out);
    assert!(s.get("execve", "passthrough") >= 400, "the execs went through the runtime: {}", s.0);
}
