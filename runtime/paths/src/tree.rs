//! Copying a directory tree: the one copy every part of shunt uses (the
//! shrink-wrapped build contexts of `shunt faas`, the benchmarks' stacks,
//! the Go target's rewritten module copies, the tests' template copies).

use std::io;
use std::path::Path;

/// Copies the tree `from` into `to` (created, and merged with what is
/// there): directories and regular files, symbolic links kept as links
/// (never followed); other kinds of file are left out, and so are the
/// top-level entries named in `skip_top`. An error names the path that
/// failed.
pub fn copy_tree(from: &Path, to: &Path, skip_top: &[&str]) -> io::Result<()> {
    copy(from, to, skip_top, false)
}

/// [`copy_tree`], the copied files made writable (mode 0644: the Go module
/// cache's files are read-only, and the copy is edited).
pub fn copy_tree_writable(from: &Path, to: &Path) -> io::Result<()> {
    copy(from, to, &[], true)
}

fn copy(from: &Path, to: &Path, skip_top: &[&str], writable: bool) -> io::Result<()> {
    let ctx = |what: &str, p: &Path| {
        let p = p.display().to_string();
        let what = what.to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("cannot {what} {p}: {e}"))
    };
    std::fs::create_dir_all(to).map_err(ctx("create", to))?;
    for e in std::fs::read_dir(from).map_err(ctx("read", from))? {
        let e = e.map_err(ctx("read", from))?;
        let name = e.file_name();
        if skip_top.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let ty = e.file_type().map_err(ctx("read", &src))?;
        if ty.is_dir() {
            copy(&src, &dst, &[], writable)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&src).map_err(ctx("read", &src))?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(target, &dst).map_err(ctx("create", &dst))?;
        } else if ty.is_file() {
            std::fs::copy(&src, &dst).map_err(ctx("copy", &src))?;
            if writable {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).map_err(ctx("chmod", &dst))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_files_dirs_and_links_and_skips_top_names() {
        let d = std::env::temp_dir().join(format!("shunt-paths-tree-{}", std::process::id()));
        let (a, b) = (d.join("a"), d.join("b"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(a.join("sub/build")).unwrap();
        std::fs::write(a.join("sub/f"), b"x").unwrap();
        std::fs::write(a.join("skip"), b"y").unwrap();
        std::os::unix::fs::symlink("sub/f", a.join("link")).unwrap();
        copy_tree(&a, &b, &["skip"]).unwrap();
        assert_eq!(std::fs::read(b.join("sub/f")).unwrap(), b"x");
        assert!(b.join("sub/build").is_dir(), "only top-level names are skipped");
        assert!(!b.join("skip").exists());
        assert_eq!(std::fs::read_link(b.join("link")).unwrap(), Path::new("sub/f"));
        let err = copy_tree(&d.join("missing"), &b, &[]).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::set_permissions(b.join("sub/f"), std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        copy_tree_writable(&b, &d.join("c")).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d.join("c/sub/f")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o644);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
