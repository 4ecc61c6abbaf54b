//! The C++ vSwarm functions (`faasd-templates/functions/{aes,fibonacci,auth}/cpp/`)
//! as cpp-shunt handlers: their unit tests (`make test`, built with g++ and
//! with `shunt c++`, the latter also run under `shunt run`), their reference
//! outputs over HTTP natively and under `shunt run` with zero trapped calls,
//! the template's starter function, a whole stack through `shunt faas build`,
//! and the message a missing Debian package gives.

use std::path::Path;
use std::process::Command;

use shunt_tests::*;

#[path = "support/cpp_shunt.rs"]
mod util;

use util::*;

const AES_DEFAULT: &str =
    "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp";

fn auth_policy(token: &str, effect: &str) -> String {
    format!(
        "fn: Auth | token: {token} | resp: {{principalId:user policyDocument:{{Version:2012-10-17 \
         Statement:[{{Action:execute-api:Invoke Effect:{effect} Resource:arn:aws:execute-api:{{regionId}}:\
         {{accountId}}:{{apiId}}/{{stage}}/{{httpVerb}}/[{{resource}}/[{{child-resources}}]]}}]}} \
         context:{{stringKey:stringval numberKey:123 booleanKey:true}}}} | runtime: cpp"
    )
}

/// (request body, status, answer) of each function.
fn vectors(name: &str) -> Vec<(String, u16, String)> {
    let v = |b: &str, s: u16, a: &str| (b.to_string(), s, a.to_string());
    match name {
        "aes" => vec![
            v("", 200, AES_DEFAULT),
            v("world", 200, AES_DEFAULT),
            v("defaultplaintext", 200, AES_DEFAULT),
            v(
                "A unique message",
                200,
                "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: cpp",
            ),
            v("hello", 200, "fn: AES | plaintext: hello | ciphertext: d40e94c520 | runtime: cpp"),
        ],
        "fibonacci" => vec![
            v("10", 200, "fn: Fib: y = fib(x) | x: 10 y: 55 | runtime: cpp"),
            v("100", 200, "fn: Fib: y = fib(x) | x: 100 y: 354224848179261915075 | runtime: cpp"),
            v("", 200, "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: cpp"),
            v("abc", 200, "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: cpp"),
            v("-5", 200, "fn: Fib: y = fib(x) | x: -5 y: 0 | runtime: cpp"),
            v("10\n", 200, "fn: Fib: y = fib(x) | x: 10 y: 55 | runtime: cpp"),
            v("100001", 400, "fibonacci: x = 100001 is over this function's limit (100000)\n"),
        ],
        "auth" => vec![
            (String::from("allow"), 200, auth_policy("allow", "Allow")),
            (String::from("deny"), 200, auth_policy("deny", "Deny")),
            v("unauthorized", 200, "fn: Auth | token: unauthorized | resp: Unauthorized | runtime: cpp"),
            v("bla bla", 200, "fn: Auth | token: bla bla | resp: Error: Invalid token | runtime: cpp"),
            v("", 200, "fn: Auth | token:  | resp: Error: Invalid token | runtime: cpp"),
            v("unauthorized\n", 200, "fn: Auth | token: unauthorized | resp: Unauthorized | runtime: cpp"),
        ],
        "starter" => vec![v("hello", 200, "Body: hello"), v("", 200, "Body: ")],
        other => panic!("no vectors for {other}"),
    }
}

/// The handler directory of a function (the starter: the template's own).
fn handler_of(name: &str) -> std::path::PathBuf {
    if name == "starter" {
        cpp_shunt().join("function")
    } else {
        function(name)
    }
}

fn over_http(name: &str, v: Mode) {
    let bin = built(name, &handler_of(name), v.built_with_shunt());
    let mut s = start_front(&bin, v, &[]);
    s.wait_healthy();
    let mut c = Conn::open(s.port);
    for round in 0..2 {
        for (body, status, want) in vectors(name) {
            let r = c.request("POST", "/", &[], body.as_bytes());
            assert_eq!((r.status, r.text()), (status, want.clone()), "{name} ({v:?}) round {round}, body {body:?}");
        }
    }
    // Any path, a new connection, a chunked body (as the stock watchdog sends it).
    let (body, _, want) = vectors(name).remove(0);
    assert_eq!(call(s.port, "POST", "/function/x?y=1", body.as_bytes()).text(), want);
    let mut c = Conn::open(s.port);
    let mut raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    if !body.is_empty() {
        raw.extend_from_slice(format!("{:x}\r\n{body}\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    c.send(&raw);
    assert_eq!(c.read_response(false).unwrap().text(), want);
    if name == "aes" {
        // vSwarm-style 600-byte input: AES-CTR keeps the length (1200 hex digits).
        let input: String = (0..600).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let text = c.request("POST", "/", &[], input.as_bytes()).text();
        let hex = text.split("| ciphertext: ").nth(1).unwrap().split(" |").next().unwrap();
        assert_eq!(hex.len(), 1200);
    }
    s.stop();
}

fn unit_tests(name: &str) {
    let ctx = scratch(&format!("unit-{name}"));
    shrinkwrap_cpp(&handler_of(name), &ctx);
    for shunted in [false, true] {
        let o = make(&ctx, shunted, &["test"]);
        assert!(
            o.status.success(),
            "make test ({name}, shunt {shunted}) failed:\n{}{}",
            o.stdout_str(),
            o.stderr_str()
        );
        let out = o.stdout_str();
        assert!(out.contains(" 0 failed") && out.contains("... ok"), "{out}");
        assert!(!out.contains("FAILED"), "{out}");
    }
    // The shunt build of the unit tests, under `shunt run`: same answers, no traps.
    let exe = ctx.join(".obj/function-test");
    let (o, stats) = under_shunt(&[exe.to_str().unwrap()], None, &[]);
    assert!(o.status.success(), "{}{}", o.stdout_str(), o.stderr_str());
    assert_eq!(stats.total("trapped"), 0, "{}", stats.0);
}

macro_rules! per_function {
    ($($name:ident),*) => {
        $(
            mod $name {
                use super::*;
                #[test]
                fn unit() {
                    unit_tests(stringify!($name));
                }
                #[test]
                fn http_native() {
                    over_http(stringify!($name), Mode::Native);
                }
                #[test]
                fn http_under_shunt() {
                    over_http(stringify!($name), Mode::Shunt);
                }
            }
        )*
    };
}

per_function!(aes, fibonacci, auth, starter);

/// The three functions as a stack, through the lead's `shunt faas build`
/// (the template's `shunt:` recipe, both variants), then run.
#[test]
fn stack_through_shunt_faas_build() {
    let dir = scratch("stack");
    copy_tree(&cpp_shunt(), &dir.join("template/cpp-shunt"));
    for f in ["aes", "fibonacci", "auth"] {
        copy_tree(&function(f), &dir.join(f));
    }
    std::fs::write(
        dir.join("stack.yml"),
        "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n\
         \x20 aes:\n    lang: cpp-shunt\n    handler: ./aes\n    image: aes:latest\n    build_options: [crypto]\n\
         \x20 fibonacci:\n    lang: cpp-shunt\n    handler: ./fibonacci\n    image: fibonacci:latest\n    build_options: [bigint]\n\
         \x20 auth:\n    lang: cpp-shunt\n    handler: ./auth\n    image: auth:latest\n",
    )
    .unwrap();
    let mut c = Command::new(shunt());
    c.current_dir(&dir).args(["faas", "build", "-f", "stack.yml", "--native"]);
    c.env("PATH", "/usr/local/bin:/usr/bin:/bin"); // no faas-cli: shunt's own shrink-wrap
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "shunt faas build failed:\n{}{}", o.stdout_str(), o.stderr_str());
    // faas-cli's layout: the template, the handler over function/.
    let ctx = dir.join("build/aes");
    for f in ["template.yml", "Makefile", "Dockerfile", "front/main.cpp", "include/faas.hpp", "function/aes.cpp"] {
        assert!(ctx.join(f).is_file(), "build/aes/{f} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("build/.shunt/bundles.json")).unwrap()).unwrap();
    let bundles = manifest.as_array().unwrap();
    assert_eq!(bundles.len(), 6, "{manifest}");
    for b in bundles {
        let name = b["name"].as_str().unwrap();
        let variant = if b["variant"] == "native" { Mode::Native } else { Mode::Shunt };
        let bin = Path::new(b["binary"].as_str().unwrap());
        let ldd = Command::new("ldd").arg(bin).output().unwrap();
        let links_shunt = String::from_utf8_lossy(&ldd.stdout).contains("libshunt.so");
        assert_eq!(links_shunt, variant == Mode::Shunt, "{name} {variant:?}: libshunt.so linked: {links_shunt}");
        let mut s = start_front(bin, variant, &[]);
        s.wait_healthy();
        let (body, status, want) = vectors(name).remove(1);
        let r = call(s.port, "POST", "/", body.as_bytes());
        assert_eq!((r.status, r.text()), (status, want), "{name} {variant:?}");
        s.stop();
    }
}

/// A header the function needs but the machine lacks stops the build with
/// the Debian package to install and the build option that installs it.
#[test]
fn missing_header_names_the_package() {
    let src = handler_dir(
        "needs-missing",
        &[
            ("handler.cpp", "#include \"faas.hpp\"\n#include <shunt_no_such_header.h>\nfaas::Response handle(const faas::Request&) { return faas::Response(\"x\"); }\n"),
            ("function.mk", "REQUIRES += shunt_no_such_header.h:libshunt-no-such-dev:nosuch\nLDLIBS += -lshuntnosuch\n"),
        ],
    );
    let ctx = scratch("needs-missing-ctx");
    shrinkwrap_cpp(&src, &ctx);
    for shunted in [true, false] {
        let o = make(&ctx, shunted, &["handler"]);
        assert!(!o.status.success());
        let err = o.stderr_str();
        assert!(err.contains("<shunt_no_such_header.h>") && err.contains("libshunt-no-such-dev"), "{err}");
        assert!(err.contains("build_options: [nosuch]"), "{err}");
        assert!(err.contains("apt-get install libshunt-no-such-dev"), "{err}");
        assert!(!ctx.join("handler").exists());
    }
}

/// What every function declares: its libraries and packages in function.mk,
/// with build options the template offers.
#[test]
fn functions_declare_their_packages() {
    let tpl = std::fs::read_to_string(cpp_shunt().join("template.yml")).unwrap();
    for (f, lib, req) in [
        ("aes", "-lcrypto", "openssl/evp.h:libssl-dev:crypto"),
        ("fibonacci", "-lgmp", "gmp.h:libgmp-dev:bigint"),
    ] {
        let mk = std::fs::read_to_string(function(f).join("function.mk")).unwrap();
        assert!(mk.contains(lib) && mk.contains(req), "{f}/cpp/function.mk:\n{mk}");
        let option = req.rsplit(':').next().unwrap();
        let package = req.split(':').nth(1).unwrap();
        assert!(tpl.contains(&format!("name: {option}")) && tpl.contains(package), "template.yml lacks {option}");
    }
}
