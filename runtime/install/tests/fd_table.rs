//! The fd table and the gate's fast path: a call on an fd the runtime owns
//! takes the full path to the fd's owner, a call on any other fd stays on
//! the kernel route (no dispatcher entry at all); dup, dup2, fcntl(F_DUPFD),
//! close and close_range keep the table consistent with the kernel's; a
//! fork child inherits the marks.

mod common;

use shunt_abi::syscalls::nr;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{gate0, gate6};
use shunt_core::fd::{self, OwnerId, FD_LIMIT};
use shunt_core::fd_owner::{self, FdOwner};
use shunt_core::task::{Call, Ret};
use shunt_core::thread::full_path_entries;

/// What the test owner saw.
static READS: AtomicU64 = AtomicU64::new(0);
static LAST_TOKEN: AtomicU64 = AtomicU64::new(0);
static DUPS: AtomicU64 = AtomicU64::new(0);
static CLOSES: AtomicU64 = AtomicU64::new(0);
static CLOSED_TOKEN: AtomicU64 = AtomicU64::new(0);

const PATTERN: u8 = 0x5a;

/// Answers `read` on its fds with PATTERN bytes, leaves everything else to
/// the kernel.
fn owner_call(c: &mut Call<'_>, _fd: i32, token: u64) -> Option<Ret> {
    if c.nr != nr::READ as u64 {
        return None;
    }
    READS.fetch_add(1, Ordering::SeqCst);
    LAST_TOKEN.store(token, Ordering::SeqCst);
    let (buf, len) = (c.args[1], c.args[2]);
    for i in 0..len {
        // SAFETY: the test passes a live buffer of `len` bytes.
        unsafe { std::ptr::write_volatile((buf + i) as *mut u8, PATTERN) };
    }
    Some(Ret::emulated(len as i64))
}

fn owner_dup(_fd: i32, _newfd: i32, token: u64) -> u64 {
    DUPS.fetch_add(1, Ordering::SeqCst);
    token + 100
}

fn owner_close(_fd: i32, token: u64) {
    CLOSES.fetch_add(1, Ordering::SeqCst);
    CLOSED_TOKEN.store(token, Ordering::SeqCst);
}

fn owner_exec(_fd: i32, token: u64) -> Option<u64> {
    Some(token)
}

fn owner_restore(_fd: i32, _token: u64) -> bool {
    true
}

static OWNER: FdOwner = FdOwner {
    name: "test",
    call: owner_call,
    dup: owner_dup,
    closing: |_, _| {},
    close: owner_close,
    exec: owner_exec,
    restore: owner_restore,
};

fn pipe() -> [i32; 2] {
    let mut p = [0i32; 2];
    // SAFETY: pipe writes two ints.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    p
}

fn read_via_gate(fd: i32, buf: &mut [u8]) -> i64 {
    gate6(nr::READ as i64, [fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0])
}

fn write_via_gate(fd: i32, bytes: &[u8]) -> i64 {
    gate6(nr::WRITE as i64, [fd as u64, bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0])
}

fn marked(fd: i32) -> bool {
    shunt_core::process::PROCESS.fds.is_marked(fd)
}

#[test]
fn marked_fds_take_the_full_path_and_unmarked_ones_the_kernel_route() {
    common::on_attached_thread(|| {
        let table = shunt_core::process::PROCESS.fds;
        let id: OwnerId = fd_owner::register_owner(&OWNER).expect("register the test owner");
        let kernel = pipe();
        let owned = pipe();
        let mut buf = [0u8; 16];

        // An unmarked fd: the kernel answers, the dispatcher never runs.
        let before = full_path_entries();
        assert_eq!(write_via_gate(kernel[1], b"hello"), 5);
        assert_eq!(read_via_gate(kernel[0], &mut buf), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(full_path_entries(), before, "calls on kernel fds must stay on the gate's kernel route");
        assert_eq!(READS.load(Ordering::SeqCst), 0);

        // A marked fd: the full path, to its owner.
        table.mark(owned[0], id, 7).expect("mark");
        assert!(marked(owned[0]) && !marked(kernel[0]));
        let before = full_path_entries();
        assert_eq!(read_via_gate(owned[0], &mut buf), 16);
        assert_eq!(buf, [PATTERN; 16], "the owner answered");
        assert_eq!(full_path_entries(), before + 1, "a call on a marked fd takes the full path");
        assert_eq!((READS.load(Ordering::SeqCst), LAST_TOKEN.load(Ordering::SeqCst)), (1, 7));
        // Kernel fds are still on the kernel route while another fd is marked.
        let before = full_path_entries();
        assert_eq!(write_via_gate(kernel[1], b"x"), 1);
        assert_eq!(read_via_gate(kernel[0], &mut buf[..1]), 1);
        assert_eq!(full_path_entries(), before);
        // A call the owner gives back goes to the kernel descriptor.
        assert_eq!(write_via_gate(owned[1], b"k"), 1);

        // dup: the new fd shares the owner (with the token the owner chose).
        let d = gate6(nr::DUP as i64, [owned[0] as u64, 0, 0, 0, 0, 0]);
        assert!(d >= 0, "dup: {d}");
        let d = d as i32;
        assert!(marked(d));
        assert_eq!(DUPS.load(Ordering::SeqCst), 1);
        assert_eq!(read_via_gate(d, &mut buf), 16);
        assert_eq!(LAST_TOKEN.load(Ordering::SeqCst), 107);
        // close: unmarked, the owner told.
        assert_eq!(gate6(nr::CLOSE as i64, [d as u64, 0, 0, 0, 0, 0]), 0);
        assert!(!marked(d));
        assert_eq!((CLOSES.load(Ordering::SeqCst), CLOSED_TOKEN.load(Ordering::SeqCst)), (1, 107));

        // fcntl(F_DUPFD_CLOEXEC): as dup.
        let f = gate6(nr::FCNTL as i64, [owned[0] as u64, libc::F_DUPFD_CLOEXEC as u64, 100, 0, 0, 0]);
        assert!(f >= 100, "fcntl: {f}");
        assert!(marked(f as i32));
        // close_range over it: unmarked.
        assert_eq!(gate6(nr::CLOSE_RANGE as i64, [f as u64, f as u64, 0, 0, 0, 0]), 0);
        assert!(!marked(f as i32));
        assert_eq!(CLOSES.load(Ordering::SeqCst), 2);

        // dup2 of a kernel fd onto an owned one: the owned object is closed
        // and the fd is the kernel's again.
        let target = gate6(nr::DUP as i64, [owned[0] as u64, 0, 0, 0, 0, 0]) as i32;
        assert!(marked(target));
        assert_eq!(gate6(nr::DUP2 as i64, [kernel[0] as u64, target as u64, 0, 0, 0, 0]), target as i64);
        assert!(!marked(target), "dup2 onto an owned fd replaces it");
        assert_eq!(CLOSES.load(Ordering::SeqCst), 3);
        assert_eq!(write_via_gate(kernel[1], b"z"), 1);
        let reads = READS.load(Ordering::SeqCst);
        assert_eq!(read_via_gate(target, &mut buf[..1]), 1);
        assert_eq!(buf[0], b'z', "the kernel's pipe now");
        assert_eq!(READS.load(Ordering::SeqCst), reads);
        // dup2 of an owned fd onto a kernel one: the target shares the owner.
        assert_eq!(gate6(nr::DUP2 as i64, [owned[0] as u64, target as u64, 0, 0, 0, 0]), target as i64);
        assert!(marked(target));

        // Out of range, and twice.
        assert_eq!(table.mark(FD_LIMIT as i32, id, 1), Err(fd::MarkError::OutOfRange));
        assert_eq!(table.mark(-1, id, 1), Err(fd::MarkError::OutOfRange));
        assert_eq!(table.mark(owned[0], id, 1), Err(fd::MarkError::Marked));

        // A fork child inherits the marks (its read is answered by the owner).
        let r = gate0(nr::FORK as i64);
        if r == 0 {
            let mut b = [0u8; 4];
            let ok = marked(owned[0]) && read_via_gate(owned[0], &mut b) == 4 && b == [PATTERN; 4];
            // SAFETY: ends the child at once (raw exit_group).
            unsafe { libc::syscall(nr::EXIT_GROUP as i64, if ok { 0 } else { 1 }) };
        }
        assert!(r > 0, "fork: {r}");
        let mut st = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(r as i32, &mut st, 0) };
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "the fork child did not see its parent's marks: {st:#x}");

        for fd in [target, owned[0]] {
            assert_eq!(gate6(nr::CLOSE as i64, [fd as u64, 0, 0, 0, 0, 0]), 0);
            assert!(!marked(fd));
        }
        for fd in [owned[1], kernel[0], kernel[1]] {
            // SAFETY: closing this test's own pipe ends.
            unsafe { libc::close(fd) };
        }
        assert!(!table.any_marked());
    });
}
