// A stand-in for the shunt call gate, for testing the Go target without
// the shunt runtime: the test harness (gotarget/tests/gate_smoke.rs) puts
// this function's address in the program's auxv as AT_SHUNT_ENTRY.
// It counts entries, remembers the first syscall number, and performs the
// call with the same special cases as the real gate (runtime/src/gate.rs):
// clone with a new stack resumes the child at the return address on that
// stack, clone without one (vfork-style) keeps everything in registers and
// a global, exit uses no stack.

#include "textflag.h"

TEXT ·testGate(SB),NOSPLIT|NOFRAME,$0-0
	CMPQ	·gateFirst(SB), $0
	JNE	counted
	LEAQ	1(AX), R11
	MOVQ	R11, ·gateFirst(SB)
counted:
	LOCK
	INCQ	·gateCount(SB)
	CMPQ	AX, $60		// exit: the stack may be gone
	JEQ	nostack
	CMPQ	AX, $56		// clone
	JEQ	clone
	SYSCALL
	RET
nostack:
	SYSCALL
	INT	$3
clone:
	LOCK
	INCQ	·gateClones(SB)
	TESTQ	SI, SI
	JEQ	vfork
	// The child starts with SP = SI: put the return address there.
	MOVQ	0(SP), R11
	MOVQ	R11, -8(SI)
	SUBQ	$8, SI
	SYSCALL
	ADDQ	$8, SI
	RET			// parent: its own stack; child: the new one
vfork:
	// Parent and child share the stack, and the child overwrites it:
	// keep the return address out of it (one vfork at a time here).
	POPQ	R11
	MOVQ	R11, ·vforkRet(SB)
	SYSCALL
	MOVQ	·vforkRet(SB), R11
	JMP	R11
