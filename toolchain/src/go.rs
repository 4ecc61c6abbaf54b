//! `shunt go`: the Go toolchain with the shunt target (see `gotarget/`).

use anyhow::{bail, Result};
use clap::Args;
use std::ffi::OsString;

#[derive(Args)]
pub struct GoArgs {
    /// A go subcommand and its arguments (build, test -c, env, overlay).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

pub fn run(_a: GoArgs) -> Result<std::process::ExitCode> {
    bail!("shunt go is not built yet")
}
