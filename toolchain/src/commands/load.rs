//! `shunt load` (internal): install the runtime in this process and become
//! the static program (what the supervisor starts for a static binary).

use std::ffi::{OsStr, OsString};
use std::process::ExitCode;

use anyhow::{anyhow, Result};

pub fn run(argv0: OsString, command: Vec<OsString>) -> Result<ExitCode> {
    let (path, args) = command.split_first().ok_or_else(|| anyhow!("no program given"))?;
    let opts = shunt_install::options_from_env().map_err(|e| anyhow!(e))?;
    let env: Vec<(OsString, OsString)> = std::env::vars_os().filter(|(k, _)| k != "SHUNT_SIGPIPE").collect();
    let env_refs: Vec<(&OsStr, &OsStr)> = env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).collect();
    let mut argv: Vec<&OsStr> = vec![argv0.as_os_str()];
    argv.extend(args.iter().map(|a| a.as_os_str()));
    let rewrite = opts.rewrite;
    match shunt_loader::exec_static(std::path::Path::new(path), &argv, &env_refs, rewrite, || shunt_install::install(opts)) {
        Ok(never) => match never {},
        Err(e) => Err(anyhow!("{e}")),
    }
}
