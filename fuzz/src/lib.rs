//! The fuzz targets: every parser that reads input a user, a deployment or
//! a hostile file controls. Each target is a plain function from bytes, so
//! the same code runs under libFuzzer (`fuzz_targets/`, built by
//! `scripts/fuzz` with coverage instrumentation) and in the replay test
//! (`tests/replay.rs`), which feeds every committed seed and every input a
//! fuzzer once crashed on (`regressions/<target>/`) through it.
//!
//! A target fails by panicking (the libraries' own checks, or the
//! consistency checks here: what a parser accepts, its writer must write
//! back and the parser read again to the same value).

use std::path::Path;

/// Every target, by name (the names of the binaries and corpus folders).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("loader_elf", loader_elf),
    ("audit_elf", audit_elf),
    ("glibc_plan", glibc_plan),
    ("plan_file", plan_file),
    ("policy", policy),
    ("stack_file", stack_file),
    ("manager_request", manager_request),
    ("planner_code", planner_code),
];

/// The static loader's checks (`shunt load`, `shunt run` of a static
/// program): everything it maps and relocates later is checked here.
pub fn loader_elf(data: &[u8]) {
    let _ = shunt_loader::loader_runs(data);
    let _ = shunt_loader::Image::parse(Path::new("fuzz.elf"), data.to_vec());
}

/// `shunt audit` of an ELF: parse, analyse, audit, both renderings.
pub fn audit_elf(data: &[u8]) {
    let Ok(img) = shunt_glibc_patch::Image::parse(Path::new("fuzz.elf"), data.to_vec()) else { return };
    let analysis = shunt_glibc_patch::analyse(&img);
    let audit = shunt_glibc_patch::audit::audit_image(&img, &analysis);
    let _ = audit.to_json();
    let _ = audit.table();
}

/// `shunt glibc plan`: the planner's plan of an object must survive its
/// file format and pass the plan checker against the same object.
pub fn glibc_plan(data: &[u8]) {
    let Ok(img) = shunt_glibc_patch::Image::parse(Path::new("fuzz.so"), data.to_vec()) else { return };
    let analysis = shunt_glibc_patch::analyse(&img);
    let text = analysis.plan.to_text();
    let back = shunt_patch::Plan::parse(&text).unwrap_or_else(|e| panic!("the planner wrote a plan it cannot read: {e}\n{text}"));
    assert_eq!(back, analysis.plan, "a plan changed through its file");
    let _ = shunt_glibc_patch::check_plan(&img, &analysis.plan);
}

/// The plan-file parser, which every process under shunt runs on the plans
/// it finds: what it accepts, it writes back the same.
pub fn plan_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(plan) = shunt_patch::Plan::parse(text) else { return };
    for s in &plan.sites {
        let _ = s.check();
    }
    let again = shunt_patch::Plan::parse(&plan.to_text()).expect("a parsed plan's text parses");
    assert_eq!(again, plan);
}

/// The policy file (TOML), and the compiled form every process reads; an
/// accepted policy also builds its seccomp filter (or says why not).
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = shunt_policy::Compiled::from_text(text);
    let Ok(c) = shunt_policy::Compiled::from_toml("fuzz.toml", text) else { return };
    let back = shunt_policy::Compiled::from_text(&c.to_text()).expect("a compiled policy's text parses");
    assert_eq!(back.to_text(), c.to_text());
    let _ = c.describe();
    let _ = shunt_seccomp::Filter::new(&c);
}

/// The stack file of `shunt faas build/up` (the binary crate's module,
/// compiled in here: `toolchain` has no library).
#[allow(dead_code)]
#[path = "../../toolchain/src/faas/stack.rs"]
mod stack;

pub fn stack_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = stack::parse_stack(Path::new("stack.yml"), text);
}

/// What `shunt daemon` parses from a request: the route's function name,
/// a query string, and a deployment's JSON (checked into an instance plan
/// as a deploy is). The input is those three, split at NUL bytes.
pub fn manager_request(data: &[u8]) {
    use shunt_manager::names::{self, Key};
    let mut parts = data.splitn(3, |&b| b == 0);
    let (route, query, body) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
    let route = String::from_utf8_lossy(route);
    let _ = names::check("function", &route);
    if let Ok(k) = Key::from_route("function", &route) {
        let db = k.db_key();
        assert_eq!(Key::from_db_key(&db).map(|b| b.dotted()), Some(k.dotted()), "a key survives the database");
    }
    let _ = Key::from_db_key(&route);
    let query = String::from_utf8_lossy(query);
    let _ = serde_urlencoded::from_str::<shunt_manager::api::LogQuery>(&query);
    let _ = serde_urlencoded::from_str::<shunt_manager::api::NamespaceQuery>(&query);
    let Ok(d) = serde_json::from_slice::<shunt_manager::model::FunctionDeployment>(body) else { return };
    let Ok(key) = Key::new("function", &d.service, &d.namespace) else { return };
    let image = shunt_manager::images::ResolvedImage { entrypoint: vec!["fn".into()], ..Default::default() };
    let _ = shunt_manager::instances::plan::Plan::new(&key, &d, &image, 1, std::time::Duration::from_secs(60));
}

/// The planner over arbitrary code (no ELF around it: no symbols, no
/// function bounds, nothing but what it decodes), C and Go flavours, at a
/// fixed address and a low one: it must not panic, and its plan must pass
/// the plan checker — every changed byte lies in a run of whole
/// instructions it decoded, a `syscall` among them, no branch lands inside
/// a run (`shunt_glibc_patch::check_plan`) — and survive the file format.
/// The runtime's first-trap matcher (`shunt_core::lazy::match_site`) runs
/// on every `syscall` of the same bytes, with the number its immediate
/// would give: a site it accepts must decode, from its start, as one
/// `mov` of that number into `eax`/`rax` and then the `syscall`.
pub fn planner_code(data: &[u8]) {
    use iced_x86::{Code, Decoder, DecoderOptions};
    use shunt_glibc_patch::{elf::Flavour, Image};
    let Some((&mode, code)) = data.split_first() else { return };
    let flavour = if mode & 1 == 0 { Flavour::C } else { Flavour::Go };
    let addr = if mode & 2 == 0 { 0x40_0000 } else { 0x1000 };
    let img = Image::from_code(addr, code.to_vec(), flavour);
    let a = shunt_glibc_patch::analyse(&img);
    shunt_glibc_patch::check_plan(&img, &a.plan).unwrap_or_else(|e| panic!("{e}: {code:02x?}"));
    let text = a.plan.to_text();
    let back = shunt_patch::Plan::parse(&text).unwrap_or_else(|e| panic!("the planner wrote a plan it cannot read: {e}\n{text}"));
    assert_eq!(back, a.plan, "a plan changed through its file");

    for end in 10..=code.len() {
        let before: [u8; 10] = code[end - 10..end].try_into().expect("10 bytes");
        if before[8..] != [0x0f, 0x05] {
            continue;
        }
        let rip = addr + end as u64;
        let imm = u32::from_le_bytes(before[4..8].try_into().expect("4 bytes"));
        for rax in [imm as u64, imm as i32 as i64 as u64] {
            let Some(site) = shunt_core::lazy::match_site(rip, &before, rax) else { continue };
            let off = (site.at - addr) as usize;
            let mut d = Decoder::with_ip(64, &code[off..end], site.at, DecoderOptions::NONE);
            let mov = d.decode();
            let sys = d.decode();
            assert!(
                matches!(mov.code(), Code::Mov_r32_imm32 | Code::Mov_rm64_imm32)
                    && mov.op0_register().full_register() == iced_x86::Register::RAX
                    && mov.len() == site.pre_len
                    && sys.code() == Code::Syscall
                    && sys.next_ip() == rip,
                "the first-trap matcher took {:02x?} for mov $nr,%eax/%rax; syscall",
                &code[off..end]
            );
        }
    }
}
