//! A plan's key (`plan_key_of`) is read from the file's first bytes when
//! the file has a GNU build-id in a PT_NOTE, as every glibc build has: the
//! same key as the whole file gives, without reading it (`shunt run` keys
//! libc.so.6 and ld.so, 2 MB, at every start).

use std::path::Path;

use shunt_glibc_patch::{elf, machine_glibc, plan_key_of};

/// Bytes this thread has read (read/pread), from `/proc/thread-self/io`.
fn thread_rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).expect("rchar").trim().parse().unwrap()
}

#[test]
fn the_key_of_glibc_is_read_from_its_first_bytes() {
    for f in machine_glibc().unwrap() {
        let whole = std::fs::read(&f).unwrap();
        let expected = elf::plan_key(&whole);
        let before = thread_rchar();
        let key = plan_key_of(&f).unwrap();
        let read = thread_rchar() - before;
        assert_eq!(key, expected, "{}", f.display());
        assert!(!key.starts_with("sha256-"), "{}: glibc has a GNU build-id", f.display());
        // The header, the program headers and the notes, plus the one read
        // of /proc/thread-self/io.
        assert!(
            read < 16 << 10 && (read as usize) < whole.len() / 8,
            "{}: keying it read {read} bytes of {}",
            f.display(),
            whole.len()
        );
    }
}

#[test]
fn a_file_without_a_build_id_is_keyed_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nobuildid");
    let st = std::process::Command::new("objcopy")
        .args(["--remove-section", ".note.gnu.build-id", "/bin/true"])
        .arg(&out)
        .status()
        .expect("objcopy (binutils)");
    assert!(st.success());
    let data = std::fs::read(&out).unwrap();
    assert!(elf::build_id_in_file(&out).is_none());
    let key = plan_key_of(&out).unwrap();
    assert!(key.starts_with("sha256-"), "{key}");
    assert_eq!(key, elf::plan_key(&data));
    assert_eq!(key, elf::content_key(&data));
    // Not an ELF at all: no key from the first bytes, and the same error as before.
    let text = dir.path().join("text");
    std::fs::write(&text, b"just text").unwrap();
    assert!(elf::build_id_in_file(Path::new(&text)).is_none());
    assert!(plan_key_of(&text).is_err());
}
