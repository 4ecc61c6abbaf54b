//! `shunt stats FILE`: a stats report (the JSON of `--stats`) as a table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;

const CLASSES: [&str; 5] = ["redirected", "trapped", "emulated", "passthrough", "denied"];

#[derive(Args)]
pub struct StatsArgs {
    /// The JSON report.
    pub file: PathBuf,
    /// How many system calls to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

pub fn run(a: StatsArgs) -> Result<()> {
    show(&a.file, a.top)
}

pub fn show(file: &Path, top: usize) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not a stats report (JSON)", file.display()))?;
    let Some(by) = v.get("by_syscall").and_then(Value::as_object) else {
        bail!("{} is not a stats report: no \"by_syscall\"", file.display());
    };
    let n = |o: &Value, k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
    println!("{} process(es)", n(&v, "processes"));
    print!("{:<22}", "");
    for c in CLASSES {
        print!("{c:>12}");
    }
    println!();
    print!("{:<22}", "total");
    for c in CLASSES {
        print!("{:>12}", n(&v, c));
    }
    println!();
    let mut rows: Vec<(&String, &Value)> = by.iter().collect();
    rows.sort_by_key(|(name, o)| (std::cmp::Reverse(n(o, "redirected") + n(o, "trapped")), name.to_string()));
    let shown = rows.len().min(top);
    println!("top {shown} of {} system calls, by entries:", rows.len());
    for (name, o) in rows.into_iter().take(top) {
        print!("  {name:<20}");
        for c in CLASSES {
            print!("{:>12}", n(o, c));
        }
        println!();
    }
    let entries = n(&v, "redirected") + n(&v, "trapped");
    if entries > 0 {
        println!(
            "{:.1}% of calls entered by the gate, {:.1}% trapped; {:.1}% answered in user space",
            100.0 * n(&v, "redirected") as f64 / entries as f64,
            100.0 * n(&v, "trapped") as f64 / entries as f64,
            100.0 * n(&v, "emulated") as f64 / entries as f64
        );
    }
    Ok(())
}
