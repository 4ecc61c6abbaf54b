//! The golang-shunt template's files and the Go vSwarm functions: every Go
//! package's own tests (`go vet` + `go test`), gofmt, the template.yml keys
//! faas-cli and `shunt faas build` read, the Dockerfiles (Docker does not run
//! here: they are parsed for what they must contain), and fibonacci and auth
//! served by the template natively and under `shunt run` with zero traps.
//! (aes has its own file, go_aes.rs; the fronts are in tpl_go_front.rs.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use shunt_tests::run;

#[path = "support/golang_shunt.rs"]
mod util;
use util::*;

/// Every Go directory of the template side, and whether it is a handler
/// (tested on its own, outside any go.work).
fn go_dirs() -> Vec<(PathBuf, bool)> {
    let t = templates();
    vec![
        (t.join("functions/aes/go"), true),
        (t.join("functions/fibonacci/go"), true),
        (t.join("functions/auth/go"), true),
        (t.join("template/golang-shunt/function"), true),
        (t.join("template/golang-shunt"), false),
        (t.join("stock/watchdog"), false),
    ]
}

#[test]
fn go_tests_pass() {
    for (dir, handler) in go_dirs() {
        let env: &[(&str, &str)] = if handler { &[("GOWORK", "off")] } else { &[] };
        let o = go_test(&dir, env);
        assert!(
            o.stdout_str().lines().all(|l| l.starts_with("ok ") || l.contains("[no test files]")),
            "{}",
            o.stdout_str()
        );
    }
}

#[test]
fn go_sources_are_gofmt_clean() {
    let t = templates();
    let dirs = ["functions/aes/go", "functions/fibonacci/go", "functions/auth/go", "template/golang-shunt", "stock"];
    let mut c = Command::new("gofmt");
    c.arg("-l").args(dirs.iter().map(|d| t.join(d)));
    let o = run(c, None, BUILD_LIMIT);
    assert!(o.status.success(), "gofmt: {}", o.stderr_str());
    assert_eq!(o.stdout_str(), "", "files gofmt would change (the Docker build refuses them)");
}

#[test]
fn stock_upstream_builds_with_the_starter_function() {
    let dir = scratch("stock-starter");
    shrinkwrap(&templates().join("stock/golang"), &golang_shunt().join("function"), &dir);
    go_build(&dir, &dir.join("handler"));
}

/// The top-level `key: value` lines of a YAML file.
fn top_keys(yml: &str) -> BTreeMap<String, String> {
    yml.lines()
        .filter(|l| !l.starts_with([' ', '#', '\t']) && !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn template_yml_has_the_openfaas_and_shunt_keys() {
    let yml = std::fs::read_to_string(golang_shunt().join("template.yml")).unwrap();
    let keys = top_keys(&yml);
    // faas-cli finds a template by its directory name; language says the same.
    assert_eq!(keys.get("language").map(String::as_str), Some("golang-shunt"));
    assert_eq!(keys.get("fprocess").map(String::as_str), Some("./handler"));
    assert!(keys.contains_key("welcome_message"), "{keys:?}");
    assert!(yml.contains("shunt faas build"), "the welcome message should say how to build with shunt");
    let r = shunt_recipe(&yml);
    assert_eq!(r["build"], ["shunt", "go", "build", "-o", "handler", "."]);
    assert_eq!(r["native_build"], ["go", "build", "-o", "handler", "."]);
    assert_eq!(r["binary"], ["handler"]);
    // The layout the recipes expect: module handler at the root, the
    // handler's module in function/, a go.work joining them.
    let t = golang_shunt();
    assert!(std::fs::read_to_string(t.join("go.mod")).unwrap().starts_with("module handler\n"));
    assert!(std::fs::read_to_string(t.join("function/go.mod")).unwrap().starts_with("module handler/function\n"));
    let work = std::fs::read_to_string(t.join("go.work")).unwrap();
    assert!(work.contains("\t.\n") && work.contains("./function"), "{work}");
    for f in ["main.go", "Dockerfile", "function/handler.go", "function/handler_test.go", "README.md"] {
        assert!(t.join(f).is_file(), "template/golang-shunt/{f} is missing");
    }
    for f in ["functions/aes/go", "functions/fibonacci/go", "functions/auth/go"] {
        let m = std::fs::read_to_string(templates().join(f).join("go.mod")).unwrap();
        assert!(m.starts_with("module handler/function\n"), "{f}/go.mod: {m}");
    }
}

/// A stage: its FROM arguments, name, and instructions.
struct Stage {
    from: String,
    name: Option<String>,
    body: Vec<(String, String)>,
}

/// The instructions before the first FROM, and the stages.
fn stages(text: &str) -> (Vec<(String, String)>, Vec<Stage>) {
    let mut pre = Vec::new();
    let mut out: Vec<Stage> = Vec::new();
    for (ins, args) in dockerfile_instructions(text) {
        if ins == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = words.iter().position(|w| w.eq_ignore_ascii_case("as")).map(|i| words[i + 1].to_string());
            out.push(Stage { from: args.clone(), name, body: vec![] });
        } else if let Some(s) = out.last_mut() {
            s.body.push((ins, args));
        } else {
            pre.push((ins, args));
        }
    }
    (pre, out)
}

fn has(body: &[(String, String)], ins: &str, needle: &str) -> bool {
    body.iter().any(|(i, a)| i == ins && a.contains(needle))
}

/// Every `COPY --from=X` names an earlier stage.
fn check_copy_from(stages: &[Stage]) {
    for (i, s) in stages.iter().enumerate() {
        for (ins, args) in &s.body {
            if let Some(from) = args.split_whitespace().find_map(|w| w.strip_prefix("--from=")) {
                assert_eq!(ins, "COPY");
                assert!(
                    stages[..i].iter().any(|e| e.name.as_deref() == Some(from)),
                    "COPY --from={from} does not name an earlier stage"
                );
            }
        }
    }
}

#[test]
fn template_dockerfile_builds_with_shunt_and_ships_non_root() {
    let text = std::fs::read_to_string(golang_shunt().join("Dockerfile")).unwrap();
    let (pre, st) = stages(&text);
    assert!(st.len() >= 2, "a multi-stage build");
    check_copy_from(&st);
    assert!(has(&pre, "ARG", "SHUNT_BUILDER="), "the builder image is a build arg, declared before FROM");

    let build = &st[0];
    assert!(build.from.contains("--platform=${BUILDPLATFORM}"), "build stage: {}", build.from);
    assert!(build.from.contains("${SHUNT_BUILDER}"), "the build stage is the shunt builder image: {}", build.from);
    for arg in ["TARGETOS", "TARGETARCH", "TARGETPLATFORM", "BUILDPLATFORM"] {
        assert!(
            build.body.iter().any(|(i, a)| i == "ARG" && a.split('=').next() == Some(arg)),
            "ARG {arg} in the build stage"
        );
    }
    assert!(has(&build.body, "RUN", "gofmt -l"), "the gofmt gate");
    assert!(has(&build.body, "RUN", "cd function && go test ./..."), "the handler's tests");
    // The same build command as template.yml's shunt.build, for the target platform.
    let yml = std::fs::read_to_string(golang_shunt().join("template.yml")).unwrap();
    let cmd = shunt_recipe(&yml)["build"].join(" ");
    assert!(has(&build.body, "RUN", &format!("GOOS=${{TARGETOS}} GOARCH=${{TARGETARCH}} {cmd}")), "RUN … {cmd}");
    assert!(has(&build.body, "RUN", "shunt audit handler"), "the coverage check");

    let ship = st.last().unwrap();
    assert!(!ship.from.contains("--platform"), "the shipped stage is of the target platform: {}", ship.from);
    let user = ship.body.iter().rev().find(|(i, _)| i == "USER").map(|(_, a)| a.as_str());
    assert!(
        matches!(user, Some(u) if u != "root" && !u.starts_with('0')),
        "the image runs as a non-root user: {user:?}"
    );
    assert!(has(&ship.body, "COPY", "--from=build /usr/local/bin/shunt "), "shunt in the image");
    assert!(has(&ship.body, "COPY", "--from=build /usr/local/bin/shunt-load "), "shunt-load in the image");
    assert!(has(&ship.body, "COPY", "--from=build /usr/local/lib/shunt/"), "libshunt.so in the image");
    assert!(has(&ship.body, "COPY", "/go/src/handler/handler"), "the function in the image");
    assert!(has(&ship.body, "HEALTHCHECK", ".lock"), "the lock-file health check");
    let cmd = ship.body.iter().rev().find(|(i, _)| i == "CMD").map(|(_, a)| a.clone()).unwrap_or_default();
    assert_eq!(cmd, r#"["shunt", "run", "--", "./handler"]"#, "the function runs under shunt");
}

#[test]
fn builder_dockerfile_builds_shunt_into_a_go_image() {
    let b = templates().join("builder");
    let text = std::fs::read_to_string(b.join("Dockerfile")).unwrap();
    let (_, st) = stages(&text);
    assert_eq!(st.len(), 2, "a Rust stage and the Go image");
    check_copy_from(&st);
    assert!(st[0].from.starts_with("rust:") && st[0].name.as_deref() == Some("cargo"), "{}", st[0].from);
    assert!(has(&st[0].body, "RUN", "cargo build --release"), "cargo build --release");
    assert!(st[1].from.starts_with("golang:"), "{}", st[1].from);
    // Where the template's Dockerfile takes them from.
    assert!(has(&st[1].body, "COPY", "/usr/local/bin/shunt"), "shunt on PATH");
    assert!(has(&st[1].body, "COPY", "/usr/local/bin/shunt-load"), "shunt-load beside shunt");
    assert!(has(&st[1].body, "COPY", "/usr/local/lib/shunt/libshunt.so"), "libshunt.so where shunt looks");
    let ignore = std::fs::read_to_string(b.join("Dockerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target"), "cargo's output stays out of the context");
    let readme = std::fs::read_to_string(templates().join("README.md")).unwrap();
    assert!(
        readme.contains("docker build -t shunt-builder -f faasd-templates/builder/Dockerfile ."),
        "README: the builder command"
    );
}

/// `COPY --from=<from> SRC… DST` of a stage, as (SRC, DST) pairs.
fn copies_from(stage: &Stage, from: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (ins, args) in &stage.body {
        if ins != "COPY" || !args.split_whitespace().any(|w| w == format!("--from={from}")) {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        let (dst, srcs) = words.split_last().expect("COPY has a destination");
        out.extend(srcs.iter().map(|s| (s.to_string(), dst.to_string())));
    }
    out
}

/// The `install [-D] [-m MODE] SRC DST` commands of a stage's RUNs.
fn installs(stage: &Stage) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, args) in stage.body.iter().filter(|(i, _)| i == "RUN") {
        for cmd in args.split("&&").map(str::trim).filter(|c| c.starts_with("install ")) {
            let mut words = Vec::new();
            let mut it = cmd.split_whitespace().skip(1);
            while let Some(w) = it.next() {
                match w {
                    "-m" => {
                        it.next();
                    }
                    w if w.starts_with('-') => {}
                    w => words.push(w),
                }
            }
            assert_eq!(words.len(), 2, "install SRC DST: {cmd}");
            out.push((words[0].to_string(), words[1].to_string()));
        }
    }
    out
}

/// What golang-shunt's shipped image holds under /usr/local, followed from
/// the Dockerfiles: the cargo stage's `install`s of the workspace's build
/// output, the builder's COPYs, the template's COPYs from the builder, laid
/// out under `root` with this workspace's binaries. `shunt run` there
/// starts a static program in `shunt-load` beside it, and in `shunt` itself
/// once `shunt-load` is gone (the supervisor's fallback rule, unchanged).
#[test]
fn the_shipped_image_starts_the_handler_in_shunt_load_and_falls_back_to_shunt() {
    let b = std::fs::read_to_string(templates().join("builder/Dockerfile")).unwrap();
    let (_, builder) = stages(&b);
    let t = std::fs::read_to_string(golang_shunt().join("Dockerfile")).unwrap();
    let (_, template) = stages(&t);
    let target = shunt_tests::target_dir();
    // Path in the cargo stage -> file here.
    let mut cargo_stage: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (src, dst) in installs(&builder[0]) {
        let name = src.strip_prefix("target/release/").unwrap_or_else(|| panic!("install of {src}: not a build output"));
        cargo_stage.insert(dst, target.join(name));
    }
    // Path in the builder image -> file here.
    let mut image: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (src, dst) in copies_from(&builder[1], "cargo") {
        let file = cargo_stage.get(&src).unwrap_or_else(|| panic!("the builder copies {src}, which the cargo stage does not install"));
        image.insert(dst, file.clone());
    }
    // The shipped stage's files under /usr/local (a source ending in / is a directory).
    let dir = scratch("shipped-image-layout");
    let root = dir.join("root");
    let mut shipped = Vec::new();
    for (src, dst) in copies_from(template.last().unwrap(), "build").into_iter().filter(|(s, _)| s.starts_with("/usr/local/")) {
        let found: Vec<(String, &PathBuf)> = match src.strip_suffix('/') {
            Some(d) => image
                .iter()
                .filter_map(|(p, f)| Some((format!("{}/{}", dst.trim_end_matches('/'), p.strip_prefix(d)?.strip_prefix('/')?), f)))
                .collect(),
            None => image.get(&src).map(|f| (dst.clone(), f)).into_iter().collect(),
        };
        assert!(!found.is_empty(), "the image copies {src} from the builder, which does not hold it");
        for (at, file) in found {
            let to = root.join(at.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            // A hard link keeps the name /proc/self/exe reports (a symlink would not).
            std::fs::hard_link(file, &to).or_else(|_| std::fs::copy(file, &to).map(drop)).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
            shipped.push(at);
        }
    }
    shipped.sort();
    for f in ["/usr/local/bin/shunt", "/usr/local/bin/shunt-load", "/usr/local/lib/shunt/libshunt.so"] {
        assert!(shipped.iter().any(|s| s == f), "the image ships {f}: {shipped:?}");
    }

    let prog = dir.join("mappedfiles");
    go_build(&shunt_tests::go_fixture("mappedfiles"), &prog);
    let prog = prog.canonicalize().unwrap();
    let root = root.canonicalize().unwrap();
    let bin = root.join("usr/local/bin");
    let mapped_by = |what: &str| -> Vec<String> {
        let mut c = Command::new(bin.join("shunt"));
        c.arg("run").arg("--").arg(&prog).arg(&prog).env_remove("SHUNT_LIB").env_remove("SHUNT_EXE");
        let o = run(c, None, std::time::Duration::from_secs(120));
        assert!(o.status.success(), "{what}: shunt run failed: {}", o.stderr_str());
        o.stdout_str().lines().map(str::to_string).collect()
    };
    let loader = bin.join("shunt-load").display().to_string();
    let shunt = bin.join("shunt").display().to_string();
    let maps = mapped_by("with shunt-load");
    assert!(maps.contains(&loader), "the handler runs in the image's shunt-load: it maps {maps:?}");
    assert!(!maps.contains(&shunt), "the handler's process maps shunt: {maps:?}");
    std::fs::remove_file(&loader).unwrap();
    let maps = mapped_by("without shunt-load");
    assert!(maps.contains(&shunt), "without shunt-load the handler runs in shunt: it maps {maps:?}");
    assert!(!maps.contains(&loader), "{maps:?}");
}

/// Shrink-wraps a function with the template, builds it with shunt, and
/// checks `cases` natively and under shunt.
fn serve(function: &str, cases: &[(&str, String)]) {
    let dir = scratch(function);
    let ctx = dir.join("ctx");
    shrinkwrap(&golang_shunt(), &templates().join("functions").join(function).join("go"), &ctx);
    let bin = dir.join("handler");
    shunt_go_build(&ctx, &bin);
    for mode in [Mode::Native, Mode::Shunt] {
        let mut s = Server::start(mode, &[Path::new(&bin)], &[("healthcheck_interval", "0")]);
        s.wait_healthy();
        for (input, want) in cases {
            let r = call(s.port, "POST", "/", input.as_bytes());
            assert_eq!((r.status, r.text().as_str()), (200, want.as_str()), "{function} {mode:?}: {input:?}");
        }
        s.stop();
    }
}

#[test]
fn fibonacci_served_natively_and_under_shunt() {
    let fib = |x: &str, y: &str| format!("fn: Fib: y = fib(x) | x: {x} y: {y} | runtime: GoLang");
    serve(
        "fibonacci",
        &[
            ("10", fib("10", "55")),
            ("100", fib("100", "354224848179261915075")),
            ("", fib("0", "0")),
            ("abc", fib("0", "0")),
            ("-5", fib("-5", "0")),
        ],
    );
}

#[test]
fn auth_served_natively_and_under_shunt() {
    let policy = |effect: &str| {
        format!(
            "{{principalId:user policyDocument:{{Version:2012-10-17 Statement:[{{Action:execute-api:Invoke Effect:{effect} \
             Resource:arn:aws:execute-api:{{regionId}}:{{accountId}}:{{apiId}}/{{stage}}/{{httpVerb}}/[{{resource}}/[{{child-resources}}]]}}]}} \
             context:{{stringKey:stringval numberKey:123 booleanKey:true}}}}"
        )
    };
    let auth = |token: &str, resp: &str| format!("fn: Auth | token: {token} | resp: {resp} | runtime: golang");
    serve(
        "auth",
        &[
            ("allow", auth("allow", &policy("Allow"))),
            ("deny", auth("deny", &policy("Deny"))),
            ("unauthorized", auth("unauthorized", "Unauthorized")),
            ("bla bla", auth("bla bla", "Error: Invalid token")),
            ("", auth("", "Error: Invalid token")),
        ],
    );
}
