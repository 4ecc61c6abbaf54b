//! How a call entered the runtime, how it was answered, and the classes of
//! the stats report derived from the two.
//!
//! A call is counted exactly once, in one (entry, answer) *cell*; the five
//! report classes are sums of cells: `redirected`/`trapped` sum a row (the
//! entry), `emulated`/`passthrough`/`denied` a column (the answer). So
//! `emulated + passthrough + denied == redirected + trapped`, per syscall
//! and in total, by construction.

/// How a call entered the runtime.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// By the call gate (a patched site).
    Gate = 0,
    /// By the trap fallback.
    Trap = 1,
}

/// How the runtime answered a call. (The syscall table's `class` column is
/// the answer a call gets when the policy allows it: emulated or
/// passthrough.)
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Answered in user space.
    Emulated = 0,
    /// Forwarded to the kernel.
    Passthrough = 1,
    /// Refused by the policy.
    Denied = 2,
}

/// The classes of the stats report, in the report's order of columns.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Redirected = 0,
    Trapped = 1,
    Emulated = 2,
    Passthrough = 3,
    Denied = 4,
}

impl Class {
    /// Every class, in the order the report lists them.
    pub const ALL: [Class; 5] = [Class::Redirected, Class::Trapped, Class::Emulated, Class::Passthrough, Class::Denied];
    /// The order of the members of the report's JSON objects.
    pub const JSON_ORDER: [Class; 5] =
        [Class::Redirected, Class::Emulated, Class::Passthrough, Class::Trapped, Class::Denied];

    /// The report's name of the class.
    pub const fn name(self) -> &'static str {
        match self {
            Class::Redirected => "redirected",
            Class::Trapped => "trapped",
            Class::Emulated => "emulated",
            Class::Passthrough => "passthrough",
            Class::Denied => "denied",
        }
    }

    /// Whether cell (entry, answer) counts towards this class.
    pub fn includes(self, entry: Entry, answer: Answer) -> bool {
        match self {
            Class::Redirected => entry == Entry::Gate,
            Class::Trapped => entry == Entry::Trap,
            Class::Emulated => answer == Answer::Emulated,
            Class::Passthrough => answer == Answer::Passthrough,
            Class::Denied => answer == Answer::Denied,
        }
    }
}

/// Counter cells per syscall: one per (entry, answer) pair, at index
/// `entry * 3 + answer` ([`cell_index`]).
pub const CELLS: usize = 6;

/// Every cell, in layout order (`cell = entry * 3 + answer`).
pub const ALL_CELLS: [(Entry, Answer); CELLS] = [
    (Entry::Gate, Answer::Emulated),
    (Entry::Gate, Answer::Passthrough),
    (Entry::Gate, Answer::Denied),
    (Entry::Trap, Answer::Emulated),
    (Entry::Trap, Answer::Passthrough),
    (Entry::Trap, Answer::Denied),
];

/// The index of cell (entry, answer).
pub const fn cell_index(entry: Entry, answer: Answer) -> usize {
    entry as usize * 3 + answer as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_in_layout_order() {
        for (i, (e, a)) in ALL_CELLS.iter().enumerate() {
            assert_eq!(cell_index(*e, *a), i);
        }
    }

    #[test]
    fn every_cell_is_one_entry_and_one_answer() {
        for (e, a) in ALL_CELLS {
            let entries = [Class::Redirected, Class::Trapped].iter().filter(|c| c.includes(e, a)).count();
            let answers =
                [Class::Emulated, Class::Passthrough, Class::Denied].iter().filter(|c| c.includes(e, a)).count();
            assert_eq!((entries, answers), (1, 1));
        }
    }
}
