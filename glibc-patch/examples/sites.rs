//! Debug aid: `cargo run -p shunt-glibc-patch --example sites -- FILE [ADDR…]`
//! prints the FDEs, symbols and data targets around each hex ADDR.
use shunt_glibc_patch::Image;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let img = Image::load(std::path::Path::new(&args[0]), false)?;
    println!("{} fdes, {} symbols, {} data targets", img.fdes.len(), img.symbols.len(), img.data_targets.len());
    let targets = shunt_glibc_patch::planner::targets_of(&img);
    for a in &args[1..] {
        let a = u64::from_str_radix(a.trim_start_matches("0x"), 16)?;
        let near = |x: u64| x + 64 >= a && x <= a + 64;
        println!("{a:#x}: fde {:?}", img.fde_of(a).map(|(s, l)| (format!("{s:#x}"), l)));
        for f in img.fdes.iter().filter(|f| near(f.0)) {
            println!("  fde {:#x}+{}", f.0, f.1);
        }
        for s in img.symbols.iter().filter(|s| near(s.addr)) {
            println!("  sym {:#x} {}", s.addr, s.name);
        }
        for t in targets.iter().filter(|t| near(**t)) {
            println!("  target {t:#x}");
        }
        for t in img.data_targets.iter().filter(|t| near(**t)) {
            println!("  data target {t:#x}");
        }
    }
    Ok(())
}
