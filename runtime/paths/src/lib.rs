//! Where shunt keeps things on disk: one cache root, shared by the glibc
//! patch plans (read by `libshunt.so` in every process) and the Go target's
//! overlays (written by `shunt go`); the one tree copy ([`tree`]); and the
//! one reader of the mount table ([`mountinfo`]).

pub mod mountinfo;
pub mod tree;

pub use tree::{copy_tree, copy_tree_writable};

use std::ffi::OsString;
use std::path::PathBuf;

/// `$SHUNT_CACHE`, else `$XDG_CACHE_HOME/shunt`, else `~/.cache/shunt`;
/// `None` when none of the three is set.
pub fn cache_root() -> Option<PathBuf> {
    cache_root_from(|k| std::env::var_os(k))
}

/// [`cache_root`] with the environment given as a function (for tests, and
/// for callers that read another process's environment).
pub fn cache_root_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("SHUNT_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("shunt")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("shunt")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn the_first_setting_wins() {
        let all = [("SHUNT_CACHE", "/s"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(cache_root_from(env(&all)), Some(PathBuf::from("/s")));
        assert_eq!(cache_root_from(env(&all[1..])), Some(PathBuf::from("/x/shunt")));
        assert_eq!(cache_root_from(env(&all[2..])), Some(PathBuf::from("/h/.cache/shunt")));
        assert_eq!(cache_root_from(env(&[("SHUNT_CACHE", ""), ("HOME", "/h")])), Some(PathBuf::from("/h/.cache/shunt")));
        assert_eq!(cache_root_from(env(&[])), None);
    }
}
