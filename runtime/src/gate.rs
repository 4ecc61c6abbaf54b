//! The call gate: the one entry every redirected system call goes through.
//!
//! # Register contract (`shunt_gate`)
//!
//! - In: `rax` = number; `rdi rsi rdx r10 r8 r9` = arguments; `[rsp]` = return
//!   address (the gate is entered with `call`, where code had `syscall`).
//! - Out: `rax` = result or `-errno`. Only `rcx`, `r11` and the flags change.
//!   Every other general register, xmm0–15 and every wider vector register are
//!   as they were: the runtime saves xmm0–15 and uses nothing wider (see
//!   `mem.rs`); `X15 = 0` and `R14 = g` of Go therefore survive.
//! - The gate never writes below the caller's `rsp` (Go guarantees little stack
//!   at a syscall site): it switches to the thread's runtime stack before its
//!   first store, or forwards the call without touching memory at all.
//! - It never touches `FS`. It finds the thread's [`ThreadBlock`] through `GS`,
//!   which must be set (`thread::attach_current`, or the clone path) before the
//!   thread's first entry.
//! - It is re-entrant: a signal handler may enter it while its thread is inside
//!   it. Entries nest on the runtime stack as described below.
//!
//! # Paths
//!
//! 1. Kernel route (most calls): count, `syscall`, `ret`. No stack, no Rust.
//! 2. Full path: switch stacks, save a [`GateFrame`], call
//!    [`crate::dispatch::shunt_dispatch`], restore, return.
//! 3. `vfork`: register-only (parent and child share the stack); the return
//!    address is parked in the thread block, which both see.
//! 4. `exit`: register-only (the thread's stack may already be freed); frees
//!    the slot with one `lock btr` and exits. (Counted by whoever jumps to it.)
//! 5. `rt_sigreturn`: a real `rt_sigreturn` at the caller's frame.
//! 6. `getpid`/`gettid`: the cached id, read and returned in a few
//!    instructions (the most frequent emulated calls; no vector register or
//!    stack is touched, so nothing needs saving).
//!
//! # Choosing the runtime stack of a nested entry
//!
//! `depth` counts the entries active on the thread. Entry *n* (0-based) uses:
//! - depth 0: the top of the runtime stack;
//! - caller's rsp already inside the runtime stack (a signal handler running on
//!   it, delivered while an outer entry blocked in the kernel): just below the
//!   caller's rsp, past a 128-byte red zone, since everything live is above;
//! - otherwise (a handler on an alternate stack): the top of nest slot *n*,
//!   `top - n * NEST_SLOT`. Invariant: every entry, together with the signal
//!   frames and handlers that land on the runtime stack while it blocks, fits
//!   in one `NEST_SLOT` (32 KiB); more than `MAX_DEPTH` levels, or running into
//!   the emergency area, reports an overflow and kills the process.
//!
//! Incrementing `depth` and then reading it is safe against signals without an
//! atomic read-modify-write: a nested entry always completes (restoring
//! `depth`) before the interrupted one continues.
//!
//! The trap fallback's entry (`shunt_trap_resume`) shares the full path: the
//! SIGSYS handler builds the frame (see `trap.rs`), and the return jumps to the
//! trapped instruction's successor instead of `ret`.

use core::arch::global_asm;

use crate::layout::{self, off, Answer, Entry, ThreadBlock};
use crate::syscalls::{INVALID_SLOT, TABLE_LEN};

/// Private auxiliary-vector tag with which a loader (`shunt run` of a static
/// Go binary) hands a program the gate's address. Unknown tags are ignored by
/// every libc and by Go, so a program that never reads it loses nothing.
pub const AT_SHUNT_ENTRY: u64 = 0x5348_554e; // "SHUN"

/// Value a handler returns to ask the gate to perform the call as `vfork`
/// (register-only, on the caller's stack). Not a possible syscall result.
pub const VFORK_STYLE: i64 = -4096;

/// Actions the gate reads from `dispatch::ACTIONS`. Every action from
/// `ACT_RUST` up (including the policy's deny and kill) takes the full path.
pub const ACT_KERNEL: u8 = 0;
pub const ACT_VFORK: u8 = 1;
pub const ACT_EXIT: u8 = 2;
pub const ACT_SIGRETURN: u8 = 3;
/// `getpid`/`gettid` answered in the gate itself, without a stack switch,
/// when the cached value may be used (else they take the full path).
pub const ACT_GETPID: u8 = 4;
pub const ACT_GETTID: u8 = 5;
pub const ACT_RUST: u8 = 6;

extern "C" {
    /// The call gate. Not callable from Rust: it takes the SYSCALL convention.
    pub fn shunt_gate();
    /// Register-only thread exit, shared by both entries.
    pub fn shunt_exit_path();
    /// Trap fallback continuation: `rsp` points at a prepared [`GateFrame`].
    pub fn shunt_trap_resume();
    /// Trap fallback `vfork`: `rcx` holds the resume address.
    pub fn shunt_trap_vfork();
    /// `rt_sigreturn` from inside the runtime's text (a signal restorer).
    pub fn shunt_restorer();
    /// Raw `clone`/`clone3` whose child starts on `child`'s runtime stack,
    /// runs `sys::process::clone_child_start`, then resumes the registers in
    /// `child.clone_frame`. Returns in the parent only.
    pub fn shunt_clone_raw(
        nr: u64,
        a0: u64,
        a1: u64,
        a2: u64,
        a3: u64,
        a4: u64,
        child: *mut ThreadBlock,
    ) -> i64;
}

/// The gate's address, for code that cannot name the symbol (tests, loaders).
pub fn gate_address() -> usize {
    shunt_gate as *const () as usize
}

/// Called on the emergency area when nesting exhausts the runtime stack.
extern "C" fn shunt_stack_overflow() -> ! {
    crate::events::fatal(b"runtime stack exhausted: gate entries nested too deeply on one thread")
}

// Mirror of the depth-slot rule for Rust (used by the trap fallback).
const _: () = assert!(layout::NEST_SLOT == 1 << layout::NEST_SLOT_SHIFT);

global_asm!(
    // ---------------------------------------------------------------- vfork
    // Shared by both entries. In: rax = nr, app registers, return address parked
    // in TB.vfork_ret. Parent and child run on the same stack, so nothing here
    // touches memory other than the thread block. Out: rax = result; the child
    // has TBF_VFORK_CHILD set and its own trap fallback armed.
    ".macro SHUNT_VFORK_SYSCALL cell",
    "    incq %gs:\\cell(,%rax,8)",
    "    mov %gs:{tb_depth}, %rcx",
    "    mov %rcx, %gs:{tb_vfork_depth}",
    "    syscall",
    "    test %rax, %rax",
    "    jnz 2f",
    "    orb ${f_vfork_child}, %gs:{tb_flags}",
    "    cmpb $0, {sud_enabled}(%rip)",
    "    je 3f",
    "    mov %rdi, %gs:{tb_vfork_save}",
    "    mov %rsi, %gs:{tb_vfork_save}+8",
    "    mov %rdx, %gs:{tb_vfork_save}+16",
    "    mov %r10, %gs:{tb_vfork_save}+24",
    "    mov %r8, %gs:{tb_vfork_save}+32",
    "    mov ${nr_prctl}, %eax",
    "    mov ${pr_sud}, %edi",
    "    mov $1, %esi",
    "    mov {exempt_start}(%rip), %rdx",
    "    mov {exempt_len}(%rip), %r10",
    "    mov %gs:{tb_self}, %r8",
    "    add ${tb_selector}, %r8",
    "    syscall",
    "    mov %gs:{tb_vfork_save}, %rdi",
    "    mov %gs:{tb_vfork_save}+8, %rsi",
    "    mov %gs:{tb_vfork_save}+16, %rdx",
    "    mov %gs:{tb_vfork_save}+24, %r10",
    "    mov %gs:{tb_vfork_save}+32, %r8",
    "3:",
    "    xor %eax, %eax",
    "    jmp 4f",
    "2:",
    "    mov %gs:{tb_vfork_depth}, %rcx",
    "    mov %rcx, %gs:{tb_depth}",
    "    andb ${not_vfork_child}, %gs:{tb_flags}",
    "4:",
    ".endm",
    //
    // Pick the runtime stack and build a frame. In: r11 = caller's rsp at the
    // entry. Out: rsp = frame (16-byte aligned), depth incremented, GPRs and
    // xmm saved (not rip/rsp/kind). Clobbers rcx.
    ".macro SHUNT_ENTER_FRAME",
    "    incq %gs:{tb_depth}",
    "    mov %gs:{tb_depth}, %rcx",
    "    cmp $1, %rcx",
    "    jne 5f",
    "    mov %gs:{tb_stack_top}, %rsp",
    "    jmp 7f",
    "5:",
    "    cmp %gs:{tb_stack_top}, %r11",
    "    jae 6f",
    "    cmp %gs:{tb_stack_lo}, %r11",
    "    jb 6f",
    "    lea -{red_zone}(%r11), %rcx",
    "    and $-16, %rcx",
    "    cmp %gs:{tb_stack_floor}, %rcx",
    "    jb 9f",
    "    mov %rcx, %rsp",
    "    jmp 7f",
    "6:",
    "    cmp ${max_depth}, %rcx",
    "    ja 9f",
    "    dec %rcx",
    "    shl ${nest_shift}, %rcx",
    "    neg %rcx",
    "    add %gs:{tb_stack_top}, %rcx",
    "    mov %rcx, %rsp",
    "    jmp 7f",
    "9:",
    "    mov %gs:{tb_stack_floor}, %rsp",
    "    call {overflow}",
    "    ud2",
    "7:",
    "    sub ${frame_size}, %rsp",
    "    mov %rax, {f_nr}(%rsp)",
    "    mov %rdi, {f_args}(%rsp)",
    "    mov %rsi, {f_args}+8(%rsp)",
    "    mov %rdx, {f_args}+16(%rsp)",
    "    mov %r10, {f_args}+24(%rsp)",
    "    mov %r8, {f_args}+32(%rsp)",
    "    mov %r9, {f_args}+40(%rsp)",
    "    mov %rbx, {f_rbx}(%rsp)",
    "    mov %rbp, {f_rbp}(%rsp)",
    "    mov %r12, {f_r12}(%rsp)",
    "    mov %r13, {f_r13}(%rsp)",
    "    mov %r14, {f_r14}(%rsp)",
    "    mov %r15, {f_r15}(%rsp)",
    "    mov %r11, {f_entry_rsp}(%rsp)",
    "    SHUNT_SAVE_XMM",
    ".endm",
    //
    ".macro SHUNT_SAVE_XMM",
    "    movups %xmm0, {f_xmm}+0x00(%rsp)",
    "    movups %xmm1, {f_xmm}+0x10(%rsp)",
    "    movups %xmm2, {f_xmm}+0x20(%rsp)",
    "    movups %xmm3, {f_xmm}+0x30(%rsp)",
    "    movups %xmm4, {f_xmm}+0x40(%rsp)",
    "    movups %xmm5, {f_xmm}+0x50(%rsp)",
    "    movups %xmm6, {f_xmm}+0x60(%rsp)",
    "    movups %xmm7, {f_xmm}+0x70(%rsp)",
    "    movups %xmm8, {f_xmm}+0x80(%rsp)",
    "    movups %xmm9, {f_xmm}+0x90(%rsp)",
    "    movups %xmm10, {f_xmm}+0xa0(%rsp)",
    "    movups %xmm11, {f_xmm}+0xb0(%rsp)",
    "    movups %xmm12, {f_xmm}+0xc0(%rsp)",
    "    movups %xmm13, {f_xmm}+0xd0(%rsp)",
    "    movups %xmm14, {f_xmm}+0xe0(%rsp)",
    "    movups %xmm15, {f_xmm}+0xf0(%rsp)",
    ".endm",
    //
    // Restore what the dispatcher may have changed: xmm0-15 and the argument
    // registers (callee-saved registers are preserved by the Rust ABI).
    ".macro SHUNT_RESTORE_VOLATILE",
    "    movups {f_xmm}+0x00(%rsp), %xmm0",
    "    movups {f_xmm}+0x10(%rsp), %xmm1",
    "    movups {f_xmm}+0x20(%rsp), %xmm2",
    "    movups {f_xmm}+0x30(%rsp), %xmm3",
    "    movups {f_xmm}+0x40(%rsp), %xmm4",
    "    movups {f_xmm}+0x50(%rsp), %xmm5",
    "    movups {f_xmm}+0x60(%rsp), %xmm6",
    "    movups {f_xmm}+0x70(%rsp), %xmm7",
    "    movups {f_xmm}+0x80(%rsp), %xmm8",
    "    movups {f_xmm}+0x90(%rsp), %xmm9",
    "    movups {f_xmm}+0xa0(%rsp), %xmm10",
    "    movups {f_xmm}+0xb0(%rsp), %xmm11",
    "    movups {f_xmm}+0xc0(%rsp), %xmm12",
    "    movups {f_xmm}+0xd0(%rsp), %xmm13",
    "    movups {f_xmm}+0xe0(%rsp), %xmm14",
    "    movups {f_xmm}+0xf0(%rsp), %xmm15",
    "    mov {f_args}(%rsp), %rdi",
    "    mov {f_args}+8(%rsp), %rsi",
    "    mov {f_args}+16(%rsp), %rdx",
    "    mov {f_args}+24(%rsp), %r10",
    "    mov {f_args}+32(%rsp), %r8",
    "    mov {f_args}+40(%rsp), %r9",
    ".endm",
    //
    // ------------------------------------------------------------- the gate
    ".pushsection .text.shunt_gate,\"ax\",@progbits",
    ".globl shunt_gate",
    ".type shunt_gate,@function",
    ".p2align 6",
    "shunt_gate:",
    "    cmp ${table_len}, %rax",
    "    jae 82f",
    "    lea {actions}(%rip), %r11",
    "    movzbl (%r11,%rax,1), %ecx",
    "    test %ecx, %ecx",
    "    jnz 22f",
    // Kernel route: the call is forwarded by this instruction, in runtime text.
    // (Every path counts the entry next to its answer: a thread killed by
    // another's exit_group in between must not leave an entry unanswered.)
    "    incq %gs:{cnt_gate_pass}(,%rax,8)",
    "    syscall",
    "    ret",
    "22:",
    "    cmp ${act_rust}, %ecx",
    "    jb 42f",
    // Full path.
    "24:",
    "    mov %rsp, %r11",
    "    SHUNT_ENTER_FRAME",
    "    mov (%r11), %rcx",
    "    mov %rcx, {f_rip}(%rsp)",
    "    lea 8(%r11), %rcx",
    "    mov %rcx, {f_rsp}(%rsp)",
    "    movq ${entry_call}, {f_kind}(%rsp)",
    "    cld",
    "    mov %rsp, %rdi",
    "    call {dispatch}",
    "    cmp ${vfork_style}, %rax",
    "    je 32f",
    "    SHUNT_RESTORE_VOLATILE",
    "    mov {f_entry_rsp}(%rsp), %rsp",
    "    decq %gs:{tb_depth}",
    "    ret",
    "32:",
    // The handler asked for a register-only vfork-style call (e.g. clone with
    // CLONE_VM and no new stack): leave the runtime stack first.
    "    SHUNT_RESTORE_VOLATILE",
    "    mov {f_nr}(%rsp), %rax",
    "    mov {f_entry_rsp}(%rsp), %rsp",
    "    decq %gs:{tb_depth}",
    "    jmp 44f",
    "42:",
    "    cmp ${act_getpid}, %ecx",
    "    jne 46f",
    "    testb ${f_shared_ids}, %gs:{tb_flags}",
    "    jnz 24b",
    "    incq %gs:{cnt_gate_emu}(,%rax,8)",
    "    movslq {pid}(%rip), %rax",
    "    ret",
    "46:",
    "    cmp ${act_gettid}, %ecx",
    "    jne 48f",
    "    testb ${f_vfork_child}, %gs:{tb_flags}",
    "    jnz 24b",
    "    cmpq $0, %gs:{tb_tid}",
    "    je 24b",
    "    incq %gs:{cnt_gate_emu}(,%rax,8)",
    "    mov %gs:{tb_tid}, %rax",
    "    ret",
    "48:",
    "    cmp ${act_vfork}, %ecx",
    "    jne 52f",
    "44:",
    "    pop %rcx",
    "    mov %rcx, %gs:{tb_vfork_ret}",
    "    SHUNT_VFORK_SYSCALL {cnt_gate_pass}",
    // Re-push the return address from the block: the child may have reused
    // the stack slot it was in. This writes only that slot.
    "    pushq %gs:{tb_vfork_ret}",
    "    ret",
    "52:",
    "    incq %gs:{cnt_gate_pass}(,%rax,8)",
    "    cmp ${act_exit}, %ecx",
    "    je shunt_exit_path",
    // rt_sigreturn: the caller's rsp (before its call) is the signal frame.
    "    lea 8(%rsp), %rsp",
    "    syscall",
    "    ud2",
    "82:",
    // Numbers outside the table: the kernel answers (ENOSYS, or x32 calls).
    "    incq %gs:{cnt_gate_pass_invalid}",
    "    syscall",
    "    ret",
    ".size shunt_gate, .-shunt_gate",
    //
    // ------------------------------------------------------ register-only exit
    // In: rax = exit, rdi = status. Uses no stack: the thread's stack may be
    // freed already. After the `btr` another thread may take the slot, so
    // nothing after it touches the block. A vfork child shares its parent's
    // block (Go's child ends a failed exec with SYS_EXIT) and a CLONE_VFORK
    // child's slot is freed by its parent: neither frees anything here.
    ".globl shunt_exit_path",
    ".type shunt_exit_path,@function",
    ".p2align 4",
    "shunt_exit_path:",
    "    testb ${f_keep_slot}, %gs:{tb_flags}",
    "    jnz 2f",
    "    mov %gs:{tb_slot}, %ecx",
    "    mov {slot_bitmap}(%rip), %r11",
    "    lock btr %rcx, (%r11)",
    "2:",
    "    syscall",
    "    ud2",
    ".size shunt_exit_path, .-shunt_exit_path",
    //
    // ------------------------------------------------------ trap fallback entry
    // The SIGSYS handler has built a frame on the runtime stack (GPRs, rip,
    // rsp, kind), incremented depth, and returned here with rsp = frame. The
    // app's own registers are live again (restored by rt_sigreturn).
    ".globl shunt_trap_resume",
    ".type shunt_trap_resume,@function",
    ".p2align 4",
    "shunt_trap_resume:",
    "    SHUNT_SAVE_XMM",
    "    cld",
    "    mov %rsp, %rdi",
    "    call {dispatch}",
    "    cmp ${vfork_style}, %rax",
    "    je 2f",
    "    SHUNT_RESTORE_VOLATILE",
    "    mov {f_rip}(%rsp), %rcx",
    "    mov {f_rsp}(%rsp), %rsp",
    "    decq %gs:{tb_depth}",
    "    jmp *%rcx",
    "2:",
    "    SHUNT_RESTORE_VOLATILE",
    "    mov {f_nr}(%rsp), %rax",
    "    mov {f_rip}(%rsp), %rcx",
    "    mov {f_rsp}(%rsp), %rsp",
    "    decq %gs:{tb_depth}",
    "    jmp shunt_trap_vfork",
    ".size shunt_trap_resume, .-shunt_trap_resume",
    //
    // In: app registers, rax = nr, rcx = where to resume, rsp = app rsp.
    ".globl shunt_trap_vfork",
    ".type shunt_trap_vfork,@function",
    ".p2align 4",
    "shunt_trap_vfork:",
    "    mov %rcx, %gs:{tb_vfork_ret}",
    "    SHUNT_VFORK_SYSCALL {cnt_trap_pass}",
    "    jmp *%gs:{tb_vfork_ret}",
    ".size shunt_trap_vfork, .-shunt_trap_vfork",
    //
    // ------------------------------------------------------------- restorer
    ".globl shunt_restorer",
    ".type shunt_restorer,@function",
    ".p2align 4",
    "shunt_restorer:",
    "    mov ${nr_rt_sigreturn}, %eax",
    "    syscall",
    "    ud2",
    ".size shunt_restorer, .-shunt_restorer",
    //
    // ------------------------------------------------------------ raw clone
    // C ABI: (nr, a0, a1, a2, a3, a4, child_block). The child starts with
    // rsp = its new stack and r12 = its block, and touches nothing of the new
    // stack: it moves to its own runtime stack, runs clone_child_start, then
    // loads the parent's registers from the block's clone frame.
    ".globl shunt_clone_raw",
    ".type shunt_clone_raw,@function",
    ".p2align 4",
    "shunt_clone_raw:",
    "    push %r12",
    "    mov 16(%rsp), %r12",
    "    mov %rdi, %rax",
    "    mov %rsi, %rdi",
    "    mov %rdx, %rsi",
    "    mov %rcx, %rdx",
    "    mov %r8, %r10",
    "    mov %r9, %r8",
    "    syscall",
    "    test %rax, %rax",
    "    jz 2f",
    "    pop %r12",
    "    ret",
    "2:",
    "    wrgsbase %r12",
    "    mov %gs:{tb_stack_top}, %rsp",
    "    movq $1, %gs:{tb_depth}",
    "    mov %r12, %rdi",
    "    call {child_start}",
    "    movups %gs:{cf_xmm}+0x00, %xmm0",
    "    movups %gs:{cf_xmm}+0x10, %xmm1",
    "    movups %gs:{cf_xmm}+0x20, %xmm2",
    "    movups %gs:{cf_xmm}+0x30, %xmm3",
    "    movups %gs:{cf_xmm}+0x40, %xmm4",
    "    movups %gs:{cf_xmm}+0x50, %xmm5",
    "    movups %gs:{cf_xmm}+0x60, %xmm6",
    "    movups %gs:{cf_xmm}+0x70, %xmm7",
    "    movups %gs:{cf_xmm}+0x80, %xmm8",
    "    movups %gs:{cf_xmm}+0x90, %xmm9",
    "    movups %gs:{cf_xmm}+0xa0, %xmm10",
    "    movups %gs:{cf_xmm}+0xb0, %xmm11",
    "    movups %gs:{cf_xmm}+0xc0, %xmm12",
    "    movups %gs:{cf_xmm}+0xd0, %xmm13",
    "    movups %gs:{cf_xmm}+0xe0, %xmm14",
    "    movups %gs:{cf_xmm}+0xf0, %xmm15",
    "    mov %gs:{cf_args}, %rdi",
    "    mov %gs:{cf_args}+8, %rsi",
    "    mov %gs:{cf_args}+16, %rdx",
    "    mov %gs:{cf_args}+24, %r10",
    "    mov %gs:{cf_args}+32, %r8",
    "    mov %gs:{cf_args}+40, %r9",
    "    mov %gs:{cf_rbx}, %rbx",
    "    mov %gs:{cf_rbp}, %rbp",
    "    mov %gs:{cf_r12}, %r12",
    "    mov %gs:{cf_r13}, %r13",
    "    mov %gs:{cf_r14}, %r14",
    "    mov %gs:{cf_r15}, %r15",
    "    mov %gs:{cf_rsp}, %rsp",
    "    movq $0, %gs:{tb_depth}",
    "    xor %eax, %eax",
    "    jmp *%gs:{cf_rip}",
    ".size shunt_clone_raw, .-shunt_clone_raw",
    ".popsection",
    table_len = const TABLE_LEN,
    cnt_gate_pass = const layout::cell_offset(Entry::Gate, Answer::Passthrough),
    cnt_trap_pass = const layout::cell_offset(Entry::Trap, Answer::Passthrough),
    cnt_gate_pass_invalid = const layout::cell_offset(Entry::Gate, Answer::Passthrough) + INVALID_SLOT * 8,
    act_rust = const ACT_RUST,
    act_getpid = const ACT_GETPID,
    act_gettid = const ACT_GETTID,
    cnt_gate_emu = const layout::cell_offset(Entry::Gate, Answer::Emulated),
    f_shared_ids = const layout::TBF_VFORK_CHILD | layout::TBF_NO_ID_CACHE,
    tb_tid = const off::TB_TID,
    pid = sym crate::sys::ids::PID,
    act_vfork = const ACT_VFORK,
    act_exit = const ACT_EXIT,
    vfork_style = const VFORK_STYLE,
    entry_call = const layout::ENTRY_CALL,
    red_zone = const layout::RED_ZONE,
    max_depth = const layout::MAX_DEPTH,
    nest_shift = const layout::NEST_SLOT_SHIFT,
    frame_size = const off::FRAME_SIZE,
    f_nr = const off::F_NR,
    f_args = const off::F_ARGS,
    f_rbx = const off::F_RBX,
    f_rbp = const off::F_RBP,
    f_r12 = const off::F_R12,
    f_r13 = const off::F_R13,
    f_r14 = const off::F_R14,
    f_r15 = const off::F_R15,
    f_rip = const off::F_RIP,
    f_rsp = const off::F_RSP,
    f_entry_rsp = const off::F_ENTRY_RSP,
    f_kind = const off::F_KIND,
    f_xmm = const off::F_XMM,
    tb_self = const off::TB_SELF,
    tb_stack_top = const off::TB_STACK_TOP,
    tb_stack_lo = const off::TB_STACK_LO,
    tb_stack_floor = const off::TB_STACK_FLOOR,
    tb_depth = const off::TB_DEPTH,
    tb_selector = const off::TB_SELECTOR,
    tb_flags = const off::TB_FLAGS,
    tb_slot = const off::TB_SLOT,
    tb_vfork_ret = const off::TB_VFORK_RET,
    tb_vfork_depth = const off::TB_VFORK_DEPTH,
    tb_vfork_save = const off::TB_VFORK_SAVE,
    cf_args = const off::TB_CLONE_FRAME + off::F_ARGS,
    cf_rbx = const off::TB_CLONE_FRAME + off::F_RBX,
    cf_rbp = const off::TB_CLONE_FRAME + off::F_RBP,
    cf_r12 = const off::TB_CLONE_FRAME + off::F_R12,
    cf_r13 = const off::TB_CLONE_FRAME + off::F_R13,
    cf_r14 = const off::TB_CLONE_FRAME + off::F_R14,
    cf_r15 = const off::TB_CLONE_FRAME + off::F_R15,
    cf_rip = const off::TB_CLONE_FRAME + off::F_RIP,
    cf_rsp = const off::TB_CLONE_FRAME + off::F_RSP,
    cf_xmm = const off::TB_CLONE_FRAME + off::F_XMM,
    f_vfork_child = const layout::TBF_VFORK_CHILD,
    not_vfork_child = const !layout::TBF_VFORK_CHILD,
    f_keep_slot = const layout::TBF_PARENT_FREES | layout::TBF_VFORK_CHILD,
    nr_prctl = const libc::SYS_prctl,
    pr_sud = const crate::trap::PR_SET_SYSCALL_USER_DISPATCH,
    nr_rt_sigreturn = const libc::SYS_rt_sigreturn,
    actions = sym crate::dispatch::ACTIONS,
    dispatch = sym crate::dispatch::shunt_dispatch,
    child_start = sym crate::sys::process::clone_child_start,
    overflow = sym shunt_stack_overflow,
    slot_bitmap = sym crate::thread::SLOT_BITMAP_PTR,
    sud_enabled = sym crate::trap::SUD_ENABLED,
    exempt_start = sym crate::trap::EXEMPT_START,
    exempt_len = sym crate::trap::EXEMPT_LEN,
    options(att_syntax)
);
