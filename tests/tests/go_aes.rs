//! The Go AES function (faasd-templates/functions/aes/go), a handler of the
//! golang-shunt template: its own Go tests, and the function shrink-wrapped
//! with the template (as `faas-cli build --shrinkwrap` lays it out) and
//! built with the template's own recipes — `shunt.build` (the shunt Go
//! target) and `shunt.native_build` — serving vSwarm's reference vectors
//! over HTTP: the plain build natively, the shunt build natively and under
//! `shunt run` with zero traps.

use std::path::{Path, PathBuf};

#[path = "support/golang_shunt.rs"]
mod util;
use util::*;

fn aes_dir() -> PathBuf {
    templates().join("functions/aes/go")
}

const DEFAULT: &str =
    "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: golang";
const VECTORS: [(&str, &str); 4] = [
    ("", DEFAULT),
    ("world", DEFAULT),
    ("defaultplaintext", DEFAULT),
    (
        "A unique message",
        "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: golang",
    ),
];

#[test]
fn aes_go_test_passes() {
    let o = go_test(&aes_dir(), &[("GOWORK", "off")]);
    assert!(o.stdout_str().starts_with("ok "), "{}", o.stdout_str());
}

#[test]
fn aes_in_the_template_serves_the_reference_vectors() {
    let dir = scratch("aes");
    let yml = std::fs::read_to_string(golang_shunt().join("template.yml")).unwrap();
    let recipe = shunt_recipe(&yml);
    let binary = &recipe["binary"][0];
    let mut bins = Vec::new();
    for (variant, mode) in [("native_build", Mode::Native), ("build", Mode::Native), ("build", Mode::Shunt)] {
        let ctx = dir.join(variant);
        if !ctx.exists() {
            shrinkwrap(&golang_shunt(), &aes_dir(), &ctx);
            build_argv(&recipe[variant], &ctx);
        }
        bins.push((variant, mode, ctx.join(binary)));
    }

    // The benchmark's input size: 600 bytes, 1200 hex digits of ciphertext.
    let long: String = (0..600).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let mut long_answers = Vec::new();
    for (variant, mode, bin) in &bins {
        let what = format!("{variant} run {mode:?}");
        let mut s = Server::start(*mode, &[Path::new(bin)], &[("healthcheck_interval", "0")]);
        s.wait_healthy();
        for (input, want) in VECTORS {
            let r = call(s.port, "POST", "/", input.as_bytes());
            assert_eq!((r.status, r.text().as_str()), (200, want), "{what}: {input:?}");
        }
        let r = call(s.port, "GET", "/", b"");
        assert_eq!((r.status, r.text().as_str()), (200, DEFAULT), "{what}: GET without a body");
        let r = call(s.port, "POST", "/", long.as_bytes());
        let text = r.text();
        let hex = text.split("| ciphertext: ").nth(1).and_then(|t| t.split(" |").next()).unwrap_or("");
        assert_eq!((r.status, hex.len()), (200, 1200), "{what}: a 600-byte input: {}", r.text());
        long_answers.push(r.text());
        s.stop();
    }
    assert!(long_answers.windows(2).all(|w| w[0] == w[1]), "the builds disagree on a 600-byte input");
}
