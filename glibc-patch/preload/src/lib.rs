//! `libshunt.so`: the shunt runtime as a shared library.
//!
//! Loaded with `LD_PRELOAD` by `shunt run` (or linked by `shunt cc`), its
//! constructor installs the runtime in the program's process before `main`:
//! it reads the instance from the environment (`SHUNT_INSTANCE`, set by
//! `shunt run`; or `SHUNT_STATS=FILE` for a stand-alone instance whose root
//! process writes the report), attaches the main thread and arms the trap
//! fallback (unless `SHUNT_TRAP=0`).
//!
//! If the runtime cannot start, the program does not run: it exits with 127
//! and one line on stderr, rather than running unobserved.

use std::os::raw::c_char;

extern "C" fn shunt_init(_argc: i32, _argv: *const *const c_char, _envp: *const *const c_char) {
    let opts = match shunt_runtime::instance::options_from_env() {
        Ok(o) => o,
        Err(e) => fail(&e),
    };
    if opts.report_to.is_some() {
        if let Some(dir) = &opts.instance_dir {
            // Children of a stand-alone instance join it.
            std::env::set_var("SHUNT_INSTANCE", dir);
        }
    }
    if let Err(e) = shunt_runtime::install(opts) {
        fail(&format!("cannot start the runtime: {e}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("shunt: {msg}");
    std::process::exit(127)
}

#[used]
#[link_section = ".init_array"]
static SHUNT_INIT: extern "C" fn(i32, *const *const c_char, *const *const c_char) = shunt_init;

/// The address of the call gate, for programs that call it directly.
#[no_mangle]
pub extern "C" fn shunt_gate_address() -> usize {
    shunt_runtime::gate::gate_address()
}
