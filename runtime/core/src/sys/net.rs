//! `socket`, `epoll_create*` and `futex`: the calls the bypass transport
//! (`crate::net`) needs to see although no fd of theirs is owned yet.
//!
//! They are routed here only when their feature is on (`table::configure`
//! sends them straight to the kernel otherwise): `socket` when the
//! transport is (a new TCP or MPTCP stream socket is marked fresh, so that
//! its `connect` and `listen` reach the transport; Go makes its listeners
//! MPTCP sockets since 1.24, which on loopback are plain TCP underneath),
//! `epoll_create*` likewise (a new epoll set is marked, so that every wait
//! on it reaches the transport: a connection another thread adds while one
//! waits brings events that are the transport's, not the program's),
//! `futex` when waits spin (a `FUTEX_WAIT` polls its word before it parks:
//! `shunt_transport::spin`).

use shunt_transport::spin::SpinMode;

use crate::layout::Answer;
use crate::net;
use crate::task::{Call, Ret};
use crate::umem;

use super::forward;

pub fn sys_socket(c: &mut Call) -> Ret {
    let (domain, ty, proto) = (c.args[0] as i32, c.args[1] as i32, c.args[2] as i32);
    let r = forward(c);
    let fd = r.value;
    let stream = ty & 0xf == libc::SOCK_STREAM;
    let inet = domain == libc::AF_INET || domain == libc::AF_INET6;
    if fd >= 0 && net::on() && inet && stream && (proto == 0 || proto == libc::IPPROTO_TCP || proto == libc::IPPROTO_MPTCP) {
        net::adopt_socket(fd as i32);
    }
    r
}

pub fn sys_epoll_create(c: &mut Call) -> Ret {
    epoll_created(forward(c))
}

pub fn sys_epoll_create1(c: &mut Call) -> Ret {
    epoll_created(forward(c))
}

fn epoll_created(r: Ret) -> Ret {
    if r.value >= 0 && net::on() {
        net::adopt_epoll(r.value as i32);
    }
    r
}

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_CMD_MASK: u64 = 0x7f;

pub fn sys_futex(c: &mut Call) -> Ret {
    let a = c.args;
    let cmd = a[1] & FUTEX_CMD_MASK;
    if (cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET)
        || net::spin_mode() == SpinMode::Off
        || a[0] % 4 != 0
        || !umem::plausible(a[0], 4)
    {
        return forward(c);
    }
    // FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute
    // (the spin then only stays within its own small budget).
    let rel = if cmd == FUTEX_WAIT && a[3] != 0 {
        match umem::read::<[u64; 2]>(a[3]) {
            Some([s, ns]) => Some(s.saturating_mul(1_000_000_000).saturating_add(ns)),
            None => return forward(c),
        }
    } else {
        None
    };
    c.count_now(Answer::Passthrough);
    let word = a[0] as *const core::sync::atomic::AtomicU32;
    let val = a[2] as u32;
    // SAFETY: `word` is a plausible, aligned address the program handed to
    // futex (a bad one faults as the kernel's copy would not: the program's
    // own futex word must be mapped for its wait to make sense); the
    // arguments are the program's, passed on unchanged.
    let r = net::with_wait(c, shunt_transport::spin::WaitKind::Futex, |w| unsafe { shunt_transport::spin::futex_wait(word, val, rel, a, w) });
    Ret::counted(r)
}
