// Test program for shunt's Go target: golang.org/x/sys/unix has SYSCALL
// sites of its own (RawSyscallNoError: Getpid, Getuid, …), which shunt
// rewrites in a copy of the module (or in vendor/).
package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	fmt.Println("pid matches os:", unix.Getpid() == os.Getpid())
	fmt.Println("uid matches os:", unix.Getuid() == os.Getuid())
	var u unix.Utsname
	fmt.Println("uname ok:", unix.Uname(&u) == nil)
}
