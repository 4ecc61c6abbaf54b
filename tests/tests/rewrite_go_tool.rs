//! The `go` tool itself — an unmodified static Go binary shunt did not
//! build — running `go build` under `shunt run`: it and every tool it starts
//! (`compile`, `asm`, `link`, all plain Go binaries from GOROOT) are
//! rewritten at load time. The build runs natively and under shunt, each
//! with an empty build cache of its own (so both really compile the
//! runtime and the packages the program imports, ~20 s natively here); the
//! executables they produce must be byte for byte the same, the go
//! command's output and exit status the same, and at most 1% of all the
//! calls the instance made may have trapped (issue 16's bound; today it
//! is 0).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shunt_tests::*;

const MAIN_GO: &str = r#"package main

import (
	"fmt"
	"os"
	"sync"
)

func main() {
	var wg sync.WaitGroup
	out := make([]int, 8)
	for i := range out {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = i * i }()
	}
	wg.Wait()
	fmt.Fprintln(os.Stdout, "built by the go tool under shunt:", out)
}
"#;

fn go_build(src: &Path, cache: &Path, out: &Path, stats: Option<&Path>) -> Outcome {
    let go = which_go();
    let mut cmd = match stats {
        Some(stats) => {
            let mut c = Command::new(shunt());
            c.arg("run").arg("--stats").arg(stats).arg("--").arg(&go);
            c
        }
        None => Command::new(&go),
    };
    cmd.current_dir(src).arg("build").arg("-o").arg(out).arg(".");
    cmd.env("GOCACHE", cache).env("CGO_ENABLED", "0").env("GOTOOLCHAIN", go_toolchain()).env_remove("GOFLAGS");
    run(cmd, None, Duration::from_secs(600))
}

/// The installed go command (a plain Go binary), by absolute path: `shunt
/// run` is given the file itself.
fn which_go() -> std::path::PathBuf {
    let o = Command::new("go").args(["env", "GOROOT"]).env("GOTOOLCHAIN", go_toolchain()).output()
        .expect("cannot run go (is Go installed? scripts/setup.sh checks)");
    assert!(o.status.success(), "go env GOROOT: {}", String::from_utf8_lossy(&o.stderr));
    let go = Path::new(String::from_utf8_lossy(&o.stdout).trim()).join("bin/go");
    assert!(go.is_file(), "{} is missing", go.display());
    go
}

#[test]
fn go_build_under_shunt_builds_the_same_binary_with_almost_no_traps() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("main.go"), MAIN_GO).unwrap();
    std::fs::write(src.join("go.mod"), "module hello\n\ngo 1.25\n").unwrap();

    let (native_bin, shunt_bin) = (work.path().join("native.bin"), work.path().join("shunt.bin"));
    let native = go_build(&src, &work.path().join("cache-native"), &native_bin, None);
    assert!(native.status.success(), "native go build failed: {}", native.stderr_str());
    let stats_file = work.path().join("stats.json");
    let shunted = go_build(&src, &work.path().join("cache-shunt"), &shunt_bin, Some(&stats_file));
    assert_same("go build", &native, &shunted);
    let stats = Stats::parse(&std::fs::read_to_string(&stats_file).expect("no stats from the shunt run"));

    let (a, b) = (std::fs::read(&native_bin).unwrap(), std::fs::read(&shunt_bin).unwrap());
    assert!(a == b, "the go build under shunt wrote a different executable ({} vs {} bytes)", a.len(), b.len());
    // And the executable it built works.
    let o = run(Command::new(&shunt_bin), None, Duration::from_secs(30));
    assert_eq!(o.stdout_str(), "built by the go tool under shunt: [0 1 4 9 16 25 36 49]\n");

    // The compiler, assembler and linker ran in the instance (an empty cache
    // makes the go command start them), not just the go command.
    let progs = stats.0["by_program"].as_object().expect("stats have no by_program");
    for tool in ["go", "compile", "link"] {
        let p = progs.get(tool).unwrap_or_else(|| panic!("{tool} did not run under shunt: {}", stats.0));
        assert!(p["redirected"].as_u64().unwrap_or(0) > 0, "{tool} made no call through the gate: {p}");
    }
    let trapped = stats.total("trapped");
    let calls = stats.total("redirected") + trapped;
    println!("go build under shunt: {} processes, {calls} calls, {trapped} trapped; by program:", stats.processes());
    for (name, p) in progs {
        println!("  {name:<10} processes {:>4} redirected {:>8} trapped {}", p["processes"], p["redirected"], p["trapped"]);
    }
    assert!(trapped * 100 <= calls, "{trapped} of {calls} calls trapped (more than 1%): {}", stats.0);
}
