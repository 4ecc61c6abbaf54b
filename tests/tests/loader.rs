//! `shunt run` of static binaries: the loader maps a Go program into the
//! runtime's process. These binaries are built with the plain Go toolchain
//! (nothing patched); run with `--no-rewrite`, every call is trapped — and
//! still answered right (`rewrite_go.rs` runs them rewritten).

use std::path::Path;
use std::process::Command;

use shunt_tests::*;

fn go_build(dir: &Path, out: &Path, env: &[(&str, &str)]) {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir).args(["build", "-o"]).arg(out).arg(".").env("CGO_ENABLED", "0").env("GOTOOLCHAIN", go_toolchain());
    cmd.env_remove("GOFLAGS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = run(cmd, None, std::time::Duration::from_secs(600));
    assert!(o.status.success(), "go build failed (is Go installed? scripts/setup.sh checks): {}", o.stderr_str());
}

#[test]
fn static_go_program_runs_in_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("loader");
    go_build(&go_fixture("loader"), &bin, &[]);
    let bin = bin.to_str().unwrap();
    let n = native(&[bin, "a", "b c"], None);
    assert_eq!(n.status.code(), Some(5), "{}", n.stderr_str());
    let (s, stats) = under_shunt(&[bin, "a", "b c"], None, &["--no-rewrite"]);
    assert_same("static Go program", &n, &s);
    assert!(stats.total("trapped") > 0);
    // The self-exec went through the loader again, the shell through the
    // preload: both are processes of the instance.
    assert!(stats.processes() >= 3, "{}", stats.0);
    assert!(stats.get("readlinkat", "emulated") >= 1, "os.Executable answered by the runtime");
}

#[test]
fn go_pie_is_relocated_by_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("loader");
    go_build(&go_fixture("loader"), &bin, &[("GOFLAGS", "-buildmode=pie -ldflags=-linkmode=internal")]);
    let data = std::fs::read(&bin).unwrap();
    assert_eq!(u16::from_le_bytes([data[16], data[17]]), 3, "expected an ET_DYN (PIE) binary");
    let b = bin.to_str().unwrap();
    let n = native(&[b, "pie"], None);
    let (s, stats) = under_shunt(&[b, "pie"], None, &[]);
    assert_same("static PIE", &n, &s);
    // Only the loader answers os.Executable: the PIE ran in it, relocated,
    // not under ld.so with the preload.
    assert!(stats.get("readlinkat", "emulated") >= 1, "{}", stats.0["by_syscall"]["readlinkat"]);
}

#[test]
fn loader_refuses_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    // Two PT_LOAD segments that overlap, and pass every other check (in the
    // file, page-congruent): the overlap is what is refused.
    let mut elf = vec![0u8; 0x1000];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[6] = 1;
    elf[16] = 2; // ET_EXEC
    elf[18] = 62; // x86-64
    elf[20] = 1;
    elf[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
    elf[32..40].copy_from_slice(&64u64.to_le_bytes());
    elf[52] = 64;
    elf[54] = 56;
    elf[56] = 2;
    let filesz = 0x100u64;
    for (i, (vaddr, offset)) in [(0x400000u64, 0u64), (0x400800, 0x800)].into_iter().enumerate() {
        let p = 64 + i * 56;
        elf[p] = 1; // PT_LOAD
        elf[p + 4] = 5;
        elf[p + 8..p + 16].copy_from_slice(&offset.to_le_bytes());
        elf[p + 16..p + 24].copy_from_slice(&vaddr.to_le_bytes());
        elf[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
        elf[p + 40..p + 48].copy_from_slice(&0x2000u64.to_le_bytes());
    }
    let path = dir.path().join("overlap");
    std::fs::write(&path, &elf).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(shunt());
    cmd.args(["run", "--"]).arg(&path);
    let o = run(cmd, None, std::time::Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(2));
    let err = o.stderr_str();
    assert!(err.starts_with("shunt: ") && err.lines().count() == 1, "{err}");
    assert!(err.contains("segments at 0x400000 and 0x400800 overlap"), "{err}");
}

/// One line on stderr, exit status 2, for a program the loader refuses.
fn refused(cmd: Command, expect: &str) {
    let o = run(cmd, None, std::time::Duration::from_secs(60));
    let err = o.stderr_str();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.starts_with("shunt: ") && err.lines().count() == 1 && err.contains(expect), "{err:?} should say {expect:?}");
}

#[test]
fn static_cgo_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cgostatic");
    go_build(&go_fixture("cgostatic"), &bin, &[("CGO_ENABLED", "1"), ("GOFLAGS", "-ldflags=-linkmode=external -ldflags=-extldflags=-static")]);
    let data = std::fs::read(&bin).unwrap();
    assert!(shunt_runtime_free_check_static(&data), "expected a static binary");
    let mut cmd = Command::new(shunt());
    cmd.args(["run", "--"]).arg(&bin);
    refused(cmd, "built with cgo");
}

/// Whether an ELF has no PT_INTERP (parsed by hand: the test does not link
/// the runtime).
fn shunt_runtime_free_check_static(d: &[u8]) -> bool {
    let rd = |o: usize, n: usize| (0..n).fold(0u64, |v, i| v | (d[o + i] as u64) << (8 * i));
    let (phoff, phentsize, phnum) = (rd(32, 8) as usize, rd(54, 2) as usize, rd(56, 2) as usize);
    (0..phnum).all(|i| rd(phoff + i * phentsize, 4) != 3)
}

#[test]
fn segment_colliding_with_the_runtime_is_refused() {
    // Without address randomisation the shunt executable (a PIE) sits at
    // 0x555555554000; a program wanting that address cannot be loaded.
    let dir = tempfile::tempdir().unwrap();
    let mut elf = vec![0u8; 64 + 56 + 16];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[6] = 1;
    elf[16] = 2;
    elf[18] = 62;
    elf[20] = 1;
    let base = 0x5555_5555_4000u64;
    elf[24..32].copy_from_slice(&(base + 0x78).to_le_bytes());
    elf[32..40].copy_from_slice(&64u64.to_le_bytes());
    elf[52] = 64;
    elf[54] = 56;
    elf[56] = 1;
    let p = 64;
    elf[p] = 1;
    elf[p + 4] = 5;
    elf[p + 16..p + 24].copy_from_slice(&base.to_le_bytes());
    let len = elf.len() as u64;
    elf[p + 32..p + 40].copy_from_slice(&len.to_le_bytes());
    elf[p + 40..p + 48].copy_from_slice(&len.to_le_bytes());
    let path = dir.path().join("collide");
    std::fs::write(&path, &elf).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("setarch");
    cmd.args(["x86_64", "-R"]).arg(shunt()).args(["run", "--"]).arg(&path);
    refused(cmd, "collides with memory the runtime already uses");
}

/// The loader maps a program's segments from its file, as the kernel's
/// exec does: its text and read-only data are the file's pages in the page
/// cache (shared by every instance of the program, copy-on-write where the
/// loader writes), not anonymous copies. The program reads its own
/// `/proc/self/maps`; natively and under the runtime it finds its file
/// behind an executable and a non-executable mapping.
#[test]
fn segments_are_mapped_from_the_program_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("go.mod"), "module mapsfile\n\ngo 1.22\n").unwrap();
    std::fs::write(
        src.join("main.go"),
        r#"package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		fmt.Println("cannot read maps:", err)
		os.Exit(2)
	}
	text, other := false, false
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[5] != os.Args[1] {
			continue
		}
		if strings.Contains(f[1], "x") {
			text = true
		} else {
			other = true
		}
	}
	fmt.Printf("executable mapping of the file: %v\nother mapping of the file: %v\n", text, other)
}
"#,
    )
    .unwrap();
    let bin = dir.path().join("mapsfile");
    go_build(&src, &bin, &[]);
    let bin = bin.canonicalize().unwrap();
    let bin = bin.to_str().unwrap();
    let n = native(&[bin, bin], None);
    assert_eq!(n.stdout_str(), "executable mapping of the file: true\nother mapping of the file: true\n", "{}", n.stderr_str());
    for flags in [&[][..], &["--no-rewrite"][..]] {
        let (s, _) = under_shunt(&[bin, bin], None, flags);
        assert_same(&format!("maps of the loaded program {flags:?}"), &n, &s);
    }
}

/// A static program is started in `shunt-load`, the runtime's small helper
/// binary, not in the `shunt` command line: the process the program runs in
/// maps no libssl or libcrypto (which `shunt` links for its image registry
/// client, and whose dynamic linking was most of the `shunt` binary's ~4 ms
/// start, paid by every cold start of a Go function). The program lists
/// the files mapped in its own process; natively a static Go program maps
/// only itself.
#[test]
fn a_static_program_is_started_by_the_small_loader_without_libssl() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("mappedfiles");
    go_build(&go_fixture("mappedfiles"), &bin, &[]);
    let bin = bin.canonicalize().unwrap();
    let bin = bin.to_str().unwrap();
    let n = native(&[bin, bin], None);
    assert!(n.status.success(), "{}", n.stderr_str());
    assert_eq!(n.stdout_str().trim(), "", "natively the static program maps only itself");
    let (s, _) = under_shunt(&[bin, bin], None, &[]);
    assert!(s.status.success(), "{}", s.stderr_str());
    let out = s.stdout_str();
    let names: Vec<&str> = out.lines().filter_map(|p| Path::new(p).file_name()?.to_str()).collect();
    assert!(names.contains(&"shunt-load"), "the program runs in shunt-load: it maps {names:?}");
    for lib in ["shunt", "libssl", "libcrypto"] {
        assert!(
            !names.iter().any(|n| *n == lib || n.starts_with(&format!("{lib}."))),
            "the process of a static program maps {lib}: {names:?}"
        );
    }
}
