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
//! and hands the runtime the compiled form ([`Compiled::to_text`], the
//! format of `shunt_abi::policy`), which the runtime reads without a TOML
//! parser.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use shunt_abi::syscalls::{self, Route, NAMES, TABLE_LEN};

pub use shunt_abi::errno::ERRNOS;
pub use shunt_abi::policy::{Rule, Rules};

/// A policy resolved to one rule per number (the runtime's [`Rules`]).
#[derive(Clone, PartialEq, Eq)]
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
        Compiled { rules: Rules::builtin().rules }
    }

    /// The runtime's form.
    pub fn to_rules(&self) -> Rules {
        Rules { rules: self.rules }
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
                name: shortened(name),
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
        let mut s = String::new();
        self.to_rules().write_compiled(&mut s).expect("writing to a String cannot fail");
        s
    }

    /// Reads [`Compiled::to_text`] output.
    pub fn from_text(text: &str) -> Result<Self, PolicyError> {
        Rules::parse_compiled(text)
            .map(|r| Compiled { rules: r.rules })
            .map_err(|e| PolicyError::Compiled { line: e.line, why: e.why.to_string() })
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

/// A name from the file as an error shows it: at most 64 characters.
fn shortened(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
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
        // The distance is at least the difference in length: names that
        // differ by more are never close, and a huge name costs nothing.
        .filter(|(_, n)| name.len().abs_diff(n.len()) <= 2)
        .map(|(_, n)| (distance(name, n), *n))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

/// The value of an errno name.
pub fn errno_by_name(name: &str) -> Option<u16> {
    shunt_abi::errno::by_name(name)
}

/// The name of an errno value, or the number.
pub fn errno_name(e: u16) -> String {
    shunt_abi::errno::name_of(e).map(str::to_string).unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shunt_abi::syscalls::nr;

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

    #[test]
    fn a_huge_unknown_name_is_refused_at_once_and_shown_short() {
        // Before: an edit distance against every name, quadratic in the
        // name's length (a 100 KB name took 17 s; this one would take minutes).
        let name = "x".repeat(1 << 20);
        let e = Compiled::from_toml("f.toml", &format!("[syscalls]\n{name} = \"deny\"\n")).unwrap_err().to_string();
        assert!(e.len() < 200 && e.contains(&format!("\"{}…\"", "x".repeat(64))), "{e}");
    }
}
