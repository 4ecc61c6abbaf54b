//! Policies: which system calls an instance may not make.
//!
//! A policy file is TOML:
//!
//! ```toml
//! # Start from the built-in FaaS profile ("default") or from nothing ("none").
//! base = "default"
//!
//! [syscalls]
//! ptrace  = "deny"          # refuse with EPERM
//! mkdirat = "deny:EACCES"   # refuse with a chosen errno (name or number)
//! unshare = "kill"          # end the instance
//! mount   = "allow"         # lift a rule of the base profile
//! ```
//!
//! The built-in profile comes from the `default` column of `syscalls.tbl`.
//! A denied call returns `-errno` to the program, is counted as `denied` and is
//! logged once per number; a kill rule logs the call and ends the instance.
//!
//! `shunt run` compiles the file (reporting every mistake with the file name)
//! and hands the runtime the compiled form ([`Compiled::to_text`]), which the
//! runtime reads without a TOML parser.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::syscalls::{self, DefaultRule, Route, NAMES, TABLE_LEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Allow,
    Deny(u16),
    Kill,
}

/// A policy resolved to one rule per number.
#[derive(Clone)]
pub struct Compiled {
    pub rules: [Rule; TABLE_LEN],
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}: not valid policy TOML: {message}")]
    Toml { file: String, line: usize, message: String },
    #[error("{file}: base must be \"default\" or \"none\", not {value:?}")]
    Base { file: String, value: String },
    #[error("{file}: unknown system call {name:?}{hint}")]
    UnknownSyscall { file: String, name: String, hint: String },
    #[error("{file}: {name}: unknown rule {value:?} (use \"allow\", \"deny\", \"deny:<ERRNO>\" or \"kill\")")]
    UnknownRule { file: String, name: String, value: String },
    #[error("{file}: {name}: unknown errno {value:?} (use a name such as EPERM or a number from 1 to 4095)")]
    UnknownErrno { file: String, name: String, value: String },
    #[error("{file}: {name} cannot be restricted: the runtime itself needs it to run the program")]
    Protected { file: String, name: String },
    #[error("compiled policy line {line}: {why}")]
    Compiled { line: usize, why: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "default_base")]
    base: String,
    #[serde(default)]
    syscalls: BTreeMap<String, String>,
}

fn default_base() -> String {
    "default".into()
}

/// Calls no policy may restrict: the gate handles them itself, or the instance
/// cannot end without them.
fn protected(nr: usize) -> bool {
    syscalls::ROUTE[nr] == Route::Gate || nr == syscalls::nr::EXIT_GROUP
}

impl Compiled {
    /// No restrictions.
    pub fn allow_all() -> Self {
        Compiled { rules: [Rule::Allow; TABLE_LEN] }
    }

    /// The built-in FaaS profile.
    pub fn builtin() -> Self {
        let mut c = Self::allow_all();
        for nr in 0..TABLE_LEN {
            c.rules[nr] = match syscalls::DEFAULT_POLICY[nr] {
                DefaultRule::Allow => Rule::Allow,
                DefaultRule::Kill => Rule::Kill,
                DefaultRule::Deny(name) => {
                    Rule::Deny(errno_by_name(name).expect("syscalls.tbl names a known errno"))
                }
            };
        }
        c
    }

    /// Parses a policy file's text; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, PolicyError> {
        let parsed: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Toml {
            file: file.into(),
            line: e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1)).unwrap_or(1),
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        })?;
        let mut c = match parsed.base.as_str() {
            "default" => Self::builtin(),
            "none" => Self::allow_all(),
            other => return Err(PolicyError::Base { file: file.into(), value: other.into() }),
        };
        for (name, value) in &parsed.syscalls {
            let nr = syscalls::number_of(name).ok_or_else(|| PolicyError::UnknownSyscall {
                file: file.into(),
                name: name.clone(),
                hint: suggest(name).map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default(),
            })?;
            let rule = parse_rule(value).map_err(|bad_errno| match bad_errno {
                Some(e) => PolicyError::UnknownErrno { file: file.into(), name: name.clone(), value: e },
                None => PolicyError::UnknownRule { file: file.into(), name: name.clone(), value: value.clone() },
            })?;
            if rule != Rule::Allow && protected(nr) {
                return Err(PolicyError::Protected { file: file.into(), name: name.clone() });
            }
            c.rules[nr] = rule;
        }
        Ok(c)
    }

    /// The compiled form the runtime reads: one line per restricted number,
    /// `<nr> deny <errno>` or `<nr> kill`.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# shunt compiled policy v1\n");
        for (nr, rule) in self.rules.iter().enumerate() {
            match rule {
                Rule::Allow => {}
                Rule::Deny(e) => s.push_str(&format!("{nr} deny {e}\n")),
                Rule::Kill => s.push_str(&format!("{nr} kill\n")),
            }
        }
        s
    }

    /// Reads [`Compiled::to_text`] output.
    pub fn from_text(text: &str) -> Result<Self, PolicyError> {
        let mut c = Self::allow_all();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| PolicyError::Compiled { line: i + 1, why: why.into() };
            let mut it = line.split_whitespace();
            let nr: usize = it
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&n| n < TABLE_LEN)
                .ok_or_else(|| bad("bad number"))?;
            c.rules[nr] = match (it.next(), it.next()) {
                (Some("kill"), None) => Rule::Kill,
                (Some("deny"), Some(e)) => {
                    Rule::Deny(e.parse().ok().filter(|&e| (1..4096).contains(&e)).ok_or_else(|| bad("bad errno"))?)
                }
                _ => return Err(bad("expected `<nr> deny <errno>` or `<nr> kill`")),
            };
        }
        Ok(c)
    }

    /// Human-readable list of the restrictions (for `shunt policy show`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (nr, rule) in self.rules.iter().enumerate() {
            match rule {
                Rule::Allow => {}
                Rule::Deny(e) => s.push_str(&format!("{:<20} deny:{}\n", NAMES[nr], errno_name(*e))),
                Rule::Kill => s.push_str(&format!("{:<20} kill\n", NAMES[nr])),
            }
        }
        s
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `Err(None)`: not a rule; `Err(Some(e))`: a deny rule with a bad errno.
fn parse_rule(value: &str) -> Result<Rule, Option<String>> {
    match value {
        "allow" => Ok(Rule::Allow),
        "deny" => Ok(Rule::Deny(libc::EPERM as u16)),
        "kill" => Ok(Rule::Kill),
        v => match v.strip_prefix("deny:") {
            Some(e) => errno_by_name(e)
                .or_else(|| e.parse::<u16>().ok().filter(|n| (1..4096).contains(n)))
                .map(Rule::Deny)
                .ok_or_else(|| Some(e.to_string())),
            None => Err(None),
        },
    }
}

/// The closest known syscall name, if one is close enough to be a typo.
fn suggest(name: &str) -> Option<&'static str> {
    /// Edit distance counting a swap of neighbours as one edit (typos).
    fn distance(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for j in 0..=b.len() {
            d[0][j] = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = (a[i - 1] != b[j - 1]) as usize;
                d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
                }
            }
        }
        d[a.len()][b.len()]
    }
    NAMES
        .iter()
        .enumerate()
        .filter(|(nr, _)| syscalls::KNOWN[*nr])
        .map(|(_, n)| (distance(name, n), *n))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

/// Linux errno names (x86-64 values).
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM), ("ENOENT", libc::ENOENT), ("ESRCH", libc::ESRCH), ("EINTR", libc::EINTR),
    ("EIO", libc::EIO), ("ENXIO", libc::ENXIO), ("E2BIG", libc::E2BIG), ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF), ("ECHILD", libc::ECHILD), ("EAGAIN", libc::EAGAIN), ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES), ("EFAULT", libc::EFAULT), ("EBUSY", libc::EBUSY), ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV), ("ENODEV", libc::ENODEV), ("ENOTDIR", libc::ENOTDIR), ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL), ("ENFILE", libc::ENFILE), ("EMFILE", libc::EMFILE), ("ENOTTY", libc::ENOTTY),
    ("EFBIG", libc::EFBIG), ("ENOSPC", libc::ENOSPC), ("ESPIPE", libc::ESPIPE), ("EROFS", libc::EROFS),
    ("EMLINK", libc::EMLINK), ("EPIPE", libc::EPIPE), ("ERANGE", libc::ERANGE), ("EDEADLK", libc::EDEADLK),
    ("ENAMETOOLONG", libc::ENAMETOOLONG), ("ENOLCK", libc::ENOLCK), ("ENOSYS", libc::ENOSYS),
    ("ENOTEMPTY", libc::ENOTEMPTY), ("ELOOP", libc::ELOOP), ("ENOMSG", libc::ENOMSG),
    ("ENODATA", libc::ENODATA), ("ETIME", libc::ETIME), ("EPROTO", libc::EPROTO),
    ("EOVERFLOW", libc::EOVERFLOW), ("EILSEQ", libc::EILSEQ), ("ENOTSOCK", libc::ENOTSOCK),
    ("EDESTADDRREQ", libc::EDESTADDRREQ), ("EMSGSIZE", libc::EMSGSIZE), ("EPROTOTYPE", libc::EPROTOTYPE),
    ("ENOPROTOOPT", libc::ENOPROTOOPT), ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("EOPNOTSUPP", libc::EOPNOTSUPP), ("EAFNOSUPPORT", libc::EAFNOSUPPORT), ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL), ("ENETDOWN", libc::ENETDOWN), ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNABORTED", libc::ECONNABORTED), ("ECONNRESET", libc::ECONNRESET), ("ENOBUFS", libc::ENOBUFS),
    ("EISCONN", libc::EISCONN), ("ENOTCONN", libc::ENOTCONN), ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECONNREFUSED", libc::ECONNREFUSED), ("EHOSTUNREACH", libc::EHOSTUNREACH), ("EALREADY", libc::EALREADY),
    ("EINPROGRESS", libc::EINPROGRESS), ("ECANCELED", libc::ECANCELED), ("EOWNERDEAD", libc::EOWNERDEAD),
    ("ENOTSUP", libc::ENOTSUP), ("EDQUOT", libc::EDQUOT),
];

pub fn errno_by_name(name: &str) -> Option<u16> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v as u16)
}

pub fn errno_name(e: u16) -> String {
    ERRNOS
        .iter()
        .find(|(_, v)| *v == e as i32)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::nr;

    #[test]
    fn builtin_profile_comes_from_the_table() {
        let c = Compiled::builtin();
        for n in [nr::PTRACE, nr::MOUNT, nr::KEXEC_LOAD, nr::BPF, nr::INIT_MODULE, nr::REBOOT, nr::SWAPON] {
            assert_eq!(c.rules[n], Rule::Deny(libc::EPERM as u16), "{}", NAMES[n]);
        }
        for n in [nr::READ, nr::WRITE, nr::CLONE3, nr::EXECVE, nr::GETPID] {
            assert_eq!(c.rules[n], Rule::Allow, "{}", NAMES[n]);
        }
    }

    #[test]
    fn rules_override_the_base_and_survive_the_compiled_form() {
        let c = Compiled::from_toml(
            "p",
            "[syscalls]\nptrace = \"allow\"\nmkdirat = \"deny:EACCES\"\nunshare = \"kill\"\nchdir = \"deny:13\"\n",
        )
        .unwrap();
        assert_eq!(c.rules[nr::PTRACE], Rule::Allow);
        assert_eq!(c.rules[nr::MKDIRAT], Rule::Deny(libc::EACCES as u16));
        assert_eq!(c.rules[nr::CHDIR], Rule::Deny(13));
        assert_eq!(c.rules[nr::UNSHARE], Rule::Kill);
        assert_eq!(c.rules[nr::MOUNT], Rule::Deny(libc::EPERM as u16), "the base profile still applies");
        let back = Compiled::from_text(&c.to_text()).unwrap();
        assert_eq!(back.rules, c.rules);
        let none = Compiled::from_toml("p", "base = \"none\"\n").unwrap();
        assert!(none.rules.iter().all(|r| *r == Rule::Allow));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| Compiled::from_toml("f.toml", t).unwrap_err().to_string();
        assert_eq!(err("[syscalls]\ngetpdi = \"deny\"\n"), "f.toml: unknown system call \"getpdi\" (did you mean \"getpid\"?)");
        assert!(err("[syscalls]\nzzzzzzzz = \"deny\"\n").ends_with("\"zzzzzzzz\""));
        assert!(err("[syscalls]\nread = \"block\"\n").contains("unknown rule \"block\""));
        assert!(err("[syscalls]\nread = \"deny:EWHAT\"\n").contains("unknown errno \"EWHAT\""));
        assert!(err("[syscalls]\nread = \"deny:0\"\n").contains("unknown errno"));
        assert!(err("[syscalls]\nrt_sigreturn = \"deny\"\n").contains("cannot be restricted"));
        assert!(err("[syscalls]\nexit_group = \"kill\"\n").contains("cannot be restricted"));
        assert!(err("bogus = 1\n").contains("not valid policy TOML"));
        let e = err("base = \"none\"\n\n[syscalls\n");
        assert!(e.starts_with("f.toml:3:"), "{e}");
        assert!(Compiled::from_text("39 maybe\n").is_err());
        assert!(Compiled::from_text("9999 kill\n").is_err());
    }
}
