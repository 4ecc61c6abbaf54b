//! The stats report's JSON, written without allocating.
//!
//! The stand-alone root process writes its instance's report from inside
//! its `exit_group` (perhaps from a signal handler that interrupted
//! malloc), so this writer only formats into a `fmt::Write`. The report's
//! schema is `shunt-stats`'s `Report`; its tests check that what this
//! writer produces reads back into that type.
//!
//! `{"redirected": N, "emulated": N, "passthrough": N, "trapped": N,
//!   "denied": N, "processes": N, "by_syscall": {"getpid": {...}, ...}}`

use core::fmt::{self, Write};

use crate::class::Class;
use crate::segment::Totals;
use crate::syscalls::{name_of, TABLE_LEN};

/// Writes the report of `t`.
pub fn write_json(t: &Totals, out: &mut dyn Write) -> fmt::Result {
    out.write_str("{")?;
    for c in Class::JSON_ORDER {
        write!(out, "\"{}\": {}, ", c.name(), t.total(c))?;
    }
    write!(out, "\"processes\": {}, ", t.processes)?;
    out.write_str("\"by_syscall\": {")?;
    let mut first = true;
    for nr in 0..TABLE_LEN {
        if Class::JSON_ORDER.iter().all(|&c| t.get(c, nr) == 0) {
            continue;
        }
        if !first {
            out.write_str(", ")?;
        }
        first = false;
        write!(out, "\"{}\": {{", name_of(nr as u64))?;
        for (i, &c) in Class::JSON_ORDER.iter().enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            write!(out, "\"{}\": {}", c.name(), t.get(c, nr))?;
        }
        out.write_str("}")?;
    }
    out.write_str("}")?;
    if t.has_transport() {
        let [c, k, b] = t.transport;
        write!(out, ", \"transport\": {{\"shm_connections\": {c}, \"kernel_connections\": {k}, \"shm_bytes\": {b}}}")?;
    }
    if t.has_waits() {
        let [s, p, ns, bo, lg, nt, mi, y, pe, tk, ts, nl, np, nr] = t.waits;
        write!(out, ", \"waits\": {{\"spun\": {s}, \"parked\": {p}, \"spin_ns\": {ns}, ")?;
        write!(out, "\"park_backoff\": {bo}, \"park_long_gap\": {lg}, \"park_no_token\": {nt}, \"park_missed\": {mi}, \"park_yielded\": {y}, ")?;
        write!(out, "\"park_preempted\": {pe}, \"took_token\": {tk}, \"took_stale\": {ts}, ")?;
        write!(out, "\"no_token_low\": {nl}, \"no_token_ring_poll\": {np}, \"no_token_ring\": {nr}}}")?;
    }
    if t.rewritten != 0 {
        write!(out, ", \"rewritten_at_runtime\": {}", t.rewritten)?;
    }
    out.write_str("}\n")
}
