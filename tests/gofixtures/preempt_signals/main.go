// Go under heavy asynchronous preemption and os/signal traffic for a bounded
// time (the first argument, in seconds): more goroutines in tight loops
// without calls than there are Ps (only SIGURG preemption lets anything else
// run, main included), a signal ping-pong through os/signal (one SIGUSR1 or
// SIGUSR2 at a time, each waited for, so every one is counted), and a
// goroutine that allocates (GC, whose stop-the-world needs preemption too).
// Prints only deterministic results on stdout; the number of signals sent
// goes to the file named by the second argument, for the test to compare
// with the kill(2) calls shunt counted.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: preempt_signals SECONDS COUNT_FILE")
		os.Exit(2)
	}
	secs, err := strconv.Atoi(os.Args[1])
	if err != nil || secs < 1 {
		fmt.Fprintln(os.Stderr, "SECONDS must be a positive number")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(2)
	var stop atomic.Bool
	var wg sync.WaitGroup

	// Tight loops: 6 goroutines on 2 Ps.
	var spins [6]atomic.Int64
	for g := range spins {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			x := 0
			for !stop.Load() {
				for j := 0; j < 2000000; j++ {
					x += j ^ g
				}
				spins[g].Add(1)
			}
			if x == 42 {
				fmt.Println("unlikely")
			}
		}(g)
	}

	// Allocation: garbage collections stop the world, which needs every
	// spinning goroutine preempted.
	var gcs atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		var keep [][]byte
		for !stop.Load() {
			keep = append(keep, make([]byte, 64<<10))
			if len(keep) > 64 {
				keep = keep[:0]
				gcs.Add(1)
			}
		}
	}()

	// The signal traffic, in rounds: a burst of SIGUSR2 sent without
	// waiting (os/signal may coalesce them), then one SIGUSR1 waited for, so
	// that the rounds are counted exactly.
	c := make(chan os.Signal, 8)
	signal.Notify(c, syscall.SIGUSR1, syscall.SIGUSR2)
	sent, rounds, pinged := 0, 0, 0
	kill := func(sig syscall.Signal) {
		if err := syscall.Kill(os.Getpid(), sig); err != nil {
			fmt.Println("kill:", err)
			os.Exit(1)
		}
		sent++
	}
	var statsBefore runtime.MemStats
	runtime.ReadMemStats(&statsBefore)
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	timeout := time.NewTimer(time.Hour)
	for time.Now().Before(deadline) {
		for i := 0; i < 20; i++ {
			kill(syscall.SIGUSR2)
		}
		kill(syscall.SIGUSR1)
		rounds++
		timeout.Reset(10 * time.Second)
	wait:
		for {
			select {
			case got := <-c:
				if got == syscall.SIGUSR1 {
					pinged++
					break wait
				}
			case <-timeout.C:
				break wait
			}
		}
		if pinged != rounds {
			break
		}
	}
	signal.Stop(c)
	stop.Store(true)
	wg.Wait()
	var statsAfter runtime.MemStats
	runtime.ReadMemStats(&statsAfter)

	if err := os.WriteFile(os.Args[2], []byte(strconv.Itoa(sent)), 0o600); err != nil {
		fmt.Println("count file:", err)
		os.Exit(1)
	}
	fmt.Println("signals: every round's SIGUSR1 received:", pinged == rounds, "at least 10 rounds:", rounds >= 10)
	progressed := true
	for g := range spins {
		progressed = progressed && spins[g].Load() > 0
	}
	fmt.Println("preemption: every spinning goroutine progressed and main ran:", progressed)
	fmt.Println("gc: collections ran while goroutines spun:", statsAfter.NumGC > statsBefore.NumGC)
}
