//! The audit: every system call instruction of an ELF, where it is, and
//! whether shunt covers it.
//!
//! Coverage: glibc's libc.so.6 and ld.so are patched in memory from their
//! plan, so their sites are `patched`, `allowlisted` (with the reason) or
//! `uncovered` (no safe patch: the trap fallback catches them, ~2 µs each).
//! Every other object (a static Go, musl or glibc program, musl's `libc.so`,
//! a dynamic program's own text and libraries) is rewritten by `shunt run`
//! when it is loaded, from a plan made by the same planner: its sites are
//! `rewritten`, `allowlisted` or `uncovered` (with the planner's reason; the
//! trap fallback catches them), unless `--no-rewrite` is given.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::elf::{ElfError, Image};
use crate::planner::{analyse, Analysis, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// glibc's, patched in memory when `libshunt.so` loads.
    Patched,
    /// Another object's, rewritten when `shunt run` loads it.
    Rewritten,
    Allowlisted,
    Uncovered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Patched => "patched",
            Status::Rewritten => "rewritten",
            Status::Allowlisted => "allowlisted",
            Status::Uncovered => "uncovered",
        }
    }
}

/// One site as the audit reports it.
#[derive(Clone, Debug, Serialize)]
pub struct AuditSite {
    /// `0x…`, the instruction's address in the file's address space.
    pub address: String,
    pub section: String,
    /// `function+0xoff` from `.symtab`/`.dynsym` (or `fde_<start>` without one).
    pub symbol: String,
    pub instruction: String,
    /// The system call number, when it is a constant.
    pub nr: Option<u32>,
    pub syscall: Option<String>,
    pub status: Status,
    /// How it is patched, or why not.
    pub detail: String,
}

/// The audit of one file.
#[derive(Clone, Debug, Serialize)]
pub struct Audit {
    pub file: String,
    pub build_id: Option<String>,
    pub soname: Option<String>,
    /// `glibc` (patched in memory by `libshunt.so`) or `elf` (rewritten at
    /// load time by `shunt run`).
    pub mode: String,
    pub sites: Vec<AuditSite>,
    pub patched: usize,
    pub rewritten: usize,
    pub allowlisted: usize,
    pub uncovered: usize,
}

/// Whether `img` is one of the glibc objects shunt patches.
pub fn is_glibc(img: &Image) -> bool {
    img.soname.as_deref().is_some_and(|s| s.starts_with("libc.so.") || s.starts_with("ld-linux"))
}

/// Audits the ELF at `path` as a C/C++ (glibc-world) object.
pub fn audit_file(path: &Path) -> Result<Audit, ElfError> {
    let img = Image::load(path, true)?;
    Ok(audit_image(&img, &analyse(&img)))
}

pub fn audit_image(img: &Image, a: &Analysis) -> Audit {
    let glibc = is_glibc(img);
    let mut sites = Vec::new();
    for f in &a.found {
        let (status, detail) = match &f.verdict {
            Verdict::Leave(l) if f.not_code => (Status::Allowlisted, l.reason.clone()),
            Verdict::Patch { site, mode, displaced } => (
                if glibc { Status::Patched } else { Status::Rewritten },
                format!(
                    "{} {} B{}: {displaced}",
                    serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                    site.len,
                    if site.kind == shunt_patch::Kind::NoRedZone { ", no red zone" } else { "" }
                ),
            ),
            Verdict::Leave(l) => match l.status {
                shunt_patch::LeftStatus::Allowlisted => (Status::Allowlisted, l.reason.clone()),
                shunt_patch::LeftStatus::Uncovered => (Status::Uncovered, l.reason.clone()),
            },
        };
        sites.push(AuditSite {
            address: format!("{:#x}", f.addr),
            section: f.section.clone(),
            symbol: f.symbol.clone(),
            instruction: f.insn.as_str().to_string(),
            nr: f.nr,
            syscall: f.nr.map(|n| shunt_abi::syscalls::name_of(n as u64).to_string()),
            status,
            detail,
        });
    }
    let count = |s: Status| sites.iter().filter(|x| x.status == s).count();
    Audit {
        file: img.path.display().to_string(),
        build_id: img.build_id.clone(),
        soname: img.soname.clone(),
        mode: if glibc { "glibc" } else { "elf" }.to_string(),
        patched: count(Status::Patched),
        rewritten: count(Status::Rewritten),
        allowlisted: count(Status::Allowlisted),
        uncovered: count(Status::Uncovered),
        sites,
    }
}

impl Audit {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} ({}{})",
            self.file,
            if self.mode == "glibc" {
                "glibc, patched in memory by libshunt.so"
            } else {
                "rewritten at load time by shunt run, unless --no-rewrite"
            },
            self.build_id.as_ref().map(|b| format!(", build-id {b}")).unwrap_or_default()
        );
        if self.sites.is_empty() {
            let _ = writeln!(s, "no syscall, sysenter or int $0x80 instructions");
        } else {
            let w = self.sites.iter().map(|x| x.symbol.len()).max().unwrap_or(0).clamp(8, 48);
            let _ = writeln!(s, "{:<10} {:<w$} {:<10} {:<20} {:<11} detail", "address", "function", "insn", "syscall", "status");
            for x in &self.sites {
                let call = match (&x.syscall, x.nr) {
                    (Some(n), Some(nr)) => format!("{n} ({nr})"),
                    _ => "?".into(),
                };
                let _ = writeln!(
                    s,
                    "{:<10} {:<w$} {:<10} {:<20} {:<11} {}",
                    x.address.trim_start_matches("0x"),
                    x.symbol,
                    x.instruction,
                    call,
                    x.status.as_str(),
                    x.detail
                );
            }
        }
        let _ = writeln!(
            s,
            "{} sites: {} patched, {} rewritten, {} allowlisted, {} uncovered",
            self.sites.len(),
            self.patched,
            self.rewritten,
            self.allowlisted,
            self.uncovered
        );
        s
    }
}
