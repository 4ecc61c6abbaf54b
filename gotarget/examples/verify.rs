//! Prints the verifier's report for an ELF: `cargo run -p shunt-gotarget
//! --example verify -- FILE` (until `shunt audit` shows it).

fn main() -> anyhow::Result<()> {
    let Some(path) = std::env::args_os().nth(1) else { anyhow::bail!("usage: verify FILE") };
    let report = shunt_gotarget::verify_elf(std::path::Path::new(&path))?;
    for s in &report.sites {
        println!("{:#x}\t{:?}\t{}\t{}\t{}", s.address, s.status, s.function, s.instruction, s.reason);
    }
    let uncovered = report.uncovered().count();
    println!("{} sites, {uncovered} uncovered", report.sites.len());
    std::process::exit(i32::from(uncovered > 0));
}
