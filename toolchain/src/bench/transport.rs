//! `shunt bench transport`: the bypass transport against kernel loopback TCP.
//!
//! Two threads of this process, pinned to one CPU or to two, play ping-pong
//! over a loopback TCP connection: either through the kernel (`kernel`), or
//! upgraded by the rendezvous to shared-memory rings (`shm`) — the same
//! sockets and the same code the runtime uses, without a program around
//! them. Each configuration runs with spinning off (a wait parks at once) and
//! `auto` (poll before park, under the host-wide cap). Configurations are
//! interleaved round by round, so that drift of the machine hits all alike,
//! and every table prints ratios against the kernel measured in the same run.
//!
//! A kernel wait with `auto` spins too (non-blocking `poll` before the
//! blocking one), which shows what spinning alone buys without the rings.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use shunt_transport::conn::{End, DEFAULT_RING_BYTES};
use shunt_transport::rendezvous::{connect_names, deposit, listener_name, register, Claims, SockKey};
use shunt_transport::spin::{self, Parked, SpinCap, SpinMode, SpinPolicy, WaitCtx, WaitKind, WaitStats};

#[derive(Args)]
pub struct TransportArgs {
    /// Round trips per configuration and round (64 KiB messages use a
    /// quarter of it).
    #[arg(long, default_value_t = 2000)]
    iters: u32,
    /// Rounds; each round runs every configuration once, in turn.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// MiB per stream-throughput run.
    #[arg(long, default_value_t = 256)]
    stream_mib: u32,
    /// The two CPUs to pin to (same core: both on the first).
    #[arg(long, default_value = "0,1", value_name = "A,B")]
    cpus: String,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Kernel,
    Shm,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    SameCore,
    AcrossCores,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    transport: Transport,
    spin: SpinMode,
    placement: Placement,
    size: usize,
}

impl Config {
    fn label(&self) -> String {
        format!(
            "{} {} {} {}",
            match self.transport {
                Transport::Kernel => "kernel",
                Transport::Shm => "shm",
            },
            spin_name(self.spin),
            match self.placement {
                Placement::SameCore => "same-core",
                Placement::AcrossCores => "across-cores",
            },
            size_name(self.size)
        )
    }
}

fn spin_name(s: SpinMode) -> &'static str {
    match s {
        SpinMode::Off => "off",
        _ => "auto",
    }
}

fn size_name(n: usize) -> String {
    if n >= 1024 { format!("{}KiB", n / 1024) } else { format!("{n}B") }
}

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];

unsafe extern "C" fn vdso_clock() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is writable; glibc's clock_gettime reads the vDSO.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn run(args: TransportArgs) -> Result<()> {
    if args.iters < 8 || args.rounds == 0 || args.stream_mib == 0 {
        bail!("--iters must be at least 8, --rounds and --stream-mib at least 1");
    }
    let cpus = parse_cpus(&args.cpus)?;
    // SAFETY: the clock is glibc's clock_gettime, callable at any time.
    unsafe { shunt_transport::clock::set_clock(vdso_clock) };
    let cap = host_cap()?;

    let mut configs = vec![];
    for placement in [Placement::AcrossCores, Placement::SameCore] {
        for size in SIZES {
            for transport in [Transport::Kernel, Transport::Shm] {
                for spin in [SpinMode::Off, SpinMode::Auto] {
                    configs.push(Config { transport, spin, placement, size });
                }
            }
        }
    }
    eprintln!(
        "shunt bench transport: {} ping-pong configurations x {} rounds, {} round trips each; spin cap {} of {} CPUs",
        configs.len(),
        args.rounds,
        args.iters,
        cap.cap(),
        spin::online_cpus()
    );
    let mut samples: Vec<Vec<f64>> = vec![vec![]; configs.len()];
    let mut stats: Vec<(u64, u64)> = vec![(0, 0); configs.len()];
    for round in 0..args.rounds {
        eprint!("round {}/{}: ", round + 1, args.rounds);
        for (i, c) in configs.iter().enumerate() {
            let n = if c.size >= 64 * 1024 { (args.iters / 4).max(8) } else { args.iters };
            let (s, spun, parked) = ping_pong(*c, n, cpus, cap).with_context(|| c.label())?;
            samples[i].extend(s);
            stats[i].0 += spun;
            stats[i].1 += parked;
            eprint!(".");
        }
        eprintln!();
    }

    // Stream throughput: 64 KiB writes, across cores.
    let streams: Vec<(Transport, SpinMode)> = vec![
        (Transport::Kernel, SpinMode::Off),
        (Transport::Kernel, SpinMode::Auto),
        (Transport::Shm, SpinMode::Off),
        (Transport::Shm, SpinMode::Auto),
    ];
    let mut rates: Vec<Vec<f64>> = vec![vec![]; streams.len()];
    for _ in 0..args.rounds.min(3) {
        for (i, (t, s)) in streams.iter().enumerate() {
            rates[i].push(stream(*t, *s, args.stream_mib as usize, cpus, cap)?);
        }
    }

    let pct = |v: &[f64], p: f64| -> f64 {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let find = |t: Transport, s: SpinMode, pl: Placement, size: usize| {
        configs
            .iter()
            .position(|c| c.transport == t && spin_name(c.spin) == spin_name(s) && c.placement == pl && c.size == size)
            .unwrap()
    };
    println!("shunt bench transport: ping-pong round trip, µs (p50 / p99 of {} x {} interleaved)", args.rounds, args.iters);
    println!(
        "{:<13} {:>6}  {:>15} {:>15} {:>15} {:>15}  {:>9} {:>9}",
        "placement", "size", "kernel off", "kernel auto", "shm off", "shm auto", "shm auto", "shm off"
    );
    println!("{:<13} {:>6}  {:>15} {:>15} {:>15} {:>15}  {:>9} {:>9}", "", "", "", "", "", "", "vs kernel", "vs kernel");
    let mut json_rows = vec![];
    for pl in [Placement::AcrossCores, Placement::SameCore] {
        for size in SIZES {
            let cell = |t, s| {
                let i = find(t, s, pl, size);
                (pct(&samples[i], 0.5) / 1000.0, pct(&samples[i], 0.99) / 1000.0, i)
            };
            let ko = cell(Transport::Kernel, SpinMode::Off);
            let ka = cell(Transport::Kernel, SpinMode::Auto);
            let so = cell(Transport::Shm, SpinMode::Off);
            let sa = cell(Transport::Shm, SpinMode::Auto);
            let f = |c: (f64, f64, usize)| format!("{:.2} / {:.1}", c.0, c.1);
            println!(
                "{:<13} {:>6}  {:>15} {:>15} {:>15} {:>15}  {:>8.1}x {:>8.2}x",
                if pl == Placement::SameCore { "same core" } else { "across cores" },
                size_name(size),
                f(ko),
                f(ka),
                f(so),
                f(sa),
                ko.0 / sa.0,
                ko.0 / so.0
            );
            for (c, (t, s)) in [(ko, ("kernel", "off")), (ka, ("kernel", "auto")), (so, ("shm", "off")), (sa, ("shm", "auto"))] {
                json_rows.push(serde_json::json!({
                    "placement": if pl == Placement::SameCore { "same-core" } else { "across-cores" },
                    "size": size, "transport": t, "spin": s,
                    "p50_us": c.0, "p99_us": c.1,
                    "waits_spun": stats[c.2].0, "waits_parked": stats[c.2].1,
                }));
            }
        }
    }
    println!("(ratios: kernel-off p50 / shm p50; higher is better)");
    println!();
    println!("stream throughput, 64 KiB writes, across cores, MB/s (median of {})", rates[0].len());
    let kernel_rate = pct(&rates[0], 0.5);
    for (i, (t, s)) in streams.iter().enumerate() {
        let r = pct(&rates[i], 0.5);
        println!("{:<8} {:<5} {:>9.0}  {:>6.2}x kernel", format!("{t:?}").to_lowercase(), spin_name(*s), r, r / kernel_rate);
    }
    println!();
    let a64 = |t, s| pct(&samples[find(t, s, Placement::AcrossCores, 64)], 0.5) / 1000.0;
    let (k, sa) = (a64(Transport::Kernel, SpinMode::Off), a64(Transport::Shm, SpinMode::Auto));
    let met = |b: bool| if b { "met" } else { "missed" };
    println!("targets (64 B, across cores):");
    println!("  shm + spin p50 <= 2 µs: {sa:.2} µs — {}", met(sa <= 2.0));
    println!("  shm + spin >= 10x lower than kernel TCP: {:.1}x — {}", k / sa, met(k / sa >= 10.0));
    let worst_off = SIZES
        .iter()
        .flat_map(|&z| [Placement::AcrossCores, Placement::SameCore].map(move |p| (z, p)))
        .map(|(z, p)| {
            let k = pct(&samples[find(Transport::Kernel, SpinMode::Off, p, z)], 0.5);
            let s = pct(&samples[find(Transport::Shm, SpinMode::Off, p, z)], 0.5);
            s / k
        })
        .fold(0.0f64, f64::max);
    println!("  spin off no worse than the kernel (worst shm-off/kernel p50 over all rows): {worst_off:.2} — {}", met(worst_off <= 1.0));
    let shm_rate = pct(&rates[3], 0.5).max(pct(&rates[2], 0.5));
    println!("  64 KiB throughput >= kernel: {:.2}x — {}", shm_rate / kernel_rate, met(shm_rate >= kernel_rate));
    if let Some(path) = args.json {
        let streams_json: Vec<_> = streams
            .iter()
            .enumerate()
            .map(|(i, (t, s))| serde_json::json!({"transport": format!("{t:?}").to_lowercase(), "spin": spin_name(*s), "mb_per_s": pct(&rates[i], 0.5)}))
            .collect();
        let doc = serde_json::json!({"iters": args.iters, "rounds": args.rounds, "ping_pong": json_rows, "stream": streams_json});
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn parse_cpus(s: &str) -> Result<[usize; 2]> {
    let v: Vec<usize> = s.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>().context("--cpus wants two CPU numbers, e.g. 0,1")?;
    let online = spin::online_cpus() as usize;
    match v[..] {
        [a, b] if a != b && a < online && b < online => Ok([a, b]),
        _ => bail!("--cpus wants two different online CPUs (this host has {online}), e.g. 0,1"),
    }
}

/// The host-wide spin cap the runtime uses.
fn host_cap() -> Result<SpinCap> {
    let tmp = format!("{}.{}\0", spin::HOST_CAP_PATH_STR, std::process::id());
    SpinCap::open(spin::HOST_CAP_PATH, tmp.as_bytes(), spin::default_cap())
        .map_err(|e| anyhow::anyhow!("cannot open the host-wide spin cap {}: {e:?}", spin::HOST_CAP_PATH_STR))
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One side of a connection: a kernel socket, and its end if upgraded.
struct Side {
    fd: OwnedFd,
    end: Option<End>,
}

// SAFETY: `End` is Send (shared memory via atomics); the fd is a plain fd.
unsafe impl Send for Side {}

/// A connected pair through the real rendezvous (or plain, for `kernel`).
fn pair(t: Transport) -> Result<(Side, Side)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let mut reg = None;
    if t == Transport::Shm {
        let k = SockKey::of_socket(l.as_raw_fd(), false).map_err(|e| anyhow::anyhow!("getsockname: {e}"))?;
        let r = register(&listener_name(&k, false).context("no name")?);
        if r < 0 {
            bail!("cannot register the listener (errno {})", -r);
        }
        // SAFETY: a fresh fd we own.
        reg = Some(unsafe { OwnedFd::from_raw_fd(r as i32) });
    }
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let cfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cend = None;
    if t == Transport::Shm {
        let k = SockKey::of_socket(l.as_raw_fd(), false).map_err(|e| anyhow::anyhow!("getsockname: {e}"))?;
        let (names, n) = connect_names(&k);
        let (end, memfd) = End::create(DEFAULT_RING_BYTES).map_err(|e| anyhow::anyhow!("segment: {e:?}"))?;
        let ok = deposit(&names[..n], memfd, cfd.as_raw_fd(), DEFAULT_RING_BYTES);
        // SAFETY: our memfd.
        unsafe { libc::close(memfd) };
        if !ok {
            bail!("the deposit was not taken");
        }
        cend = Some(end);
    }
    let std::net::SocketAddr::V4(v4) = addr else { bail!("not IPv4") };
    // SAFETY: a zeroed sockaddr_in is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
    // SAFETY: `sa` is a valid sockaddr_in.
    if unsafe { libc::connect(cfd.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32) } != 0 {
        bail!("connect: {}", std::io::Error::last_os_error());
    }
    let (a, _) = l.accept()?;
    let afd: OwnedFd = a.into();
    let mut aend = None;
    if let Some(reg) = &reg {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        aend = Some(Claims::new().claim(reg.as_raw_fd(), afd.as_raw_fd(), tid).context("the deposit did not match")?);
    }
    for fd in [&cfd, &afd] {
        let one: i32 = 1;
        // SAFETY: TCP_NODELAY with a valid int.
        unsafe { libc::setsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, (&one as *const i32).cast(), 4) };
    }
    Ok((Side { fd: cfd, end: cend }, Side { fd: afd, end: aend }))
}

/// Exchanges `buf` through a side: write it all, or read it all.
struct Io<'a> {
    side: &'a Side,
    mode: SpinMode,
    cap: SpinCap,
    policy: SpinPolicy,
    stats: &'a WaitStats,
    tid: u32,
}

impl Io<'_> {
    fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        let mut off = 0;
        while off < buf.len() {
            let n = match &self.side.end {
                Some(e) => {
                    let mut cx = WaitCtx { mode: self.mode, who: SpinCap::me(), kind: WaitKind::Ring, policy: &mut self.policy, cap: Some(self.cap), stats: self.stats };
                    let v = libc::iovec { iov_base: buf[off..].as_ptr() as *mut _, iov_len: buf.len() - off };
                    // SAFETY: the iovec is our live buffer.
                    unsafe { e.write(self.side.fd.as_raw_fd(), self.tid, &[v], libc::MSG_NOSIGNAL, Some(&mut cx)) }
                }
                // SAFETY: a plain send of our buffer.
                None => unsafe { libc::send(self.side.fd.as_raw_fd(), buf[off..].as_ptr().cast(), buf.len() - off, libc::MSG_NOSIGNAL) as i64 },
            };
            if n <= 0 {
                bail!("write failed: {n}");
            }
            off += n as usize;
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut off = 0;
        while off < buf.len() {
            let n = match &self.side.end {
                Some(e) => {
                    let mut cx = WaitCtx { mode: self.mode, who: SpinCap::me(), kind: WaitKind::Ring, policy: &mut self.policy, cap: Some(self.cap), stats: self.stats };
                    let v = libc::iovec { iov_base: buf[off..].as_mut_ptr().cast(), iov_len: buf.len() - off };
                    // SAFETY: the iovec is our live buffer.
                    unsafe { e.read(self.side.fd.as_raw_fd(), self.tid, &[v], 0, Some(&mut cx)) }
                }
                None => self.kernel_read(&mut buf[off..]),
            };
            if n <= 0 {
                bail!("read failed or EOF: {n}");
            }
            off += n as usize;
        }
        Ok(())
    }

    /// A kernel read that polls before it parks when spinning is on.
    fn kernel_read(&mut self, buf: &mut [u8]) -> i64 {
        let fd = self.side.fd.as_raw_fd();
        loop {
            // SAFETY: a non-blocking recv into our buffer.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) } as i64;
            if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                return n;
            }
            let mut cx = WaitCtx { mode: self.mode, who: SpinCap::me(), kind: WaitKind::KernelPoll, policy: &mut self.policy, cap: Some(self.cap), stats: self.stats };
            let readable = |ms: i32| {
                let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, ms) > 0 }
            };
            cx.wait(None, || readable(0), |_| {
                readable(-1);
                Parked::Woken
            });
        }
    }
}

/// Runs `iters` round trips of `c.size` bytes; returns the round trips (ns)
/// and the client's waits spun and parked.
fn ping_pong(c: Config, iters: u32, cpus: [usize; 2], cap: SpinCap) -> Result<(Vec<f64>, u64, u64)> {
    let (client, server) = pair(c.transport)?;
    let size = c.size;
    let server_cpu = if c.placement == Placement::SameCore { cpus[0] } else { cpus[1] };
    let warm = (iters / 10).max(4);
    let total = iters + warm;
    let srv = std::thread::spawn(move || -> Result<()> {
        pin(server_cpu);
        let stats = WaitStats::default();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let mut io = Io { side: &server, mode: c.spin, cap, policy: SpinPolicy::new(), stats: &stats, tid };
        let mut buf = vec![0u8; size];
        for _ in 0..total {
            io.read_exact(&mut buf)?;
            io.write_all(&buf)?;
        }
        if let Some(e) = server.end {
            // SAFETY: the client is done with the connection once it has its
            // last reply, and this thread is done too.
            unsafe { e.unmap() };
        }
        Ok(())
    });
    pin(cpus[0]);
    let stats = WaitStats::default();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let mut io = Io { side: &client, mode: c.spin, cap, policy: SpinPolicy::new(), stats: &stats, tid };
    let mut buf = vec![0x5au8; size];
    let mut out = Vec::with_capacity(iters as usize);
    for i in 0..total {
        let t = Instant::now();
        io.write_all(&buf)?;
        io.read_exact(&mut buf)?;
        if i >= warm {
            out.push(t.elapsed().as_nanos() as f64);
        }
    }
    srv.join().map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    unpin();
    if let Some(e) = client.end {
        // SAFETY: both threads are done with the connection.
        unsafe { e.unmap() };
    }
    use std::sync::atomic::Ordering::Relaxed;
    Ok((out, stats.spun.load(Relaxed), stats.parked.load(Relaxed)))
}

fn unpin() {
    // SAFETY: a zeroed cpu_set_t filled with every online CPU.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..spin::online_cpus() as usize {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Streams `mib` MiB in 64 KiB writes across the two CPUs; returns MB/s.
fn stream(t: Transport, spin: SpinMode, mib: usize, cpus: [usize; 2], cap: SpinCap) -> Result<f64> {
    let (client, server) = pair(t)?;
    let total = mib << 20;
    let rx = std::thread::spawn(move || -> Result<()> {
        pin(cpus[1]);
        let stats = WaitStats::default();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let mut io = Io { side: &server, mode: spin, cap, policy: SpinPolicy::new(), stats: &stats, tid };
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0;
        while got < total {
            let k = (total - got).min(buf.len());
            io.read_exact(&mut buf[..k])?;
            got += k;
        }
        if let Some(e) = server.end {
            // SAFETY: everything was read; nobody uses the end any more.
            unsafe { e.unmap() };
        }
        Ok(())
    });
    pin(cpus[0]);
    let stats = WaitStats::default();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let mut io = Io { side: &client, mode: spin, cap, policy: SpinPolicy::new(), stats: &stats, tid };
    let buf = vec![0xa5u8; 64 << 10];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < total {
        io.write_all(&buf)?;
        sent += buf.len();
    }
    rx.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let secs = t0.elapsed().as_secs_f64();
    unpin();
    if let Some(e) = client.end {
        // SAFETY: both threads are done with the connection.
        unsafe { e.unmap() };
    }
    Ok(total as f64 / secs / 1e6)
}
