//! `shunt stats FILE`: a stats report (the JSON of `--stats`) as a table.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use shunt_stats::{Class, Report};

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
    let text = shunt_userfile::read_to_string(file, shunt_userfile::limit::STATS)?;
    let r = Report::from_json(&file.display().to_string(), &text)?;
    println!("{} process(es)", r.processes);
    print!("{:<22}", "");
    for c in Class::ALL {
        print!("{:>12}", c.name());
    }
    println!();
    print!("{:<22}", "total");
    for c in Class::ALL {
        print!("{:>12}", r.total(c));
    }
    println!();
    let mut rows: Vec<_> = r.by_syscall.iter().collect();
    rows.sort_by_key(|(name, c)| (std::cmp::Reverse(c.entries()), name.to_string()));
    let shown = rows.len().min(top);
    println!("top {shown} of {} system calls, by entries:", rows.len());
    for (name, c) in rows.into_iter().take(top) {
        print!("  {name:<20}");
        for class in Class::ALL {
            print!("{:>12}", c.get(class));
        }
        println!();
    }
    let entries = r.totals.entries();
    if entries > 0 {
        println!(
            "{:.1}% of calls entered by the gate, {:.1}% trapped; {:.1}% answered in user space",
            100.0 * r.totals.redirected as f64 / entries as f64,
            100.0 * r.totals.trapped as f64 / entries as f64,
            100.0 * r.totals.emulated as f64 / entries as f64
        );
    }
    Ok(())
}
