//! A daemon in the test process, its instances real function processes (a
//! Python HTTP server each) under `shunt-supervisor` — natively, or on the
//! shunt runtime — and an image table standing in for the image store.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use shunt_manager::images::{Images, ResolvedImage};
use shunt_manager::instances::supervised::Supervised;
use shunt_manager::shared::Shared;

pub const ECHO_PY: &str = r#"
import http.server, json, os, signal, sys, time
port = int(os.environ["port"])
tmp = os.environ.get("TMPDIR", "/tmp")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def answer(self):
        if self.path == "/_/health":
            return self.reply(200, b"OK")
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if self.path.startswith("/crash"):
            print("crashing on request", flush=True)
            os._exit(3)
        if self.path.startswith("/sleep"):
            time.sleep(float(self.path.split("=")[1]) / 1000)
        secret = None
        name = os.environ.get("SECRET_NAME")
        if name:
            path = os.path.join(os.environ.get("SECRETS_DIR", "/var/openfaas/secrets"), name)
            secret = open(path).read() if os.path.exists(path) else "missing"
        info = {"method": self.command, "path": self.path, "len": len(data),
                "sum": sum(data) % 65521, "headers": {k.lower(): v for k, v in self.headers.items()},
                "greeting": os.environ.get("GREETING"), "fprocess": os.environ.get("fprocess"),
                "pid": os.getpid(), "secret": secret, "tmp": tmp}
        print("request %s %s" % (self.command, self.path), flush=True)
        print("stderr line", file=sys.stderr, flush=True)
        self.reply(200, json.dumps(info).encode())
    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
def stop(*a):
    print("got SIGTERM", flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
print("listening on %d" % port, flush=True)
srv.serve_forever()
"#;

/// Images by reference: `echo:latest` runs `ECHO_PY`; `broken:latest`
/// fails as a blob with a bad digest would.
pub struct TestImages {
    pub dir: PathBuf,
}

impl Images for TestImages {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String> {
        match reference {
            "echo:latest" | "echo:v2" => Ok(ResolvedImage {
                reference: reference.into(),
                digest: format!("sha256:{}", if reference.ends_with("v2") { "22" } else { "11" }),
                entrypoint: vec!["python3".into(), self.dir.join("echo.py").display().to_string()],
                cmd: vec![],
                env: vec![("fprocess".into(), "python3 echo.py".into())],
                workdir: None,
                user: None,
                root: None,
                host_dir: Some(self.dir.clone()),
            }),
            "broken:latest" => Err(format!("image {reference}: blob sha256:ab12 fails its digest (the store is damaged; import the image again)")),
            _ => Err(format!("image {reference} is not in the store (import it with shunt image import, or build it with shunt faas build)")),
        }
    }
}

/// The runtime of this build: `target/<profile>/{shunt,libshunt.so}`.
fn runtime_options() -> shunt_supervisor::ShuntOptions {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let (shunt, lib) = (target.join("shunt"), target.join("libshunt.so"));
    assert!(
        shunt.is_file() && lib.is_file(),
        "{} or {} is missing: build the workspace first (cargo build --release --workspace)",
        shunt.display(),
        lib.display()
    );
    shunt_supervisor::ShuntOptions { exe: Some(shunt), lib: Some(lib), ..Default::default() }
}

pub struct Daemon {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn state_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("shunt-mgr-test-").tempdir().unwrap();
    std::fs::write(d.path().join("echo.py"), ECHO_PY).unwrap();
    d
}

pub async fn start(state: &Path, auth: bool) -> Daemon {
    start_with(state, auth, false, |_| {}).await
}

pub async fn start_with(state: &Path, auth: bool, on_runtime: bool, tweak: impl FnOnce(&mut shunt_manager::Config)) -> Daemon {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = shunt_manager::Config::new(listener.local_addr().unwrap(), state.join("state"));
    config.auth = auth;
    config.ready_timeout = Duration::from_secs(20);
    config.cold_start_timeout = Duration::from_secs(20);
    tweak(&mut config);
    let sup = shunt_supervisor::Supervisor::start().unwrap();
    let options = on_runtime.then(runtime_options);
    let backend = Arc::new(Supervised::new(sup, options, tokio::runtime::Handle::current()));
    let images = Arc::new(TestImages { dir: state.to_path_buf() });
    let shared = shunt_manager::daemon::open(config, backend, images).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sh = shared.clone();
    let task = tokio::spawn(async move { shunt_manager::daemon::serve(sh, listener, |_| {}).await });
    Daemon { addr, shared, task }
}

impl Daemon {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops as SIGTERM would, and waits.
    pub async fn stop(self) {
        self.shared.stopping.send_replace(true);
        tokio::time::timeout(Duration::from_secs(60), self.task).await.expect("the daemon stops").unwrap().unwrap();
    }

    pub fn password(&self) -> String {
        self.shared.credentials.as_ref().map(|c| c.password.clone()).unwrap_or_default()
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Answer {
    let client = shunt_manager::proxy::client(Default::default());
    let body: Vec<u8> = body.into();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !body.is_empty() || method != "GET" {
        req = req.header("content-length", body.len().to_string());
    }
    let req = req.body(Body::from(body)).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req)).await.expect("an answer in time").unwrap();
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes().to_vec();
    Answer { status: parts.status, headers: parts.headers, body }
}

pub async fn get(url: &str) -> Answer {
    call("GET", url, &[], Vec::new()).await
}

pub async fn post_json(url: &str, v: serde_json::Value) -> Answer {
    call("POST", url, &[("content-type", "application/json")], serde_json::to_vec(&v).unwrap()).await
}

pub async fn put_json(url: &str, v: serde_json::Value) -> Answer {
    call("PUT", url, &[("content-type", "application/json")], serde_json::to_vec(&v).unwrap()).await
}

pub async fn delete_json(url: &str, v: serde_json::Value) -> Answer {
    call("DELETE", url, &[("content-type", "application/json")], serde_json::to_vec(&v).unwrap()).await
}

/// Waits (bounded) until `/system/function/{name}` satisfies `ok`; returns
/// the last status. Each look is a real API call: this is how faas-cli and
/// the certifier wait too.
pub async fn wait_status(d: &Daemon, name: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut ready = d.shared.table.get("openfaas-fn", name).map(|f| f.watch_ready());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = get(&d.url(&format!("/system/function/{name}"))).await;
        if s.status == StatusCode::OK && ok(&s.json()) {
            return s.json();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{name}: condition not reached in 30s: {} {}", s.status, s.text());
        }
        // Wake on the next change of the ready set (or after 50 ms for
        // changes it does not show, such as a scale to zero taking effect).
        match ready.as_mut() {
            Some(r) => {
                let _ = tokio::time::timeout(Duration::from_millis(50), r.changed()).await;
            }
            None => {
                ready = d.shared.table.get("openfaas-fn", name).map(|f| f.watch_ready());
                tokio::task::yield_now().await;
            }
        }
    }
}
