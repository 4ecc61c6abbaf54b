// Loopback TCP through Go's netpoller (epoll, edge-triggered), printed as a
// transcript that must be the same natively and under `shunt run
// --transport shm`: HTTP keep-alive and fresh connections, many connections
// at once, a large transfer checked by SHA-256, half-close, read deadlines,
// and a reset peer.
//
//	loopback all [FILE]     every scenario, server and client in this process;
//	                        FILE gets the numbers of connections accepted and
//	                        dialed ("A D")
//	loopback serve FILE     an HTTP echo server; writes its address to FILE (-: the first
//	                        line out), stops on "POST /quit"
//	loopback client ADDR N  N keep-alive requests to ADDR, then /quit
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// accepted counts the connections every listener of this process accepted
// (an independent count for the runtime's stats).
var accepted atomic.Int64

// dialed counts the connections this process dialed successfully. Go's HTTP
// client dials in the background for queued requests and may close such a
// connection unused, or the server may close its listener before accepting
// it, so dialed >= accepted; each dialed connection is one connector end.
var dialed atomic.Int64

func dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err == nil {
		dialed.Add(1)
	}
	return c, err
}

func dial(addr string) (net.Conn, error) {
	return dialContext(context.Background(), "tcp", addr)
}

// httpClient is an HTTP client whose dials are counted.
func httpClient(keepAlive bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = dialContext
	t.DisableKeepAlives = !keepAlive
	return &http.Client{Transport: t}
}

type countingListener struct{ net.Listener }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		accepted.Add(1)
	}
	return c, err
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	return countingListener{ln}
}

func must(err error) {
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func echoHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Len", strconv.Itoa(len(b)))
		w.Write(bytes.ToUpper(b))
	})
	return mux
}

func request(c *http.Client, base, body string) string {
	resp, err := c.Post(base+"/echo", "text/plain", bytes.NewBufferString(body))
	must(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(err)
	return fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("X-Len"), b)
}

func httpScenario() {
	ln := listen()
	srv := &http.Server{Handler: echoHandler()}
	go srv.Serve(ln)
	base := "http://" + ln.Addr().String()
	keep := httpClient(true)
	for i := 0; i < 50; i++ {
		got := request(keep, base, fmt.Sprintf("hello %d", i))
		if i%10 == 0 {
			fmt.Println("http keep-alive:", got)
		}
	}
	fresh := httpClient(false)
	for i := 0; i < 20; i++ {
		got := request(fresh, base, fmt.Sprintf("fresh %d", i))
		if i%10 == 0 {
			fmt.Println("http fresh:", got)
		}
	}
	// Concurrent clients over a pool.
	var wg sync.WaitGroup
	results := make([]string, 32)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = request(keep, base, fmt.Sprintf("c%d", i))
		}(i)
	}
	wg.Wait()
	ok := 0
	for i, r := range results {
		if r == fmt.Sprintf("200 %d C%d", len(fmt.Sprintf("c%d", i)), i) {
			ok++
		}
	}
	fmt.Println("http concurrent ok:", ok, "of", len(results))
	must(srv.Close())
}

// echo serves one connection: copies until EOF, then half-closes.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
	c.Close()
}

func manyScenario(n int) {
	ln := listen()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(c)
		}
	}()
	conns := make([]net.Conn, n)
	for i := range conns {
		var err error
		conns[i], err = dial(ln.Addr().String())
		must(err)
	}
	var wg sync.WaitGroup
	bad := make(chan string, n)
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			msg := []byte(fmt.Sprintf("conn %d", i))
			c.Write(msg)
			c.(*net.TCPConn).CloseWrite()
			b, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(b, msg) {
				bad <- fmt.Sprintf("%d: %q %v", i, b, err)
			}
			c.Close()
		}(i, c)
	}
	wg.Wait()
	close(bad)
	fails := 0
	for range bad {
		fails++
	}
	fmt.Println("many connections:", n, "failures:", fails)
	ln.Close()
}

func bulkScenario(mib int) {
	ln := listen()
	sums := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		must(err)
		// Accepted: the sender may start. (A connector's bytes before
		// its peer attached travel the kernel, as the prefix; this way the
		// whole transfer is on the rings, which the test checks.)
		_, err = c.Write([]byte{'g'})
		must(err)
		h := sha256.New()
		n, err := io.Copy(h, c)
		must(err)
		sums <- fmt.Sprintf("%d bytes %x", n, h.Sum(nil))
		c.Close()
	}()
	c, err := dial(ln.Addr().String())
	must(err)
	_, err = io.ReadFull(c, make([]byte, 1))
	must(err)
	h := sha256.New()
	buf := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < mib; i++ {
		for j := range buf {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			buf[j] = byte(x)
		}
		h.Write(buf)
		_, err := c.Write(buf)
		must(err)
	}
	c.Close()
	got := <-sums
	fmt.Println("bulk received:", got)
	fmt.Printf("bulk sent:     %d bytes %x\n", mib<<20, h.Sum(nil))
	ln.Close()
}

func edgeScenario() {
	ln := listen()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// A read deadline with nothing to read.
	c, err := dial(ln.Addr().String())
	must(err)
	s := <-accepted
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = c.Read(make([]byte, 8))
	fmt.Println("deadline:", errors.Is(err, os.ErrDeadlineExceeded))
	c.SetReadDeadline(time.Time{})
	// Half-close: the peer reads EOF and can still answer.
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(s)
	fmt.Printf("half-close: server read %q %v\n", b, err)
	s.Write([]byte("pong"))
	s.Close()
	b, err = io.ReadAll(c)
	fmt.Printf("half-close: client read %q %v\n", b, err)
	c.Close()
	// Names as the kernel gives them.
	c, err = dial(ln.Addr().String())
	must(err)
	s = <-accepted
	fmt.Println("names agree:", c.LocalAddr().String() == s.RemoteAddr().String() && c.RemoteAddr().String() == s.LocalAddr().String())
	// A peer that closes with unread bytes resets the connection.
	s.Write([]byte("unread by the peer"))
	r := bufio.NewReader(c)
	line := make([]byte, 6)
	io.ReadFull(r, line)
	fmt.Printf("before reset: %q\n", line)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	_, err = s.Read(make([]byte, 8))
	fmt.Println("after peer reset, read fails:", err != nil)
	s.Close()
	ln.Close()
}

func serve(file string) {
	ln := listen()
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/echo", echoHandler())
	mux.HandleFunc("/quit", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("bye"))
		close(done)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	if file == "-" {
		fmt.Println(ln.Addr().String())
	} else {
		tmp := file + ".tmp"
		must(os.WriteFile(tmp, []byte(ln.Addr().String()), 0o644))
		must(os.Rename(tmp, file))
	}
	<-done
	srv.Close()
	fmt.Println("server: done")
}

func client(addr string, n int) {
	c := &http.Client{}
	base := "http://" + addr
	for i := 0; i < n; i++ {
		got := request(c, base, fmt.Sprintf("req %d", i))
		if i%25 == 0 {
			fmt.Println("client:", got)
		}
	}
	resp, err := c.Post(base+"/quit", "text/plain", nil)
	must(err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("client: quit", string(b))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loopback all | serve FILE | client ADDR N")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "all":
		httpScenario()
		manyScenario(200)
		bulkScenario(64)
		edgeScenario()
		if len(os.Args) > 2 {
			must(os.WriteFile(os.Args[2], []byte(fmt.Sprintf("%d %d", accepted.Load(), dialed.Load())), 0o644))
		}
	case "serve":
		serve(os.Args[2])
	case "client":
		n, _ := strconv.Atoi(os.Args[3])
		client(os.Args[2], n)
	default:
		fmt.Fprintln(os.Stderr, "unknown scenario", os.Args[1])
		os.Exit(2)
	}
}
