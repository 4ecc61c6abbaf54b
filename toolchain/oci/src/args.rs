//! runc's command line, read only as far as `shunt-oci` must: the global
//! options (for the state root and where errors are logged), the command,
//! and of a few commands the bundle, the container id and the process
//! file. The arguments themselves are handed to runc unchanged.
//!
//! runc parses with urfave/cli: an option is `-name` or `--name`, its
//! value follows as the next argument or after `=`, and a command's
//! options end at its first positional argument.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::log::{Format, Log};

/// One call of `shunt-oci`.
pub struct Invocation {
    /// Everything after the program name, as given (what runc gets).
    pub argv: Vec<OsString>,
    /// `--root`: runc's state directory [default: /run/runc, as runc's].
    pub root: PathBuf,
    pub log: Log,
    pub command: Command,
}

pub enum Command {
    /// `--version` / `-v` (or the `version`-less runc's `-v`).
    Version,
    /// `create` or `run`: the bundle is edited before runc starts it.
    Create { bundle: PathBuf, id: String },
    /// `exec`; with `--process FILE` the process joins the instance.
    Exec { id: String, process: Option<PathBuf> },
    /// `delete`: stats are finished after runc's delete.
    Delete { id: String },
    /// `stats ID` (not runc's): the container's live stats report.
    Stats { id: String },
    /// A command runc does not have.
    Unknown(String),
    /// Anything else runc does: passed on as it is.
    Other,
}

/// runc's global options that take a value.
const GLOBAL_VALUE: [&str; 5] = ["root", "log", "log-format", "criu", "rootless"];
/// runc's global switches.
const GLOBAL_SWITCH: [&str; 5] = ["debug", "systemd-cgroup", "help", "h", "version"];
/// runc 1.1's commands (and `init`, which runc runs itself).
const RUNC_COMMANDS: [&str; 20] = [
    "checkpoint", "create", "delete", "events", "exec", "init", "kill", "list", "pause", "ps", "restore", "resume", "run", "spec",
    "start", "state", "update", "features", "help", "h",
];

/// Splits `-name`, `--name` and `--name=value`; `None` if `a` is no option.
fn option(a: &OsStr) -> Option<(String, Option<String>)> {
    let s = a.to_str()?;
    if s == "-" || s == "--" || !s.starts_with('-') {
        return None;
    }
    let s = s.trim_start_matches('-');
    Some(match s.split_once('=') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (s.to_string(), None),
    })
}

pub fn parse(argv: &[OsString]) -> Result<Invocation> {
    let mut root = PathBuf::from("/run/runc");
    let mut log = Log::default();
    let mut i = 0;
    let mut version = false;
    while i < argv.len() {
        let Some((name, inline)) = option(&argv[i]) else { break };
        i += 1;
        if GLOBAL_SWITCH.contains(&name.as_str()) {
            if name == "version" {
                version = true;
            }
            continue;
        }
        if name == "v" {
            version = true;
            continue;
        }
        if !GLOBAL_VALUE.contains(&name.as_str()) {
            bail!("unknown global option -{name}: runc's are --root, --log, --log-format, --debug, --systemd-cgroup, --criu, --rootless");
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = argv.get(i).ok_or_else(|| anyhow::anyhow!("option --{name} needs a value"))?;
                i += 1;
                v.to_str().ok_or_else(|| anyhow::anyhow!("option --{name}: not UTF-8"))?.to_string()
            }
        };
        match name.as_str() {
            "root" => root = PathBuf::from(value),
            "log" => log.file = Some(PathBuf::from(value)),
            "log-format" => {
                log.format = match value.as_str() {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    other => bail!("--log-format {other:?}: use text or json"),
                }
            }
            _ => {}
        }
    }
    let rest = &argv[i..];
    let command = if version && rest.is_empty() {
        Command::Version
    } else {
        match rest.first().and_then(|c| c.to_str()) {
            None if rest.is_empty() => Command::Other, // runc prints its help
            None => bail!("the command is not UTF-8"),
            Some(c) => command(c, &rest[1..])?,
        }
    };
    Ok(Invocation { argv: argv.to_vec(), root, log, command })
}

/// A command's options: those in `valued` take a value; returns the values
/// asked for in `want` and the positional arguments.
fn command_options(args: &[OsString], valued: &[&str], want: &[&str]) -> Result<(Vec<Option<String>>, Vec<String>)> {
    let mut got = vec![None; want.len()];
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--" {
            i += 1;
            break;
        }
        let Some((name, inline)) = option(&args[i]) else { break };
        i += 1;
        if !valued.contains(&name.as_str()) {
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args.get(i).ok_or_else(|| anyhow::anyhow!("option --{name} needs a value"))?;
                i += 1;
                v.to_string_lossy().into_owned()
            }
        };
        if let Some(k) = want.iter().position(|w| *w == name) {
            got[k] = Some(value);
        }
    }
    let positional = args[i..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
    Ok((got, positional))
}

fn id_of(cmd: &str, positional: &[String]) -> Result<String> {
    match positional.first() {
        Some(id) if !id.is_empty() => Ok(id.clone()),
        _ => bail!("{cmd}: no container id given"),
    }
}

fn command(name: &str, args: &[OsString]) -> Result<Command> {
    Ok(match name {
        "create" | "run" => {
            let valued = ["bundle", "b", "console-socket", "pid-file", "preserve-fds"];
            let (got, pos) = command_options(args, &valued, &["bundle", "b"])?;
            let bundle = got[0].clone().or_else(|| got[1].clone()).map(PathBuf::from);
            let bundle = match bundle {
                Some(b) => b,
                None => std::env::current_dir()?,
            };
            Command::Create { bundle, id: id_of(name, &pos)? }
        }
        "exec" => {
            let valued = [
                "console-socket", "cwd", "env", "e", "user", "u", "additional-gids", "g", "process", "p", "pid-file",
                "process-label", "apparmor", "cap", "c", "preserve-fds", "cgroup",
            ];
            let (got, pos) = command_options(args, &valued, &["process", "p"])?;
            let process = got[0].clone().or_else(|| got[1].clone()).map(PathBuf::from);
            Command::Exec { id: id_of(name, &pos)?, process }
        }
        "delete" => {
            let (_, pos) = command_options(args, &[], &[])?;
            Command::Delete { id: id_of(name, &pos)? }
        }
        "stats" => {
            let (_, pos) = command_options(args, &[], &[])?;
            Command::Stats { id: id_of(name, &pos)? }
        }
        c if RUNC_COMMANDS.contains(&c) => Command::Other,
        c => Command::Unknown(c.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Invocation> {
        parse(&s.split_whitespace().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn reads_what_containerds_shim_passes() {
        let inv = parse_str("--root /run/r --log /tmp/l.json --log-format json --systemd-cgroup create --bundle /b --pid-file /p --console-socket /s c1")
            .unwrap();
        assert_eq!(inv.root, PathBuf::from("/run/r"));
        assert_eq!(inv.log.file, Some(PathBuf::from("/tmp/l.json")));
        assert_eq!(inv.log.format, Format::Json);
        assert!(matches!(inv.command, Command::Create { ref bundle, ref id } if bundle == &PathBuf::from("/b") && id == "c1"));
        assert_eq!(inv.argv.len(), 15, "the arguments are kept for runc as given");
    }

    #[test]
    fn urfave_spellings() {
        let inv = parse_str("-root=/x exec -d --pid-file=/p -p /proc.json c2").unwrap();
        assert_eq!(inv.root, PathBuf::from("/x"));
        assert!(matches!(inv.command, Command::Exec { ref id, process: Some(ref p) } if id == "c2" && p == &PathBuf::from("/proc.json")));
        let inv = parse_str("exec c3 sh -c true").unwrap();
        assert!(matches!(inv.command, Command::Exec { ref id, process: None } if id == "c3"));
        assert!(matches!(parse_str("--version").unwrap().command, Command::Version));
        assert!(matches!(parse_str("delete -f c4").unwrap().command, Command::Delete { ref id } if id == "c4"));
    }

    #[test]
    fn refuses_what_runc_would_not_take() {
        assert!(matches!(parse_str("frobnicate x").unwrap().command, Command::Unknown(_)));
        assert!(parse_str("--bogus create x").is_err());
        assert!(parse_str("--log-format yaml state x").is_err());
        assert!(parse_str("--root").is_err());
        assert!(parse_str("delete").is_err());
        assert!(matches!(parse_str("state x").unwrap().command, Command::Other));
    }
}
