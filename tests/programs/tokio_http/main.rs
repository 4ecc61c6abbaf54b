//! Loopback HTTP through tokio and hyper, the daemon's own stack (mio's
//! edge-triggered epoll, a non-blocking connect answered by `EPOLLOUT` and
//! `SO_ERROR`, hyper-util's pooled client with `HttpConnector`), printed as a
//! transcript that must be the same natively and under `shunt run
//! --transport shm`. The protocol is that of `tests/gofixtures/loopback`
//! (`POST /echo` answers the body upper-cased with `X-Len`, `POST /quit`
//! stops the server), so either end can be the Go fixture.
//!
//! ```text
//! tokio_http all [FILE]     server and client in this process: keep-alive,
//!                           fresh and concurrent requests, a 16 MiB body;
//!                           FILE gets the number of connections accepted
//! tokio_http serve FILE     an echo server; writes its address to FILE
//!                           (-: the first line out), stops on POST /quit
//! tokio_http client ADDR N  N keep-alive requests to ADDR, then /quit
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    println!("error: {what}: {e}");
    std::process::exit(1)
}

/// An error with its sources ("a: b: c"): hyper's outer errors say little.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The echo service. POST /quit marks its connection (`quit_here`) and
/// answers with `Connection: close`, so hyper ends that connection once the
/// answer is written; only then is the server told to stop (see
/// `start_server`), so the answer is out before the process exits.
async fn handle(req: Request<Incoming>, quit_here: Arc<AtomicBool>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => fail("server: reading a body", e),
    };
    let resp = match path.as_str() {
        "/echo" => Response::builder()
            .header("X-Len", body.len().to_string())
            .body(Full::new(Bytes::from(body.to_ascii_uppercase()))),
        "/quit" => {
            quit_here.store(true, Ordering::Relaxed);
            Response::builder().header("Connection", "close").body(Full::new(Bytes::from_static(b"bye")))
        }
        _ => Response::builder().status(404).body(Full::new(Bytes::new())),
    };
    Ok(resp.unwrap_or_else(|e| fail("server: a response", e)))
}

/// Serves on 127.0.0.1:0 until /quit; returns the address, the count of
/// accepted connections and the notifier of /quit.
async fn start_server() -> (SocketAddr, Arc<AtomicU64>, Arc<Notify>) {
    let ln = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| fail("bind", e));
    let addr = ln.local_addr().unwrap_or_else(|e| fail("local_addr", e));
    let accepted = Arc::new(AtomicU64::new(0));
    let quit = Arc::new(Notify::new());
    let (acc, q) = (accepted.clone(), quit.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = match ln.accept().await {
                Ok(s) => s,
                Err(e) => fail("accept", e),
            };
            acc.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let q = q.clone();
            tokio::spawn(async move {
                let quit_here = Arc::new(AtomicBool::new(false));
                let flag = quit_here.clone();
                let svc = hyper::service::service_fn(move |req| handle(req, flag.clone()));
                // Resolves when the connection is closed: for the /quit
                // connection, after its `Connection: close` answer is flushed.
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                if quit_here.load(Ordering::Relaxed) {
                    q.notify_one();
                }
            });
        }
    });
    (addr, accepted, quit)
}

/// A client configured as the daemon's gateway configures its own.
fn client(pool: bool) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let mut b = Client::builder(TokioExecutor::new());
    if !pool {
        b.pool_max_idle_per_host(0);
    }
    b.build(http)
}

/// POST `body` to `base/path`: "status x-len sha-or-body".
async fn post(c: &HttpClient, base: &str, path: &str, body: Bytes) -> String {
    let req = Request::post(format!("{base}{path}"))
        .header("content-type", "text/plain")
        .body(Full::new(body))
        .unwrap_or_else(|e| fail("a request", e));
    let resp = tokio::time::timeout(Duration::from_secs(20), c.request(req))
        .await
        .unwrap_or_else(|_| fail(path, "no answer in 20 s"))
        .unwrap_or_else(|e| fail(path, chain(&e)));
    let status = resp.status().as_u16();
    let len = resp.headers().get("x-len").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let body = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .unwrap_or_else(|_| fail(path, "no body in 20 s"))
        .unwrap_or_else(|e| fail(path, e))
        .to_bytes();
    if body.len() > 64 {
        let sum = body.iter().fold(0u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        format!("{status} {len} {} bytes, fnv {sum:016x}", body.len())
    } else {
        format!("{status} {len} {}", String::from_utf8_lossy(&body))
    }
}

async fn all(file: Option<String>) {
    let (addr, accepted, _quit) = start_server().await;
    let base = format!("http://{addr}");
    let keep = client(true);
    for i in 0..50 {
        let got = post(&keep, &base, "/echo", Bytes::from(format!("hello {i}"))).await;
        if i % 10 == 0 {
            println!("keep-alive: {got}");
        }
    }
    let fresh = client(false);
    for i in 0..20 {
        let got = post(&fresh, &base, "/echo", Bytes::from(format!("fresh {i}"))).await;
        if i % 5 == 0 {
            println!("fresh: {got}");
        }
    }
    let mut tasks = Vec::new();
    for i in 0..32 {
        let c = keep.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move { post(&c, &base, "/echo", Bytes::from(format!("concurrent {i}"))).await }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap_or_else(|e| fail("a task", e));
        if i % 8 == 0 {
            println!("concurrent: {got}");
        }
    }
    let big: Vec<u8> = (0..16u32 << 20).map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[(i % 27) as usize]).collect();
    println!("big: {}", post(&keep, &base, "/echo", Bytes::from(big)).await);
    drop(keep);
    drop(fresh);
    if let Some(f) = file {
        let tmp = format!("{f}.tmp");
        std::fs::write(&tmp, accepted.load(Ordering::Relaxed).to_string()).unwrap_or_else(|e| fail("write", e));
        std::fs::rename(&tmp, &f).unwrap_or_else(|e| fail("rename", e));
    }
    println!("done");
}

async fn serve(file: String) {
    let (addr, _, quit) = start_server().await;
    if file == "-" {
        println!("{addr}");
    } else {
        let tmp = format!("{file}.tmp");
        std::fs::write(&tmp, addr.to_string()).unwrap_or_else(|e| fail("write", e));
        std::fs::rename(&tmp, &file).unwrap_or_else(|e| fail("rename", e));
    }
    // Notified once the /quit answer has been written and its connection
    // closed (start_server).
    quit.notified().await;
    println!("server: done");
}

async fn run_client(addr: String, n: usize) {
    let c = client(true);
    let base = format!("http://{addr}");
    for i in 0..n {
        let got = post(&c, &base, "/echo", Bytes::from(format!("req {i}"))).await;
        if i % 25 == 0 {
            println!("client: {got}");
        }
    }
    let got = post(&c, &base, "/quit", Bytes::new()).await;
    println!("client: quit {got}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("runtime", e));
    match args.get(1).map(String::as_str) {
        Some("all") => rt.block_on(all(args.get(2).cloned())),
        Some("serve") if args.len() == 3 => rt.block_on(serve(args[2].clone())),
        Some("client") if args.len() == 4 => {
            let n = args[3].parse().unwrap_or_else(|e| fail("N", e));
            rt.block_on(run_client(args[2].clone(), n))
        }
        _ => {
            eprintln!("usage: tokio_http all [FILE] | serve FILE | client ADDR N");
            std::process::exit(2)
        }
    }
}
