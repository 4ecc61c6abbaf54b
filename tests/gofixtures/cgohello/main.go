// A cgo program (dynamically linked, an external linker put glibc's start
// code before Go's text): 50 goroutines call C and contend on a mutex, so
// that the Go runtime's own futex, clone-free thread start-up and signal
// paths run, then a goroutine-locked thread raises a signal at itself
// (runtime.raise) and the program reads a file and sleeps.
package main

// int twice(int x) { return 2 * x; }
import "C"

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

func main() {
	var wg sync.WaitGroup
	var mu sync.Mutex
	sum := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				v := int(C.twice(C.int(i)))
				mu.Lock()
				sum += v
				mu.Unlock()
				runtime.Gosched()
			}
		}(i)
	}
	wg.Wait()
	fmt.Println("sum", sum)

	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		syscall.Kill(os.Getpid(), syscall.SIGUSR1)
		close(done)
	}()
	<-done
	fmt.Println("signal", <-ch)

	b, err := os.ReadFile("/proc/self/comm")
	fmt.Println("comm read", err == nil && len(b) > 0)
	time.Sleep(10 * time.Millisecond)
	fmt.Println("args", os.Args[1:])
}
