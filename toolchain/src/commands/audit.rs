//! `shunt audit FILE [--json]`: every syscall instruction of an ELF and
//! whether shunt covers it. Exits 1 when a site is uncovered, 2 on bad input.
//!
//! The mode is chosen per file ([`detect_mode`]): C/C++ objects (glibc and
//! everything else) are audited by `shunt_glibc_patch::audit`; Go binaries
//! built with `shunt go build` go to [`audit_go`], the Go target's verifier.
//! A Go binary built otherwise (plain `go build`) is audited like any other
//! object: what the load-time rewrite of `shunt run` does to each site.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use shunt_glibc_patch as gp;

#[derive(Args)]
pub struct AuditArgs {
    /// The ELF executable or shared object.
    pub file: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Which auditor handles a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    /// A Go binary (`.go.buildinfo` or a Go build-id note).
    Go,
    /// Anything else: C/C++ and glibc itself.
    Elf,
}

/// Decides the mode from the file's bytes (cheap checks only; the chosen
/// auditor reports malformed input).
pub fn detect_mode(data: &[u8]) -> Mode {
    use object::{Object, ObjectSection};
    match object::File::parse(data) {
        Ok(f) if f.section_by_name(".go.buildinfo").is_some() || f.section_by_name(".note.go.buildid").is_some() => {
            Mode::Go
        }
        Ok(f) if f.sections().any(|s| s.name().is_ok_and(|n| n == ".gopclntab")) => Mode::Go,
        _ => Mode::Elf,
    }
}

/// A Go binary built with the Go target: its verifier
/// (`shunt_gotarget::verify_elf`) decides, by function, which raw SYSCALLs
/// are the target's guarded fallbacks and which bypass the gate. `None`
/// for a Go binary the target did not build.
fn audit_go(file: &Path, json: bool) -> Option<Result<ExitCode>> {
    let report = match shunt_gotarget::verify_elf(file) {
        Ok(r) if !r.shunt_target => return None,
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    let uncovered = report.uncovered().count();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return Some(Err(e.into())),
        }
    } else {
        println!(
            "{}: Go binary, {} the shunt Go target; {} syscall site(s)",
            file.display(),
            if report.shunt_target { "built with" } else { "NOT built with" },
            report.sites.len()
        );
        println!("{:<18} {:<12} {:<44} {}", "address", "status", "function", "reason");
        for s in &report.sites {
            let status = format!("{:?}", s.status).to_lowercase();
            println!("{:<#18x} {:<12} {:<44} {}", s.address, status, s.function, s.reason);
        }
        println!("{uncovered} uncovered");
    }
    Some(Ok(if uncovered > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }))
}

pub fn run(a: AuditArgs) -> Result<ExitCode> {
    // Reading errors and non-ELF input are reported by the ELF auditor below.
    if let Ok(data) = shunt_userfile::read(&a.file, shunt_userfile::limit::ELF) {
        if detect_mode(&data) == Mode::Go {
            if let Some(r) = audit_go(&a.file, a.json) {
                return r;
            }
        }
    }
    let audit = gp::audit_file(&a.file)?;
    if a.json {
        print!("{}", audit.to_json());
    } else {
        print!("{}", audit.table());
    }
    Ok(if audit.uncovered > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
