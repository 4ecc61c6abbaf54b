//! glibc-patch: produces a copy of the machine's glibc whose own `syscall`
//! sites call the shunt gate. Not built yet: see the issue "C/C++ functions:
//! a patched glibc". The preload library (`preload/`) is the runtime's shared
//! object for dynamically linked programs.
