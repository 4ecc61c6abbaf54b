//! The rendezvous end to end with real sockets: a shunt connector and a
//! shunt acceptor upgrade; a plain client, a forged deposit, a listener that
//! is gone, and IPv4/IPv6/wildcard listeners behave as they must; a thousand
//! connections at once all upgrade.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use common::*;
use shunt_transport::conn::{End, DEFAULT_RING_BYTES};
use shunt_transport::rendezvous::{connect_names, deposit, listener_name, open_registry, register, send_deposit, Claims, SockKey};
use shunt_transport::spin::SpinMode;

fn key(a: SocketAddr) -> SockKey {
    let s = socket2_like(a);
    // SAFETY: `s.0` is a valid sockaddr of `s.1` bytes.
    unsafe { SockKey::from_raw(s.0.as_ptr(), s.1) }.unwrap()
}

/// A socket address as raw bytes (what a program passes to connect).
fn socket2_like(a: SocketAddr) -> (Vec<u8>, u32) {
    match a {
        SocketAddr::V4(v) => {
            // SAFETY: all-zero sockaddr_in is valid.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_port = v.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(v.ip().octets());
            // SAFETY: viewing a plain C struct as its bytes.
            let b = unsafe { std::slice::from_raw_parts(&sa as *const _ as *const u8, std::mem::size_of_val(&sa)) };
            (b.to_vec(), b.len() as u32)
        }
        SocketAddr::V6(v) => {
            // SAFETY: all-zero sockaddr_in6 is valid.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_port = v.port().to_be();
            sa.sin6_addr.s6_addr = v.ip().octets();
            // SAFETY: viewing a plain C struct as its bytes.
            let b = unsafe { std::slice::from_raw_parts(&sa as *const _ as *const u8, std::mem::size_of_val(&sa)) };
            (b.to_vec(), b.len() as u32)
        }
    }
}

/// A listener that registered (what the runtime does at listen()).
struct Shunt {
    l: TcpListener,
    reg: OwnedFd,
}

fn shunt_listener(addr: &str) -> Shunt {
    let l = TcpListener::bind(addr).unwrap();
    let k = key(l.local_addr().unwrap());
    let name = listener_name(&k, false).expect("a loopback listener has a name");
    let r = register(&name);
    assert!(r >= 0, "register: {r}");
    // SAFETY: a fresh fd we own.
    Shunt { l, reg: unsafe { OwnedFd::from_raw_fd(r as i32) } }
}

/// What the runtime does at connect(): segment, deposit, connect. Returns
/// the socket and, if a listener took the deposit, the connector's end.
fn shunt_connect(dst: SocketAddr) -> (OwnedFd, Option<End>) {
    let fam = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (names, n) = connect_names(&key(dst));
    let (end, memfd) = End::create(DEFAULT_RING_BYTES).unwrap();
    let took = deposit(&names[..n], memfd, fd.as_raw_fd(), DEFAULT_RING_BYTES);
    // SAFETY: our memfd; the listener has its own copy if it took it.
    unsafe { libc::close(memfd) };
    let (sa, len) = socket2_like(dst);
    // SAFETY: `sa` is a sockaddr of `len` bytes.
    let r = unsafe { libc::connect(fd.as_raw_fd(), sa.as_ptr().cast(), len) };
    assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
    if took {
        (fd, Some(end))
    } else {
        // SAFETY: nobody else has the segment.
        unsafe { end.unmap() };
        (fd, None)
    }
}

fn accept(s: &Shunt) -> OwnedFd {
    let (a, _) = s.l.accept().unwrap();
    a.into()
}

#[test]
fn shunt_to_shunt_upgrades_and_bytes_skip_the_kernel() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let (cfd, cend) = shunt_connect(s.l.local_addr().unwrap());
    let c = cend.expect("the registered listener took the deposit");
    let afd = accept(&s);
    let a = claims.claim(s.reg.as_raw_fd(), afd.as_raw_fd(), tid()).expect("the deposit matches");
    write_all(&c, &cfd, b"request", SpinMode::Auto);
    let mut b = [0u8; 7];
    read_exact(&a, &afd, &mut b, SpinMode::Auto);
    assert_eq!(&b, b"request");
    write_all(&a, &afd, b"reply!!", SpinMode::Auto);
    read_exact(&c, &cfd, &mut b, SpinMode::Auto);
    assert_eq!(&b, b"reply!!");
    // The kernel connection carried nothing.
    for fd in [&cfd, &afd] {
        let mut k = [0u8; 8];
        // SAFETY: `k` is writable.
        let r = unsafe { libc::recv(fd.as_raw_fd(), k.as_mut_ptr().cast(), 8, libc::MSG_DONTWAIT) };
        assert_eq!(r, -1, "the kernel socket held stream bytes");
    }
    // Both see each other's addresses through the kernel as usual.
    assert_eq!(SockKey::of_socket(cfd.as_raw_fd(), true).unwrap(), SockKey::of_socket(afd.as_raw_fd(), false).unwrap());
    assert_eq!(claims.pending(tid()), 0);
}

#[test]
fn a_plain_client_gets_plain_tcp() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let mut plain = std::net::TcpStream::connect(s.l.local_addr().unwrap()).unwrap();
    let afd = accept(&s);
    assert!(claims.claim(s.reg.as_raw_fd(), afd.as_raw_fd(), tid()).is_none());
    use std::io::{Read, Write};
    plain.write_all(b"hi").unwrap();
    let mut b = [0u8; 2];
    // SAFETY: `b` is writable.
    assert_eq!(unsafe { libc::recv(afd.as_raw_fd(), b.as_mut_ptr().cast(), 2, libc::MSG_WAITALL) }, 2);
    assert_eq!(&b, b"hi");
    // SAFETY: a plain kernel send.
    unsafe { libc::send(afd.as_raw_fd(), b"yo".as_ptr().cast(), 2, 0) };
    plain.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"yo");
}

#[test]
fn no_registered_listener_no_deposit() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_fd, end) = shunt_connect(l.local_addr().unwrap());
    assert!(end.is_none());
}

#[test]
fn a_listener_that_closed_takes_no_deposit() {
    let s = shunt_listener("127.0.0.1:0");
    let addr = s.l.local_addr().unwrap();
    drop(s.reg);
    let (_fd, end) = shunt_connect(addr);
    assert!(end.is_none());
}

/// A deposit whose proof is not the connection's own socket — a UDP socket
/// "connected" with the same addresses, or another TCP connection — never
/// upgrades someone else's connection.
#[test]
fn forged_deposits_are_refused() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let dst = s.l.local_addr().unwrap();
    // The victim: a plain client whose connection must stay plain.
    let victim = std::net::TcpStream::connect(dst).unwrap();
    let vaddr = victim.local_addr().unwrap();
    // The forger binds a UDP socket to the victim's address and "connects"
    // it to the listener: the same 4-tuple, another protocol.
    let udp = std::net::UdpSocket::bind(vaddr).unwrap();
    udp.connect(dst).unwrap();
    let (names, n) = connect_names(&key(dst));
    let (_end, memfd) = End::create(DEFAULT_RING_BYTES).unwrap();
    assert!(deposit(&names[..n], memfd, udp.as_raw_fd(), DEFAULT_RING_BYTES));
    // And a TCP proof that is a different connection.
    let other = std::net::TcpStream::connect(dst).unwrap();
    assert!(deposit(&names[..n], memfd, other.as_raw_fd(), DEFAULT_RING_BYTES));
    // SAFETY: our memfd.
    unsafe { libc::close(memfd) };
    let afd = accept(&s);
    assert_eq!(SockKey::of_socket(afd.as_raw_fd(), true).unwrap(), key(vaddr));
    assert!(claims.claim(s.reg.as_raw_fd(), afd.as_raw_fd(), tid()).is_none(), "a forged deposit upgraded a plain client");
    // The other connection's deposit is its own, and waits for its accept.
    let afd2 = accept(&s);
    assert!(claims.claim(s.reg.as_raw_fd(), afd2.as_raw_fd(), tid()).is_some());
}

/// A deposit that arrives before its connection is accepted after another
/// one waits in the pending table.
#[test]
fn deposits_wait_for_their_accept() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let dst = s.l.local_addr().unwrap();
    let (c1, e1) = shunt_connect(dst);
    let (c2, e2) = shunt_connect(dst);
    let _plain = std::net::TcpStream::connect(dst).unwrap();
    let a1 = accept(&s);
    let a2 = accept(&s);
    let a3 = accept(&s);
    // Claim out of order: the second first.
    let b2 = claims.claim(s.reg.as_raw_fd(), a2.as_raw_fd(), tid()).expect("second");
    assert_eq!(claims.pending(tid()), 1);
    let b1 = claims.claim(s.reg.as_raw_fd(), a1.as_raw_fd(), tid()).expect("first, from the table");
    assert!(claims.claim(s.reg.as_raw_fd(), a3.as_raw_fd(), tid()).is_none(), "the plain one");
    for ((cfd, ce), (afd, ae)) in [((c1, e1.unwrap()), (a1, b1)), ((c2, e2.unwrap()), (a2, b2))] {
        write_all(&ce, &cfd, b"x", SpinMode::Off);
        let mut b = [0u8; 1];
        read_exact(&ae, &afd, &mut b, SpinMode::Off);
    }
}

#[test]
fn names_of_wildcard_and_ipv6_listeners() {
    let k = |s: &str| key(s.parse().unwrap());
    let n = |k: &SockKey, v6only| listener_name(k, v6only).map(|n| String::from_utf8_lossy(&n.as_bytes()[1..]).into_owned());
    assert_eq!(n(&k("127.0.0.1:80"), false).unwrap(), "shunt-tcp-v1 v4 127.0.0.1:80");
    assert_eq!(n(&k("0.0.0.0:80"), false).unwrap(), "shunt-tcp-v1 v4 0.0.0.0:80");
    assert_eq!(n(&k("[::]:80"), false).unwrap(), "shunt-tcp-v1 v6 [0000:0000:0000:0000:0000:0000:0000:0000]:80");
    assert!(n(&k("[::]:80"), true).unwrap().contains("v6only"));
    assert!(n(&k("192.0.2.1:80"), false).is_none(), "not reachable from loopback");
    assert_eq!(k("[::ffff:127.0.0.1]:5"), k("127.0.0.1:5"), "v4-mapped is v4");
    let (names, c) = connect_names(&k("127.0.0.1:80"));
    let names: Vec<String> = names[..c].iter().map(|n| String::from_utf8_lossy(&n.as_bytes()[1..]).into_owned()).collect();
    assert_eq!(names.len(), 3);
    assert!(names[1].ends_with("v4 0.0.0.0:80") && names[2].contains("v6 [0000"), "{names:?}");
    assert_eq!(connect_names(&k("10.0.0.1:80")).1, 0, "not loopback: no rendezvous");
}

#[test]
fn wildcard_and_dual_stack_listeners_are_found() {
    let s = shunt_listener("0.0.0.0:0");
    let port = s.l.local_addr().unwrap().port();
    let claims = Claims::new();
    let (cfd, ce) = shunt_connect(format!("127.0.0.1:{port}").parse().unwrap());
    let afd = accept(&s);
    let ae = claims.claim(s.reg.as_raw_fd(), afd.as_raw_fd(), tid()).expect("via 0.0.0.0");
    write_all(&ce.unwrap(), &cfd, b"4", SpinMode::Off);
    let mut b = [0u8; 1];
    read_exact(&ae, &afd, &mut b, SpinMode::Off);
    // A dual-stack [::] listener takes IPv4 and IPv6 connectors.
    if let Ok(l6) = TcpListener::bind("[::]:0") {
        let port = l6.local_addr().unwrap().port();
        let name = listener_name(&key(l6.local_addr().unwrap()), false).unwrap();
        // SAFETY: a fresh fd we own.
        let reg = unsafe { OwnedFd::from_raw_fd(register(&name) as i32) };
        let s6 = Shunt { l: l6, reg };
        for dst in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
            let (cfd, ce) = shunt_connect(dst.parse().unwrap());
            let afd = accept(&s6);
            let ae = claims.claim(s6.reg.as_raw_fd(), afd.as_raw_fd(), tid()).unwrap_or_else(|| panic!("{dst} via [::]"));
            write_all(&ce.unwrap(), &cfd, b"6", SpinMode::Off);
            read_exact(&ae, &afd, &mut b, SpinMode::Off);
        }
    }
}

/// A thousand connections at once: all deposits queue, all are accepted
/// and claimed, every connection carries a message each way over its rings.
#[test]
fn a_thousand_connections_at_once() {
    raise_nofile(8192);
    bounded(120, "1000 connections", || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: re-listen with a backlog for all of them.
        unsafe { libc::listen(l.as_raw_fd(), 2048) };
        let k = key(l.local_addr().unwrap());
        let reg = register(&listener_name(&k, false).unwrap());
        assert!(reg >= 0);
        // SAFETY: a fresh fd we own.
        let s = Shunt { l, reg: unsafe { OwnedFd::from_raw_fd(reg as i32) } };
        let dst = s.l.local_addr().unwrap();
        let claims = Claims::new();
        let conns: Vec<(OwnedFd, End)> = (0..1000).map(|_| {
            let (fd, e) = shunt_connect(dst);
            (fd, e.expect("deposit taken"))
        }).collect();
        let mut accepted = vec![];
        for _ in 0..1000 {
            let afd = accept(&s);
            let e = claims.claim(s.reg.as_raw_fd(), afd.as_raw_fd(), tid()).expect("every one upgrades");
            accepted.push((afd, e));
        }
        assert_eq!(claims.pending(tid()), 0);
        for (i, (cfd, ce)) in conns.iter().enumerate() {
            write_all(ce, cfd, &(i as u32).to_le_bytes(), SpinMode::Off);
        }
        for (afd, ae) in &accepted {
            let mut b = [0u8; 4];
            read_exact(ae, afd, &mut b, SpinMode::Off);
            write_all(ae, afd, &b, SpinMode::Off);
        }
        for (i, (cfd, ce)) in conns.iter().enumerate() {
            let mut b = [0u8; 4];
            read_exact(ce, cfd, &mut b, SpinMode::Off);
            assert_eq!(u32::from_le_bytes(b), i as u32);
        }
        for (_, e) in conns.into_iter().chain(accepted) {
            // SAFETY: nothing uses the ends any more.
            unsafe { e.unmap() };
        }
    });
}

fn raise_nofile(n: u64) {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is writable.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if r.rlim_cur < n {
        r.rlim_cur = n.min(r.rlim_max);
        // SAFETY: `r` is a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

/// A claim that drains the registry between a connector's connect to it
/// and its send (here: the claim of a plain client's connection) finds a
/// registry connection with nothing queued yet. It must keep it: the
/// deposit arrives after, and its connection upgrades. (It used to close it:
/// the connector's send failed, and that connection stayed kernel TCP on
/// both sides, the flake of go_loopback_over_rings.)
#[test]
fn a_deposit_still_on_its_way_is_waited_for() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let dst = s.l.local_addr().unwrap();
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh fd we own.
    let cfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (names, n) = connect_names(&key(dst));
    let (cend, memfd) = End::create(DEFAULT_RING_BYTES).unwrap();
    let reg = open_registry(&names[..n]).expect("the listener is registered");
    // Another connection is accepted and claimed meanwhile.
    let plain = std::net::TcpStream::connect(dst).unwrap();
    let pfd = accept(&s);
    assert!(claims.claim(s.reg.as_raw_fd(), pfd.as_raw_fd(), tid()).is_none(), "a plain client");
    assert_eq!(claims.pending(tid()), 1, "the registry connection waits for its deposit");
    assert!(send_deposit(reg, memfd, cfd.as_raw_fd(), DEFAULT_RING_BYTES), "the acceptor hung up on a deposit on its way");
    // SAFETY: ours.
    unsafe { libc::close(reg) };
    // SAFETY: ours; the listener has its copy.
    unsafe { libc::close(memfd) };
    let (sa, len) = socket2_like(dst);
    // SAFETY: `sa` is a sockaddr of `len` bytes.
    assert_eq!(unsafe { libc::connect(cfd.as_raw_fd(), sa.as_ptr().cast(), len) }, 0);
    let afd = accept(&s);
    let aend = claims.claim(s.reg.as_raw_fd(), afd.as_raw_fd(), tid()).expect("the late deposit matches");
    write_all(&cend, &cfd, b"late", SpinMode::Off);
    let mut b = [0u8; 4];
    read_exact(&aend, &afd, &mut b, SpinMode::Off);
    assert_eq!(&b, b"late");
    assert_eq!(claims.pending(tid()), 0);
    drop(plain);
}

/// A registry connection that hangs up without a deposit frees its slot.
#[test]
fn a_registry_connection_that_says_nothing_is_dropped() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let dst = s.l.local_addr().unwrap();
    let (names, n) = connect_names(&key(dst));
    let reg = open_registry(&names[..n]).unwrap();
    let _plain = std::net::TcpStream::connect(dst).unwrap();
    let pfd = accept(&s);
    assert!(claims.claim(s.reg.as_raw_fd(), pfd.as_raw_fd(), tid()).is_none());
    assert_eq!(claims.pending(tid()), 1);
    // SAFETY: ours.
    unsafe { libc::close(reg) };
    let _plain2 = std::net::TcpStream::connect(dst).unwrap();
    let pfd2 = accept(&s);
    assert!(claims.claim(s.reg.as_raw_fd(), pfd2.as_raw_fd(), tid()).is_none());
    assert_eq!(claims.pending(tid()), 0);
}

/// Closes `fd` with a RST (`SO_LINGER` {on, 0}).
fn reset(fd: OwnedFd) {
    let lin = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid linger option.
    unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&lin as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as u32) };
    drop(fd);
}

/// A TCP socket bound to `local` (SO_REUSEADDR) whose deposit goes to the
/// listener at `dst` before it connects there, as the runtime does.
fn shunt_connect_from(local: SocketAddr, dst: SocketAddr) -> (OwnedFd, End) {
    // SAFETY: plain socket calls on a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)) };
    let one: libc::c_int = 1;
    // SAFETY: a valid int option.
    unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), 4) };
    let (sa, len) = socket2_like(local);
    // SAFETY: `sa` is a sockaddr of `len` bytes.
    assert_eq!(unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr().cast(), len) }, 0, "bind: {}", std::io::Error::last_os_error());
    let (names, n) = connect_names(&key(dst));
    let (end, memfd) = End::create(DEFAULT_RING_BYTES).unwrap();
    assert!(deposit(&names[..n], memfd, fd.as_raw_fd(), DEFAULT_RING_BYTES));
    // SAFETY: our memfd; the listener has its copy.
    unsafe { libc::close(memfd) };
    let (sa, len) = socket2_like(dst);
    // SAFETY: `sa` is a sockaddr of `len` bytes.
    assert_eq!(unsafe { libc::connect(fd.as_raw_fd(), sa.as_ptr().cast(), len) }, 0, "connect: {}", std::io::Error::last_os_error());
    (fd, end)
}

/// A deposit held for a connection that was never claimed (reset in the
/// backlog when its listener closed, or accepted by another process) must
/// not be taken for a later connection on the same 4-tuple: the client port
/// is free again as soon as the first socket is gone. Taken, the acceptor
/// ran on the dead connection's rings while its real peer stayed on the
/// kernel: the acceptor's writes went nowhere. The newest deposit for a
/// 4-tuple wins; older ones are dropped.
#[test]
fn a_held_deposit_is_not_taken_for_a_later_connection_on_its_four_tuple() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let dst = s.l.local_addr().unwrap();
    let (c1, e1) = shunt_connect_from("127.0.0.1:0".parse().unwrap(), dst);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], SockKey::of_socket(c1.as_raw_fd(), false).unwrap().port));
    // Accepted, never claimed; another accept's claim drains and holds it.
    let a1 = accept(&s);
    let _plain = std::net::TcpStream::connect(dst).unwrap();
    let ap = accept(&s);
    assert!(claims.claim(s.reg.as_raw_fd(), ap.as_raw_fd(), tid()).is_none(), "a plain client");
    assert_eq!(claims.pending(tid()), 1, "the first deposit is held");
    // The first connection goes (a reset: no TIME_WAIT keeps the tuple).
    // The acceptor's side resets it: the held deposit's proof keeps the
    // connector's socket open whatever its own fd does.
    reset(a1);
    drop(c1);
    // SAFETY: nobody uses the first connector's end any more.
    unsafe { e1.unmap() };
    // The same 4-tuple again.
    let (c2, e2) = shunt_connect_from(local, dst);
    let a2 = accept(&s);
    assert_eq!(SockKey::of_socket(a2.as_raw_fd(), true).unwrap(), SockKey::of_socket(c2.as_raw_fd(), false).unwrap());
    assert_eq!(SockKey::of_socket(c2.as_raw_fd(), false).unwrap().port, local.port(), "the 4-tuple was reused");
    let end = claims.claim(s.reg.as_raw_fd(), a2.as_raw_fd(), tid()).expect("the second deposit matches");
    assert_ne!(e2.peer().flags.load(std::sync::atomic::Ordering::Acquire) & shunt_transport::conn::ATTACHED, 0, "the acceptor attached the second connection's segment, not the first's");
    write_all(&end, &a2, b"pong", SpinMode::Off);
    let mut b = [0u8; 4];
    read_exact(&e2, &c2, &mut b, SpinMode::Off);
    assert_eq!(&b, b"pong");
    assert_eq!(claims.pending(tid()), 0, "the stale deposit was dropped");
}

/// The same, for a later connection that deposits nothing (a plain client,
/// or a shunt client whose deposit went to a registry that closed): no
/// newer deposit says the held one is stale, but its proof does: its socket
/// was reset, so it no longer has that peer. Taken, the acceptor's echo went
/// into the dead connection's ring and the client read a clean EOF (listener
/// churn between two shunt processes).
#[test]
fn a_held_deposit_whose_connection_is_gone_is_not_taken_for_a_plain_client_on_its_four_tuple() {
    let s = shunt_listener("127.0.0.1:0");
    let claims = Claims::new();
    let dst = s.l.local_addr().unwrap();
    let (c1, e1) = shunt_connect_from("127.0.0.1:0".parse().unwrap(), dst);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], SockKey::of_socket(c1.as_raw_fd(), false).unwrap().port));
    let a1 = accept(&s);
    let _plain = std::net::TcpStream::connect(dst).unwrap();
    let ap = accept(&s);
    assert!(claims.claim(s.reg.as_raw_fd(), ap.as_raw_fd(), tid()).is_none(), "a plain client");
    assert_eq!(claims.pending(tid()), 1, "the first deposit is held");
    reset(a1);
    drop(c1);
    // SAFETY: nobody uses the first connector's end any more.
    unsafe { e1.unmap() };
    // A plain client on the same 4-tuple.
    // SAFETY: plain socket calls on a fresh fd we own.
    let c2 = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)) };
    let one: libc::c_int = 1;
    // SAFETY: a valid int option.
    unsafe { libc::setsockopt(c2.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), 4) };
    let (sa, len) = socket2_like(local);
    // SAFETY: `sa` is a sockaddr of `len` bytes.
    assert_eq!(unsafe { libc::bind(c2.as_raw_fd(), sa.as_ptr().cast(), len) }, 0, "bind: {}", std::io::Error::last_os_error());
    let (sa, len) = socket2_like(dst);
    // SAFETY: `sa` is a sockaddr of `len` bytes.
    assert_eq!(unsafe { libc::connect(c2.as_raw_fd(), sa.as_ptr().cast(), len) }, 0, "connect: {}", std::io::Error::last_os_error());
    let a2 = accept(&s);
    assert_eq!(SockKey::of_socket(a2.as_raw_fd(), true).unwrap(), SockKey::of_socket(c2.as_raw_fd(), false).unwrap());
    assert_eq!(SockKey::of_socket(c2.as_raw_fd(), false).unwrap().port, local.port(), "the 4-tuple was reused");
    assert!(claims.claim(s.reg.as_raw_fd(), a2.as_raw_fd(), tid()).is_none(), "the stale deposit was taken for a plain client");
    assert_eq!(claims.pending(tid()), 0, "the stale deposit was dropped");
}
