//! A private containerd with runc, end to end: images made with umoci,
//! containers serving on a loopback port (host network, or a loopback-only
//! namespace of their own), containerd's default seccomp profile, and
//! nothing left behind — after a clean stop, a failed run, or a drop with
//! containers still running.
//!
//! Needs root, containerd, runc, umoci and busybox-static
//! (scripts/setup.sh installs them). A container is ready when its port
//! accepts a connection, checked until a deadline as a health check does.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shunt_containerd::{Container, Containerd, ImageConfig, Network, Options, RunSpec, build_oci_archive};

const BUSYBOX: &str = "/bin/busybox";

/// An image whose root holds busybox and two web roots, /www/a and /www/b.
fn busybox_image(work: &Path) -> PathBuf {
    assert!(
        std::fs::read(BUSYBOX).is_ok_and(|b| b.len() > 100_000),
        "{BUSYBOX} is missing: apt-get install busybox-static (scripts/setup.sh does)"
    );
    let root = work.join("rootfs");
    for d in ["bin", "www/a", "www/b", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("www/a/index.html"), "site a\n").unwrap();
    std::fs::write(root.join("www/b/index.html"), "site b\n").unwrap();
    let archive = work.join("busybox.tar");
    let config = ImageConfig {
        entrypoint: vec!["/bin/busybox".into()],
        cmd: vec!["sh".into()],
        env: vec![("PATH".into(), "/bin".into())],
        workdir: Some("/".into()),
        user: None,
    };
    build_oci_archive(&root, &config, "latest", &archive).unwrap();
    archive
}

fn started(work: &Path) -> Containerd {
    let d = Containerd::start(&Options::default()).unwrap();
    d.import(&busybox_image(work), "shunt.test/busybox:latest").unwrap();
    d
}

fn httpd(id: &str, network: Network, port: u16, site: &str) -> RunSpec {
    let mut s = RunSpec::new(id, "shunt.test/busybox:latest", network);
    s.args = ["/bin/busybox", "httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h", &format!("/www/{site}")]
        .map(String::from)
        .to_vec();
    s
}

/// GET / over a connection from `connect`, retried until the port accepts
/// (bounded): the container's health check.
fn get(c: &Container, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match c.connect(port) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{}: port {port} never accepted: {e}; log: {:?}", c.id(), std::fs::read_to_string(c.log_path())),
        }
    };
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

fn status_field(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string())).unwrap()
}

/// Waits (bounded) for `pid` to exit: a pidfd turns readable when it does.
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags; returns an fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as i32, 0) } as i32;
    if fd < 0 {
        return true; // already gone
    }
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; then closing the fd we own.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    unsafe { libc::close(fd) };
    n == 1
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the pid exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// Nothing of the daemon in `dir` is left: directory, processes, mounts, cgroups.
fn assert_nothing_left(dir: &Path, namespace: &str) {
    assert!(!dir.exists(), "{} survived", dir.display());
    let needle = dir.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            assert!(!String::from_utf8_lossy(&cmd).contains(&needle), "process {:?} survived: {:?}", e.file_name(), String::from_utf8_lossy(&cmd));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&needle), "a mount under {needle} survived");
    for c in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(!c.path().join(namespace).exists(), "cgroup {} survived", c.path().join(namespace).display());
    }
}

#[test]
fn a_host_network_container_serves_under_the_default_seccomp_profile() {
    let work = tempfile::tempdir().unwrap();
    let d = started(work.path());
    let (dir, ns) = (d.dir().to_path_buf(), d.namespace().to_string());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = d.run(&httpd("web", Network::Host, port, "a")).unwrap();
    assert_eq!(get(&c, port), "site a\n");
    // The host reaches it directly: same network namespace.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    let pid = c.pid();
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(), std::fs::read_link("/proc/self/ns/net").unwrap());
    // containerd's default profile is a seccomp filter (mode 2), with no_new_privs.
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert!(c.processes().contains(&pid), "{:?} lacks {pid}", c.processes());

    c.remove().unwrap();
    assert!(!alive(pid), "the container's process outlived remove()");
    assert!(d.images().unwrap().contains(&"shunt.test/busybox:latest".to_string()));
    d.stop().unwrap();
    assert_nothing_left(&dir, &ns);
}

#[test]
fn loopback_containers_listen_on_the_same_port_apart() {
    let work = tempfile::tempdir().unwrap();
    let d = started(work.path());
    let (dir, ns) = (d.dir().to_path_buf(), d.namespace().to_string());
    // The port is taken on the host by this test, yet both containers
    // bind it: each has a network namespace of its own.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let a = d.run(&httpd("site-a", Network::Loopback, port, "a")).unwrap();
    let b = d.run(&httpd("site-b", Network::Loopback, port, "b")).unwrap();
    assert_eq!(get(&a, port), "site a\n");
    assert_eq!(get(&b, port), "site b\n");
    for c in [&a, &b] {
        let ns = std::fs::read_link(format!("/proc/{}/ns/net", c.pid())).unwrap();
        assert_ne!(ns, std::fs::read_link("/proc/self/ns/net").unwrap(), "{}", c.id());
        // Its only interface is the loopback.
        let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", c.pid())).unwrap();
        let ifaces: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
        assert_eq!(ifaces, ["lo"], "{}", c.id());
        assert_eq!(status_field(c.pid(), "Seccomp"), "2");
    }
    // Signals reach the container's first process (pid 1 of its pid
    // namespace, which ignores a SIGTERM it has no handler for; SIGKILL
    // sent from outside ends it).
    let pid = a.pid();
    a.kill(libc::SIGKILL).unwrap();
    assert!(wait_gone(pid, Duration::from_secs(10)), "SIGKILL did not end the container");
    drop(host);
    // Stopping with containers still there removes them too.
    let pid_b = b.pid();
    d.stop().unwrap();
    assert!(!alive(pid_b));
    drop((a, b));
    assert_nothing_left(&dir, &ns);
}

#[test]
fn failures_say_what_is_wrong_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let d = started(work.path());
    let (dir, ns) = (d.dir().to_path_buf(), d.namespace().to_string());

    let e = format!("{:#}", d.run(&RunSpec::new("nope", "shunt.test/absent:latest", Network::Host)).err().unwrap());
    assert!(e.contains("shunt.test/absent:latest") && e.contains("not found"), "{e}");
    let e = format!("{:#}", d.run(&RunSpec::new("bad/id", "shunt.test/busybox:latest", Network::Host)).err().unwrap());
    assert!(e.contains("container id"), "{e}");
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, "not an archive").unwrap();
    let e = format!("{:#}", d.import(&junk, "shunt.test/junk:latest").unwrap_err());
    assert!(e.contains("cannot import"), "{e}");
    let e = format!("{:#}", d.import(&busybox_image(&work.path().join("again")), "shunt.test/x:other").unwrap_err());
    assert!(e.contains("holds no image tagged shunt.test/x:other"), "{e}");
    // A program that is not in the image: the run fails, nothing stays.
    let mut s = RunSpec::new("noprog", "shunt.test/busybox:latest", Network::Host);
    s.args = vec!["/bin/absent".into()];
    let e = format!("{:#}", d.run(&s).err().unwrap());
    assert!(e.contains("cannot run container noprog"), "{e}");
    let listed = d.ctr_command().args(["containers", "ls", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "", "a failed run left a container");

    // The same id twice is refused while the first runs.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = d.run(&httpd("twice", Network::Loopback, port, "a")).unwrap();
    let e = format!("{:#}", d.run(&httpd("twice", Network::Loopback, port, "a")).err().unwrap());
    assert!(e.contains("runs already"), "{e}");
    let pid = c.pid();
    // Dropping a container's handle removes it.
    drop(c);
    assert!(!alive(pid));
    let c2 = d.run(&httpd("left", Network::Loopback, port, "b")).unwrap();
    let pid2 = c2.pid();
    std::mem::forget(c2); // as if its owner lost it: stop still removes it
    d.stop().unwrap();
    assert!(!alive(pid2));
    assert_nothing_left(&dir, &ns);
}

#[test]
fn a_directory_whose_owner_died_is_swept_by_the_next_start() {
    let work = tempfile::tempdir().unwrap();
    let d = started(work.path());
    let (dir, ns) = (d.dir().to_path_buf(), d.namespace().to_string());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = d.run(&httpd("orphan", Network::Loopback, port, "a")).unwrap();
    assert_eq!(get(&c, port), "site a\n");
    let (pid, daemon) = (c.pid(), d.pid().unwrap());
    // As if this process had been killed: no clean-up runs, and the owner
    // recorded in the directory is a process that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    std::fs::write(dir.join("owner"), format!("{} 1 {ns}\n", gone.id())).unwrap();
    std::mem::forget(c);
    std::mem::forget(d);

    let next = Containerd::start(&Options::default()).unwrap();
    assert!(wait_gone(pid, Duration::from_secs(10)), "the orphaned container survived the sweep");
    assert!(wait_gone(daemon, Duration::from_secs(10)), "the orphaned containerd survived the sweep");
    assert_nothing_left(&dir, &ns);
    next.stop().unwrap();
}
