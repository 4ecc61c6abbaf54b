// The Go side of `shunt bench go`: one measurement per run, printed as
// "<name> <value>" lines. The shunt binary builds it twice (plain go build,
// and shunt go build) and runs both, interleaved.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"
)

func perCall(name string, n int, f func()) {
	start := time.Now()
	for i := 0; i < n; i++ {
		f()
	}
	fmt.Printf("%s %.2f\n", name, float64(time.Since(start).Nanoseconds())/float64(n))
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: bench getpid|timenow|devnull|http N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "bench: N must be a positive integer")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "getpid":
		perCall("getpid", n, func() { syscall.Getpid() })
	case "timenow":
		var sink int64
		perCall("timenow", n, func() { sink += time.Now().UnixNano() })
		_ = sink
	case "devnull":
		f, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
		if err != nil {
			panic(err)
		}
		b := []byte{1}
		fd := int(f.Fd())
		perCall("devnull", n, func() { syscall.Write(fd, b) })
	case "http":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Write([]byte("ok"))
		}))
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		url := "http://" + ln.Addr().String() + "/"
		lat := make([]float64, 0, n)
		for i := 0; i < n+50; i++ {
			t := time.Now()
			resp, err := client.Get(url)
			if err != nil {
				panic(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if i >= 50 { // warm-up
				lat = append(lat, float64(time.Since(t).Nanoseconds())/1000)
			}
		}
		sort.Float64s(lat)
		fmt.Printf("http_p50_us %.2f\nhttp_p99_us %.2f\n", lat[len(lat)/2], lat[len(lat)*99/100])
	default:
		fmt.Fprintln(os.Stderr, "bench: unknown measurement", os.Args[1])
		os.Exit(2)
	}
}
