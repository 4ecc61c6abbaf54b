//! Names of functions, namespaces and secrets, checked before anything
//! touches disk.
//!
//! Every name becomes a path component in the state directory (log files,
//! secret files, instance directories) and a key in the database, so it is
//! held to the rule OpenFaaS providers apply: an RFC 1123 DNS label — at
//! most 63 characters, lowercase ASCII letters, digits and `-`, starting and
//! ending with a letter or digit. That excludes `/`, `.`, `..`, NUL and
//! anything a shell or a path could misread.

use std::fmt;

/// The namespace of a function or secret that names none.
pub const DEFAULT_NAMESPACE: &str = "openfaas-fn";

/// The longest name allowed (an RFC 1123 label).
pub const MAX_LEN: usize = 63;

/// Why a name was refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName {
    pub what: &'static str,
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} name {:?}: {} (use at most {MAX_LEN} lowercase letters, digits and '-', starting and ending with a letter or digit)",
            self.what,
            self.name.escape_debug().to_string(),
            self.reason
        )
    }
}

impl std::error::Error for BadName {}

/// Checks `name` against the RFC 1123 label rule.
pub fn check(what: &'static str, name: &str) -> Result<(), BadName> {
    let bad = |reason| Err(BadName { what, name: name.chars().take(80).collect(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_LEN {
        return bad("it is longer than 63 characters");
    }
    if name.contains('\0') {
        return bad("it contains a NUL byte");
    }
    if name.contains('/') {
        return bad("it contains '/'");
    }
    if name.contains('.') {
        return bad("it contains '.'");
    }
    let bytes = name.as_bytes();
    if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
        return bad("it has characters other than lowercase letters, digits and '-'");
    }
    if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return bad("it starts or ends with '-'");
    }
    Ok(())
}

/// A function (or secret) name with its namespace, both checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// `name` in `namespace` (the default namespace when empty).
    pub fn new(what: &'static str, name: &str, namespace: &str) -> Result<Key, BadName> {
        check(what, name)?;
        let namespace = if namespace.is_empty() { DEFAULT_NAMESPACE } else { namespace };
        check("namespace", namespace)?;
        Ok(Key { namespace: namespace.to_string(), name: name.to_string() })
    }

    /// `name` or `name.namespace`, as the gateway's routes write it.
    pub fn from_route(what: &'static str, s: &str) -> Result<Key, BadName> {
        match s.split_once('.') {
            Some((name, ns)) => Key::new(what, name, ns),
            None => Key::new(what, s, ""),
        }
    }

    /// `name.namespace`: the `function_name` label of the gateway's metrics.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    /// The database key (`namespace/name`; both parts are free of `/`).
    pub fn db_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn from_db_key(k: &str) -> Option<Key> {
        let (ns, name) = k.split_once('/')?;
        Key::new("function", name, ns).ok()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels() {
        for ok in ["a", "aes", "aes-go", "0x", "a1-b2", &"a".repeat(63)] {
            assert_eq!(check("function", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("a/b", "'/'"),
            ("..", "'.'"),
            ("a.b", "'.'"),
            ("a\0b", "NUL"),
            ("Aes", "characters"),
            ("a_b", "characters"),
            ("-a", "starts or ends"),
            ("a-", "starts or ends"),
            ("é", "characters"),
        ];
        for (name, why) in cases {
            let e = check("function", name).expect_err(name);
            assert!(e.to_string().contains(why), "{name}: {e}");
        }
        let long = "a".repeat(64);
        assert!(check("function", &long).unwrap_err().to_string().contains("longer than 63"));
    }

    #[test]
    fn routes_name_and_namespace() {
        let k = Key::from_route("function", "aes.dev").unwrap();
        assert_eq!((k.name.as_str(), k.namespace.as_str()), ("aes", "dev"));
        let k = Key::from_route("function", "aes").unwrap();
        assert_eq!(k.namespace, DEFAULT_NAMESPACE);
        // The certifier calls /function/NAME. when it has no namespace.
        let k = Key::from_route("function", "aes.").unwrap();
        assert_eq!(k.namespace, DEFAULT_NAMESPACE);
        assert!(Key::from_route("function", "a.b.c").is_err());
        assert_eq!(Key::from_db_key(&k.db_key()), Some(k));
    }
}
