//! The compiled policy: one rule per syscall number, and its text form.
//!
//! `shunt run` compiles a policy file (TOML, `shunt-policy`) into this form
//! and writes it to `<instance>/policy`; every process of the instance reads
//! it at installation, without a TOML parser. One line per restricted
//! number, `<nr> deny <errno>` or `<nr> kill`; `#` starts a comment.

use core::fmt;

use crate::syscalls::{DefaultRule, DEFAULT_POLICY, TABLE_LEN};

/// What the policy does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Allow,
    /// Refuse with this errno (1..4096).
    Deny(u16),
    /// End the instance (SIGSYS, like a seccomp kill).
    Kill,
}

/// A policy resolved to one rule per number.
#[derive(Clone, PartialEq, Eq)]
pub struct Rules {
    pub rules: [Rule; TABLE_LEN],
}

/// The first line of the compiled form.
pub const COMPILED_HEADER: &str = "# shunt compiled policy v1";

/// A mistake in the compiled form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompiledError {
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for CompiledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "compiled policy line {}: {}", self.line, self.why)
    }
}

impl Rules {
    /// No restrictions.
    pub const fn allow_all() -> Self {
        Rules { rules: [Rule::Allow; TABLE_LEN] }
    }

    /// The built-in FaaS profile (the `default` column of `syscalls.tbl`).
    pub fn builtin() -> Self {
        let mut c = Self::allow_all();
        for (rule, default) in c.rules.iter_mut().zip(DEFAULT_POLICY.iter()) {
            *rule = match *default {
                DefaultRule::Allow => Rule::Allow,
                DefaultRule::Kill => Rule::Kill,
                // build.rs accepts only names this table knows.
                DefaultRule::Deny(name) => Rule::Deny(crate::errno::by_name(name).unwrap_or(1)),
            };
        }
        c
    }

    /// Writes the compiled form.
    pub fn write_compiled(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(out, "{COMPILED_HEADER}")?;
        for (nr, rule) in self.rules.iter().enumerate() {
            match rule {
                Rule::Allow => {}
                Rule::Deny(e) => writeln!(out, "{nr} deny {e}")?,
                Rule::Kill => writeln!(out, "{nr} kill")?,
            }
        }
        Ok(())
    }

    /// Reads the compiled form.
    pub fn parse_compiled(text: &str) -> Result<Self, CompiledError> {
        let mut c = Self::allow_all();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &'static str| CompiledError { line: i + 1, why };
            let mut it = line.split_whitespace();
            let nr: usize = it
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&n| n < TABLE_LEN)
                .ok_or_else(|| bad("bad number"))?;
            c.rules[nr] = match (it.next(), it.next(), it.next()) {
                (Some("kill"), None, None) => Rule::Kill,
                (Some("deny"), Some(e), None) => {
                    Rule::Deny(e.parse().ok().filter(|&e| (1..4096).contains(&e)).ok_or_else(|| bad("bad errno"))?)
                }
                _ => return Err(bad("expected `<nr> deny <errno>` or `<nr> kill`")),
            };
        }
        Ok(c)
    }
}
