//! `shunt policy [FILE]`: what a run refuses.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct PolicyArgs {
    /// Policy file to check and show [default: the built-in profile].
    file: Option<PathBuf>,
}

pub fn run(a: PolicyArgs) -> Result<()> {
    let compiled = shunt_supervisor::load_policy(a.file.as_deref())?;
    let what = a.file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| "built-in profile".into());
    println!("# {what}: calls a run refuses (everything else is allowed)");
    print!("{}", compiled.describe());
    Ok(())
}
