//! `shunt load` (internal): install the runtime in this process and become
//! the static program. The supervisor starts `shunt-load load …` (the same
//! code in a small binary, `shunt_loader::load_and_run`); this command
//! stays for a `shunt` without `shunt-load` beside it.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

pub fn run(argv0: OsString, command: Vec<OsString>) -> Result<ExitCode> {
    match shunt_loader::load_and_run(&argv0, &command) {
        Ok(never) => match never {},
        Err(e) => Err(anyhow!(e)),
    }
}
