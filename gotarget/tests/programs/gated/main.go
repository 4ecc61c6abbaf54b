// Test program for shunt's Go target under a stand-in gate (see
// gate_amd64.s): goroutines, exiting threads, signals, file I/O and
// os/exec, then how many system calls went through the gate.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
)

// Written by testGate.
var gateCount, gateFirst, gateClones, vforkRet uint64

func testGate()

func main() {
	if len(os.Args) > 99 {
		testGate() // never: keeps the gate in the binary for the harness
	}
	if len(os.Args) > 1 && os.Args[1] == "child" {
		fmt.Println("child ran")
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); runtime.Gosched() }()
	}
	wg.Wait()

	done := make(chan bool)
	for i := 0; i < 3; i++ {
		go func() { runtime.LockOSThread(); done <- true }()
	}
	<-done
	<-done
	<-done

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	fmt.Println("signal:", <-sigs)

	dir, _ := os.MkdirTemp("", "shunt-gated-")
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "x")
	os.WriteFile(p, []byte("data"), 0o600)
	b, err := os.ReadFile(p)
	fmt.Printf("file: %s %v\n", b, err)

	self, _ := os.Executable()
	out, err := exec.Command(self, "child").Output()
	fmt.Printf("exec: %q %v\n", out, err)

	fmt.Printf("gate entries>100: %v first: %d clones>0: %v\n", gateCount > 100, int64(gateFirst)-1, gateClones > 0)
}
