//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF
//! distribution registry) on 127.0.0.1 at a free port, with its own
//! storage directory, stopped when dropped; images are pushed to it with
//! `skopeo` from OCI layouts.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, as image references name it.
    pub host: String,
}

/// Runs `prog args`, panicking with its stderr if it fails (and with the
/// setup hint if it is missing).
pub fn tool(prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog).args(args).output().unwrap_or_else(|e| panic!("cannot run {prog} ({e}): run scripts/setup.sh"));
    assert!(o.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

impl Registry {
    /// Starts a registry storing its blobs under `dir`.
    pub fn start(dir: &Path) -> Registry {
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = free_port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker-registry ({e}): run scripts/setup.sh (Debian package docker-registry)"));
        // Ready when it accepts connections; bounded, and a registry that
        // exits (the port was taken meanwhile) fails at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("docker-registry did not listen on 127.0.0.1:{port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { child, host: format!("127.0.0.1:{port}") }
    }

    /// Pushes `layout:tag` (an OCI layout) as `repo:tag2` (`repo` without the host).
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str) {
        tool(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &format!("oci:{}:{tag}", layout.display()),
                &format!("docker://{}/{repo_tag}", self.host),
            ],
        );
    }

    /// The manifest digest the registry serves for `repo:tag`, as skopeo reads it.
    pub fn digest(&self, repo_tag: &str) -> String {
        let out = tool("skopeo", &["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &format!("docker://{}/{repo_tag}", self.host)]);
        out.trim().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
