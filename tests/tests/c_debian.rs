//! Unmodified Debian binaries under `shunt run` with glibc patched in memory
//! by the preloaded runtime: the same output as natively, and the only system
//! calls left to the trap fallback are those of sites `shunt audit` lists as
//! allowlisted or uncovered in the machine's libc and ld.so (in practice:
//! none).

use std::collections::BTreeSet;
use std::process::Command;

use shunt_tests::*;

/// Makes sure the plans exist (`shunt cc --print-config` plans glibc when
/// needed), and returns the syscall names of every site the audit of the
/// machine's glibc does not list as patched.
fn prepare() -> BTreeSet<String> {
    let o = Command::new(shunt()).args(["cc", "--print-config"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names = BTreeSet::new();
    for lib in ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"] {
        let o = Command::new(shunt()).args(["audit", "--json", lib]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for s in v["sites"].as_array().unwrap() {
            if s["status"] != "patched" {
                names.insert(s["syscall"].as_str().unwrap_or("?").to_string());
            }
        }
    }
    names
}

fn compare(what: &str, argv: &[&str], stdin: Option<&[u8]>, left: &BTreeSet<String>) -> Stats {
    let n = native(argv, stdin);
    let (s, stats) = under_shunt(argv, stdin, &[]);
    assert_same(what, &n, &s);
    let by = stats.0["by_syscall"].as_object().unwrap();
    let trapped: Vec<(&String, u64)> =
        by.iter().filter_map(|(k, v)| v["trapped"].as_u64().filter(|&t| t > 0).map(|t| (k, t))).collect();
    eprintln!(
        "{what}: redirected {} trapped {} emulated {} passthrough {} processes {}; trapped by call: {trapped:?}",
        stats.total("redirected"),
        stats.total("trapped"),
        stats.total("emulated"),
        stats.total("passthrough"),
        stats.processes()
    );
    for (name, _) in &trapped {
        assert!(left.contains(*name), "{what}: {name} was trapped, but the audit lists no unpatched {name} site: {}", stats.0);
    }
    assert!(stats.total("redirected") > 0, "{what}: nothing reached the gate");
    stats
}


#[test]
fn coreutils_sort_and_sha256sum() {
    let left = prepare();
    let dir = tempfile::tempdir().unwrap();
    let text = data_file(dir.path(), "lines.txt", 3_000_000, 0x2545f4914f6cdd1d);
    compare("sort", &["sort", &text], None, &left);
    compare("sort -r from stdin", &["sort", "-r"], Some(b"b\nc\na\n"), &left);
    compare("sha256sum", &["sha256sum", &text], None, &left);
}

#[test]
fn sqlite3_create_and_query() {
    let left = prepare();
    if Command::new("sqlite3").arg("-version").output().is_err() {
        panic!("sqlite3 is not installed (scripts/setup.sh installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let sql = "create table t(k integer primary key, v text);\n\
               with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000)\n\
               insert into t select i, 'v' || i from n;\n\
               create index tv on t(v);\n\
               select count(*), sum(k), min(v), max(v) from t;\n\
               select k, v from t where v like 'v49%' order by k limit 5;\n";
    for (i, journal) in ["delete", "wal"].iter().enumerate() {
        let db = dir.path().join(format!("db{i}.sqlite"));
        let db_s = dir.path().join(format!("db{i}-shunt.sqlite"));
        let script = format!("pragma journal_mode={journal};\n{sql}");
        let n = native(&["sqlite3", db.to_str().unwrap()], Some(script.as_bytes()));
        let (s, stats) = under_shunt(&["sqlite3", db_s.to_str().unwrap()], Some(script.as_bytes()), &[]);
        assert_same(&format!("sqlite3 ({journal})"), &n, &s);
        let trapped = stats.total("trapped");
        eprintln!("sqlite3 ({journal}): redirected {} trapped {trapped}", stats.total("redirected"));
        if trapped > 0 {
            for (name, v) in stats.0["by_syscall"].as_object().unwrap() {
                if v["trapped"].as_u64().unwrap_or(0) > 0 {
                    assert!(left.contains(name), "sqlite3: {name} trapped");
                }
            }
        }
        // Query the database again, read-only.
        compare("sqlite3 query", &["sqlite3", db.to_str().unwrap(), "select count(*) from t where k % 7 = 0"], None, &left);
    }
}

#[test]
fn python_threads_files_subprocess() {
    let left = prepare();
    let stats = compare("python3", &["/usr/bin/python3", "-c", PYTHON_WORKLOAD], None, &left);
    assert!(stats.processes() >= 3, "{}", stats.0);
    assert!(stats.get("clone3", "redirected") >= 8, "threads are created through the gate: {}", stats.0);
}
