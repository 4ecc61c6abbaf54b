//! What patching did to the objects of a process (`SHUNT_DEBUG=1` prints it).

use std::fmt;
use std::path::PathBuf;


/// What patching did to one object.
#[derive(Debug, Default, Clone)]
pub struct ObjectReport {
    pub name: String,
    pub build_id: String,
    pub plan: PathBuf,
    /// Sites patched.
    pub patched: usize,
    /// Sites not patched, by reason (plan `leave` lines, or why the whole
    /// plan was refused).
    pub skipped: Vec<(String, usize)>,
    /// Bytes of trampolines (their mapping is rounded up to pages).
    pub trampoline_bytes: usize,
    /// Text pages written (each becomes a private copy-on-write page).
    pub cow_pages: usize,
    /// Time spent reading and parsing the plan, and applying it.
    pub parse_micros: u64,
    pub apply_micros: u64,
}

impl ObjectReport {
    pub fn skipped_total(&self) -> usize {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
    pub fn skip(&mut self, reason: String, n: usize) {
        if n == 0 {
            return;
        }
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, k)) => *k += n,
            None => self.skipped.push((reason, n)),
        }
    }
}

/// What patching did in this process.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Objects for which a plan was found.
    pub objects: Vec<ObjectReport>,
    /// glibc objects loaded without a plan (`name (build-id)`).
    pub missing: Vec<String>,
    pub patched: usize,
    pub skipped: usize,
    /// Why nothing was patched at all, if so.
    pub refused: Option<String>,
    /// Time spent, from the first loaded-object lookup to the last mprotect.
    pub micros: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.objects.is_empty() {
            // Nothing to patch: one line.
            if let Some(r) = &self.refused {
                return write!(f, "glibc not patched: {r}");
            }
            return write!(
                f,
                "glibc not patched: no plan for {}; its syscalls are left to the trap fallback \
                 (`shunt glibc plan` makes plans)",
                if self.missing.is_empty() { "any loaded object".to_string() } else { self.missing.join(", ") }
            );
        }
        write!(f, "glibc patch: {} sites patched, {} skipped, {} µs", self.patched, self.skipped, self.micros)?;
        for o in &self.objects {
            write!(
                f,
                "\n  {} ({}): {} patched, {} skipped, {} B of trampolines, {} text pages copied, \
                 parse {} µs + apply {} µs; plan {}",
                o.name,
                o.build_id,
                o.patched,
                o.skipped_total(),
                o.trampoline_bytes,
                o.cow_pages,
                o.parse_micros,
                o.apply_micros,
                o.plan.display()
            )?;
            for (why, n) in &o.skipped {
                write!(f, "\n    skipped {n}: {why}")?;
            }
        }
        for m in &self.missing {
            write!(f, "\n  {m}: no plan (left to the trap fallback; `shunt glibc plan` makes one)")?;
        }
        Ok(())
    }
}

