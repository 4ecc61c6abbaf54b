//! This process's mount table, from `/proc/self/mountinfo`: the one reader
//! of it (the supervisor finds the cgroup hierarchies with it, the
//! containerd driver the mounts a dead containerd left).

use std::path::PathBuf;

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The directory of the filesystem that is the root of this mount.
    pub root: String,
    /// The filesystem type (`cgroup2`, `overlay`, …).
    pub fstype: String,
    /// The superblock's options (`rw,memory`, …).
    pub super_options: String,
}

/// Every mount of this process's namespace; none when the file cannot be read.
pub fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse(&t)).unwrap_or_default()
}

/// The mounts listed in `text` (mountinfo's format); lines that are not
/// one are left out.
pub fn parse(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mountpoint options [optional…] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        out.push(Mount {
            mount_point: PathBuf::from(unescape(l[4])),
            root: unescape(l[3]),
            fstype: r[0].to_string(),
            super_options: r[2].to_string(),
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }

    #[test]
    fn lines_with_optional_fields() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n\
                    41 30 0:35 /sub /mnt/a\\040b rw master:1 shared:2 - cgroup cgroup rw,memory\n\
                    not a mount line\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], Mount { mount_point: "/sys/fs/cgroup".into(), root: "/".into(), fstype: "cgroup2".into(), super_options: "rw,nsdelegate".into() });
        assert_eq!((m[1].mount_point.to_str(), m[1].root.as_str(), m[1].super_options.as_str()), (Some("/mnt/a b"), "/sub", "rw,memory"));
    }

    #[test]
    fn this_process_has_a_root_mount() {
        assert!(mounts().iter().any(|m| m.mount_point == std::path::Path::new("/")));
    }
}
