// A static Go program for the loader tests: goroutines, timers, signals,
// files, its own executable re-run as a child, a dynamic child, environment.
// Output is deterministic.
package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("LOADER_CHILD") == "1" {
		fmt.Println("child: args", os.Args[1:])
		os.Exit(7)
	}
	fmt.Println("args:", os.Args[1:])

	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i%5) * time.Millisecond)
			mu.Lock()
			total += i
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	fmt.Println("goroutines:", total)

	f, err := os.CreateTemp("", "loader")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	data := strings.Repeat("shunt ", 10000)
	f.WriteString(data)
	f.Close()
	back, _ := os.ReadFile(f.Name())
	fmt.Println("file round trip:", string(back) == data)

	b := make([]byte, 32)
	_, err = rand.Read(b)
	fmt.Println("crypto/rand:", err == nil)

	c := make(chan os.Signal, 64)
	signal.Notify(c, syscall.SIGUSR1)
	for i := 0; i < 10; i++ {
		syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	}
	<-c
	fmt.Println("signal received")

	exe, err := os.Executable()
	fmt.Println("os.Executable is the program:", err == nil && strings.HasSuffix(exe, "/loader"))
	cmd := exec.Command(exe, "x", "y")
	cmd.Env = append(os.Environ(), "LOADER_CHILD=1")
	out, err := cmd.CombinedOutput()
	fmt.Printf("self-exec: %q %v\n", out, err)
	out, err = exec.Command("sh", "-c", "echo dynamic child; exit 3").CombinedOutput()
	fmt.Printf("sh child: %q %v\n", out, err)

	env := os.Environ()
	sort.Strings(env)
	fmt.Println("environment:", strings.Join(env, "|"))
	os.Exit(5)
}
