// Go under stress for the shunt Go-target tests: a net/http server and
// client doing thousands of requests, thousands of goroutines with channels,
// timers and Gosched, tight loops that only async preemption can stop, a
// storm of signals through os/signal, os/exec, crypto/rand and file I/O.
// Prints only deterministic results.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func httpRoundTrips(n int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		w.Write(sum[:4])
	})}
	go srv.Serve(ln)
	client := &http.Client{}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < n/8; i++ {
				resp, err := client.Post("http://"+ln.Addr().String()+"/", "text/plain", bytes.NewReader([]byte(fmt.Sprint(w, i))))
				if err != nil {
					panic(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && len(b) == 4 {
					ok.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	srv.Close()
	fmt.Println("http: ok", ok.Load(), "of", n/8*8)
}

func goroutines(n int) {
	results := make(chan int, 64)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t := time.NewTimer(time.Duration(i%7) * 100 * time.Microsecond)
			<-t.C
			runtime.Gosched()
			results <- i % 10
		}(i)
	}
	go func() { wg.Wait(); close(results) }()
	sum := 0
	for r := range results {
		sum += r
	}
	fmt.Println("goroutines: sum", sum)
}

// Tight loops with no function calls: only asynchronous preemption
// (SIGURG) lets the timer goroutine run.
func preemption() {
	runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(runtime.NumCPU())
	var stop atomic.Bool
	go func() { time.Sleep(20 * time.Millisecond); stop.Store(true) }()
	x := 0
	for !stop.Load() {
		for j := 0; j < 1000000; j++ {
			x += j
		}
	}
	fmt.Println("preemption: tight loop interrupted", x != 0)
}

func signalStorm(n int) {
	c := make(chan os.Signal, n)
	signal.Notify(c, syscall.SIGUSR1, syscall.SIGUSR2)
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			syscall.Kill(os.Getpid(), syscall.SIGUSR1)
		} else {
			syscall.Kill(os.Getpid(), syscall.SIGUSR2)
		}
	}
	got := 0
	timeout := time.After(10 * time.Second)
	for got < 2 {
		select {
		case <-c:
			got++
		case <-timeout:
			fmt.Println("signals: timed out")
			return
		}
	}
	signal.Stop(c)
	fmt.Println("signals: delivered")
}

func main() {
	httpRoundTrips(2000)
	goroutines(5000)
	preemption()
	signalStorm(500)

	out, err := exec.Command("sh", "-c", "echo child $((20+22))").Output()
	fmt.Printf("exec: %q %v\n", out, err)

	b := make([]byte, 64)
	n, err := rand.Read(b)
	fmt.Println("crypto/rand:", n, err, !bytes.Equal(b, make([]byte, 64)))

	dir, _ := os.MkdirTemp("", "stress")
	defer os.RemoveAll(dir)
	for i := 0; i < 50; i++ {
		p := filepath.Join(dir, fmt.Sprint(i))
		os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, 4096*(i%5+1)), 0o600)
	}
	total := 0
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		d, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		total += len(d)
	}
	fmt.Println("files:", len(entries), total)
}
