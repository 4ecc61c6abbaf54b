//! `shunt audit FILE`: every syscall instruction of an ELF and whether shunt
//! covers it.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct AuditArgs {
    /// The ELF executable or shared object.
    pub file: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_a: AuditArgs) -> Result<std::process::ExitCode> {
    bail!("shunt audit is not built yet")
}
