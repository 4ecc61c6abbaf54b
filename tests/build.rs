//! Compiles the C test programs in `programs/` with the system C compiler.
//! Each becomes `$OUT_DIR/<name>`, passed to the tests as `env!("PROG_<NAME>")`.
//!
//! The compiler is found by the `cc` crate, as for any Rust build (`CC`,
//! `CFLAGS`, the target's own variables), and told the flags the programs
//! are written for; `cc` builds libraries, so the command it gives is run
//! here to link each program. Headers in `programs/` (`loopback.h`) hold
//! helpers several programs include; they are not compiled on their own.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("programs");
    println!("cargo:rerun-if-changed={}", dir.display());
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(2)
        .debug(true)
        .warnings(false)
        .flag("-Wall")
        .flag("-pthread")
        .get_compiler();
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("tests/programs").flatten().map(|e| e.path()).collect();
    entries.sort();
    for h in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "h")) {
        println!("cargo:rerun-if-changed={}", h.display());
    }
    for src in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "c")) {
        let name = src.file_stem().unwrap().to_string_lossy().to_string();
        let exe = out.join(&name);
        let status = compiler
            .to_command()
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {:?} (install gcc): {e}", compiler.path()));
        assert!(status.success(), "compiling {} failed", src.display());
        println!("cargo:rustc-env=PROG_{}={}", name.to_uppercase(), exe.display());
        println!("cargo:rerun-if-changed={}", src.display());
    }
}
