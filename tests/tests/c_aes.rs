//! The C++ vSwarm AES function (`faasd-templates/functions/aes/cpp/`), built
//! through the cpp-shunt template (shrink-wrapped over `function/`, then the
//! template's Makefile): with `shunt c++` it answers both reference vectors
//! over keep-alive HTTP on loopback, run directly (stand-alone stats) and
//! under `shunt run`, with `trapped == 0`; the same context built with g++
//! answers the same. Its unit tests pass in both builds.

#[path = "support/cpp_shunt.rs"]
mod util;

use util::*;

const VECTORS: [(&str, &str); 4] = [
    ("", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp"),
    ("world", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp"),
    ("defaultplaintext", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp"),
    ("A unique message", "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: cpp"),
];

fn exercise(port: u16) {
    let mut conn = Conn::open(port);
    for round in 0..3 {
        for (pt, want) in VECTORS {
            let r = conn.request("POST", "/", &[], pt.as_bytes());
            assert_eq!((r.status, r.text()), (200, want.to_string()), "round {round}, plaintext {pt:?}");
        }
    }
    assert_eq!(conn.request("GET", "/_/health", &[], b"").text(), "OK");
    // A second connection, another path.
    assert_eq!(call(port, "POST", "/function/aes", b"A unique message").text(), VECTORS[3].1);
}

fn serve(mode: Mode) {
    let bin = built("aes", &function("aes"), mode.built_with_shunt());
    let mut s = start_front(&bin, mode, &[]);
    s.wait_healthy();
    exercise(s.port);
    // Exit 0 on SIGTERM (under `shunt run` the supervisor forwards it);
    // for the shunt builds: every call accounted for, none trapped.
    s.stop();
}

#[test]
fn aes_over_http_gpp_build() {
    serve(Mode::Native);
}

#[test]
fn aes_over_http_shunt_build_run_directly() {
    serve(Mode::ShuntDirect);
}

#[test]
fn aes_over_http_shunt_build_under_shunt_run() {
    serve(Mode::Shunt);
}

#[test]
fn aes_unit_tests() {
    let ctx = scratch("aes-unit");
    shrinkwrap_cpp(&function("aes"), &ctx);
    for shunted in [false, true] {
        let o = make(&ctx, shunted, &["test"]);
        assert!(o.status.success(), "make test (shunt {shunted}):\n{}{}", o.stdout_str(), o.stderr_str());
        assert!(o.stdout_str().contains("test reference_vectors ... ok"), "{}", o.stdout_str());
    }
}
