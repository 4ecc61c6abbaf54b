//! The manifest: what the overlay rewrote, file by file, function by
//! function, site by site. Written next to the overlay as `manifest.json`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// `shunt-gotarget <crate version> (rules <n>)`.
    pub generator: String,
    /// `go env GOVERSION`.
    pub go_version: String,
    /// `go env GOROOT`.
    pub goroot: String,
    /// Files with SYSCALL sites, in `go list` order. Paths are relative to
    /// `GOROOT/src` (std) or to the module root (`golang.org/x/sys@v…/…`).
    pub files: Vec<FileEntry>,
    /// The entry-point hook that reads AT_SHUNT_ENTRY.
    pub entry: Option<EntryHook>,
    /// Files the overlay adds (relative to `GOROOT/src`).
    pub added: Vec<String>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub package: String,
    pub functions: Vec<FunctionEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FunctionEntry {
    /// Full symbol, e.g. `runtime.clone`.
    pub name: String,
    /// Line of its TEXT directive.
    pub line: usize,
    pub sites: Vec<SiteEntry>,
    /// Why, for functions whose rule is not a plain call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteEntry {
    pub line: usize,
    /// `call`, `inline_fallback`, `tail_jump` or `keep`.
    pub rewrite: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryHook {
    pub path: String,
    pub function: String,
    pub line: usize,
    pub rewrite: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    pub files: usize,
    pub functions: usize,
    pub sites: usize,
    pub call: usize,
    pub inline_fallback: usize,
    pub tail_jump: usize,
    pub keep: usize,
}

impl Totals {
    pub fn of(files: &[FileEntry]) -> Totals {
        let mut t = Totals { files: files.len(), ..Totals::default() };
        for f in files {
            t.functions += f.functions.len();
            for s in f.functions.iter().flat_map(|f| &f.sites) {
                t.sites += 1;
                match s.rewrite.as_str() {
                    "call" => t.call += 1,
                    "inline_fallback" => t.inline_fallback += 1,
                    "tail_jump" => t.tail_jump += 1,
                    _ => t.keep += 1,
                }
            }
        }
        t
    }

    /// Sites that reach the gate when one is present.
    pub fn redirected(&self) -> usize {
        self.call + self.inline_fallback + self.tail_jump
    }
}
