//! `shunt cc` / `shunt c++`: gcc/g++ wrappers that link programs with the
//! shunt runtime.

use anyhow::{bail, Result};
use std::ffi::OsString;

pub fn run(_cxx: bool, _args: Vec<OsString>) -> Result<std::process::ExitCode> {
    bail!("shunt cc is not built yet")
}
