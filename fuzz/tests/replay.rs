//! Every committed seed and every input a fuzzer once crashed on, through
//! its target, uninstrumented: a fixed crash that comes back fails here,
//! in `make test`, without a fuzzer.

use std::path::Path;

#[test]
fn corpora_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut counts = Vec::new();
    for (name, target) in shunt_fuzz::TARGETS {
        let mut n = 0;
        for dir in [root.join("corpus").join(name), root.join("regressions").join(name)] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries {
                let path = e.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                eprintln!("{name}: {}", path.display());
                target(&data);
                n += 1;
            }
        }
        assert!(n > 0, "{name}: no seed in fuzz/corpus/{name}");
        counts.push(format!("{name} {n}"));
    }
    eprintln!("replayed: {}", counts.join(", "));
}
