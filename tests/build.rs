//! Compiles the C test programs in `programs/` with the system C compiler.
//! Each becomes `$OUT_DIR/<name>`, passed to the tests as `env!("PROG_<NAME>")`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("programs");
    println!("cargo:rerun-if-changed={}", dir.display());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("tests/programs").flatten().map(|e| e.path()).collect();
    entries.sort();
    for src in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "c")) {
        let name = src.file_stem().unwrap().to_string_lossy().to_string();
        let exe = out.join(&name);
        let status = Command::new(&cc)
            .args(["-O2", "-g", "-Wall", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` (install gcc): {e}"));
        assert!(status.success(), "compiling {} failed", src.display());
        println!("cargo:rustc-env=PROG_{}={}", name.to_uppercase(), exe.display());
        println!("cargo:rerun-if-changed={}", src.display());
    }
}
