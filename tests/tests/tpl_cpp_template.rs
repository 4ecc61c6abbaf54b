//! The cpp-shunt template's files, checked as text (no Docker engine runs
//! here, so the Dockerfile cannot be built): template.yml has faas-cli's
//! fields, the build options and the `shunt:` recipe the lead's
//! `shunt faas build` runs; the Dockerfile has every element a faas-cli
//! build needs; the starter and the README are there.

#[path = "support/cpp_shunt.rs"]
mod util;

use util::*;

fn read(rel: &str) -> String {
    let p = cpp_shunt().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The instructions of a Dockerfile, each as one "INSTRUCTION args" line.
fn instructions(dockerfile: &str) -> Vec<String> {
    dockerfile_instructions(dockerfile).into_iter().map(|(i, a)| format!("{i} {a}")).collect()
}

#[test]
fn template_yml_fields() {
    let t = read("template.yml");
    for want in ["language: cpp-shunt", "fprocess: ./handler", "welcome_message: |"] {
        assert!(t.lines().any(|l| l == want), "template.yml lacks {want:?}:\n{t}");
    }
    // build_options: crypto -> libssl-dev, bigint -> libgmp-dev.
    let opts = t.split("build_options:").nth(1).expect("build_options");
    for (name, pkg) in [("crypto", "libssl-dev"), ("bigint", "libgmp-dev")] {
        let at = opts.find(&format!("- name: {name}")).unwrap_or_else(|| panic!("no build option {name}"));
        let next = opts[at..].lines().nth(1).unwrap_or("");
        assert_eq!(next.trim(), format!("packages: [{pkg}]"), "build option {name}");
    }
    // The recipe (the interface with `shunt faas build`).
    let shunt = t.split("\nshunt:\n").nth(1).expect("a shunt: section");
    for want in ["  build: [make, handler]", "  native_build: [make, handler, CXX=g++]", "  binary: handler"] {
        assert!(shunt.lines().any(|l| l == want), "shunt: section lacks {want:?}:\n{shunt}");
    }
}

#[test]
fn dockerfile_has_what_faas_cli_build_needs() {
    let d = read("Dockerfile");
    let ins = instructions(&d);
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    assert_eq!(froms[0], "FROM --platform=${BUILDPLATFORM} shunt-builder AS build");
    let ship = froms.last().unwrap();
    assert!(ship.ends_with(" AS ship") && !ship.contains("shunt-builder"), "{ship}");
    // The build stage: the platform args, ADDITIONAL_PACKAGE through apt,
    // the sources, the unit tests and the program, with shunt c++.
    let build_end = ins.iter().position(|i| i == *ship).unwrap();
    let build = &ins[..build_end];
    let has = |stage: &[String], pred: &dyn Fn(&str) -> bool| stage.iter().any(|i| pred(i));
    assert!(has(build, &|i| i == "ARG TARGETPLATFORM"), "ARG TARGETPLATFORM");
    assert!(has(build, &|i| i == "ARG BUILDPLATFORM"), "ARG BUILDPLATFORM");
    assert!(has(build, &|i| i.starts_with("ARG ADDITIONAL_PACKAGE")), "ARG ADDITIONAL_PACKAGE");
    assert!(
        has(build, &|i| i.starts_with("RUN ")
            && i.contains("apt-get update")
            && i.contains("apt-get install")
            && i.contains("${ADDITIONAL_PACKAGE}")),
        "ADDITIONAL_PACKAGE is not installed with apt:\n{d}"
    );
    assert!(has(build, &|i| i.contains("TARGETPLATFORM") && i.contains("linux/amd64") && i.starts_with("RUN ")));
    assert!(has(build, &|i| i == "COPY . ."), "the context is not copied");
    assert!(has(build, &|i| i.starts_with("RUN ") && i.contains("make test") && i.contains("make handler")));
    assert!(!has(build, &|i| i.contains("CXX=g++")), "the image must be built with shunt c++");
    // The ship stage: the program from the build stage, plans for its own
    // glibc, a non-root user, the port, the health check, the command.
    let ship_stage = &ins[build_end..];
    assert!(has(ship_stage, &|i| i.starts_with("COPY --from=build ")), "nothing copied from the build stage");
    assert!(has(ship_stage, &|i| i.contains("shunt glibc plan")), "no glibc plan in the ship stage");
    assert!(has(ship_stage, &|i| i.starts_with("RUN ") && i.contains("useradd")), "no user created");
    let user = ship_stage.iter().rev().find(|i| i.starts_with("USER ")).expect("a USER instruction");
    assert!(!user.contains("root") && user != "USER 0", "runs as root: {user}");
    assert!(has(ship_stage, &|i| i == "EXPOSE 8080"));
    assert!(has(ship_stage, &|i| i.starts_with("HEALTHCHECK ") && i.contains("/tmp/.lock")));
    assert_eq!(ship_stage.last().map(String::as_str), Some("CMD [\"./handler\"]"));
    let dockerignore = read(".dockerignore");
    assert!(dockerignore.lines().any(|l| l == ".obj"), "{dockerignore}");
}

#[test]
fn starter_and_docs() {
    for f in ["function/handler.cpp", "function/handler_test.cpp", "function/function.mk", "include/faas.hpp",
              "include/faas_test.hpp", "Makefile", "README.md"] {
        assert!(cpp_shunt().join(f).is_file(), "{f} missing");
    }
    let readme = read("README.md");
    for topic in ["faas::Response handle(const faas::Request& req)", "function.mk", "build_options", "exec_timeout",
                  "max_inflight", "healthcheck_interval", "One process", "shunt-builder"] {
        assert!(readme.contains(topic), "the README does not cover {topic:?}");
    }
    let hpp = read("include/faas.hpp");
    assert!(hpp.contains("faas::Response handle(const faas::Request& req);"));
}
