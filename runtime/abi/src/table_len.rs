/// Slots of the syscall table: every number up to 510, and the last slot,
/// which counts numbers outside the table. Read by `build.rs` too.
pub const TABLE_LEN: usize = 512;
