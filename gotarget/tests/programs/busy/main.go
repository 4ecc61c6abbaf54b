// Test program for shunt's Go target: goroutines, a thread that exits,
// signals, file I/O, os/exec (vfork) and timers. Its output is
// deterministic, so a shunt-built binary must print exactly what a plain
// `go build` prints.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		fmt.Printf("child says %s\n", os.Args[2])
		os.Exit(3)
	}

	// Goroutines spread over threads (clone, futex).
	var wg sync.WaitGroup
	results := make([]int, 16)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sum := 0
			for j := 0; j <= 10000*(i+1); j++ {
				sum += j % 7
			}
			results[i] = sum
		}(i)
	}
	wg.Wait()
	fmt.Println("goroutine sums:", results[0], results[7], results[15])

	// A goroutine locked to its thread that exits: the runtime ends that
	// thread (exitThread).
	done := make(chan int)
	for i := 0; i < 4; i++ {
		go func(i int) {
			runtime.LockOSThread()
			done <- i
		}(i)
	}
	got := []int{<-done, <-done, <-done, <-done}
	sort.Ints(got)
	fmt.Println("locked threads finished:", got)

	// Signals: deliver SIGUSR1 to ourselves and receive it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		fmt.Println("kill:", err)
	}
	select {
	case s := <-sigs:
		fmt.Println("received", s)
	case <-time.After(10 * time.Second):
		fmt.Println("no signal")
	}

	// File I/O.
	dir, err := os.MkdirTemp("", "shunt-busy-")
	if err != nil {
		fmt.Println("mkdtemp:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(path, []byte("file contents 42\n"), 0o600); err != nil {
		fmt.Println("write:", err)
	}
	data, err := os.ReadFile(path)
	fmt.Printf("read back: %q err=%v\n", data, err)

	// os/exec: fork+exec (vfork) of ourselves, exit status and output.
	self, err := os.Executable()
	if err != nil {
		fmt.Println("executable:", err)
		os.Exit(1)
	}
	out, err := exec.Command(self, "child", "hi").Output()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	fmt.Printf("exec output: %q exit: %d\n", out, code)

	// Timers.
	start := time.Now()
	time.Sleep(5 * time.Millisecond)
	fmt.Println("slept at least 5ms:", time.Since(start) >= 5*time.Millisecond)
}
