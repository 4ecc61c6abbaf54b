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
//	loopback sink FILE      accepts one connection, reads it to the end and
//	                        prints the bytes' count and SHA-256 (or the error)
//	loopback source ADDR B  sends B bytes (a fixed pseudo-random stream) to a
//	                        sink and prints their SHA-256 (or the error)
//	loopback churn-serve FILE ROUNDS
//	                        an echo server whose listener closes and reopens
//	                        on the same port, ROUNDS times
//	loopback churn-client ADDR WORKERS FILE
//	                        short echo connections to ADDR until stdin closes
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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

// announce writes a listener's address to file ("-": the first line out).
func announce(file, addr string) {
	if file == "-" {
		fmt.Println(addr)
		return
	}
	tmp := file + ".tmp"
	must(os.WriteFile(tmp, []byte(addr), 0o644))
	must(os.Rename(tmp, file))
}

// class names an I/O error the way the kernel reported it.
func class(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET"
	case errors.Is(err, syscall.EPIPE):
		return "EPIPE"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	default:
		return "other: " + err.Error()
	}
}

// stream fills buf with the next bytes of the fixed pseudo-random stream.
func stream(x *uint64, buf []byte) {
	for j := 0; j+8 <= len(buf); j += 8 {
		*x ^= *x << 13
		*x ^= *x >> 7
		*x ^= *x << 17
		binary.LittleEndian.PutUint64(buf[j:], *x)
	}
}

// sink accepts one connection, sends one byte (the source starts after
// it: the whole stream is then on the rings), reads to the end and prints
// what it got. "sink: pid P" and "sink: 64 MiB in" are for the test (it
// may kill either side then).
func sink(file string) {
	ln := listen()
	fmt.Println("sink: pid", os.Getpid())
	announce(file, ln.Addr().String())
	c, err := ln.Accept()
	must(err)
	_, err = c.Write([]byte{'g'})
	must(err)
	h := sha256.New()
	buf := make([]byte, 1<<20)
	n, told := int64(0), false
	for {
		k, err := c.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if !told && n >= 64<<20 {
			fmt.Println("sink: 64 MiB in")
			told = true
		}
		if err != nil {
			fmt.Println("sink: ended by", class(err))
			fmt.Fprintf(os.Stderr, "sink: %d bytes\n", n)
			if err == io.EOF {
				fmt.Printf("sink: %d bytes %x\n", n, h.Sum(nil))
			}
			break
		}
	}
	c.Close()
	ln.Close()
}

// source sends total bytes of the stream to a sink once it said "go".
func source(addr string, total int64) {
	fmt.Println("source: pid", os.Getpid())
	c, err := dial(addr)
	must(err)
	_, err = io.ReadFull(c, make([]byte, 1))
	must(err)
	h := sha256.New()
	buf := make([]byte, 1<<20)
	x := uint64(0x9e3779b97f4a7c15)
	var sent int64
	for sent < total {
		stream(&x, buf)
		b := buf
		if total-sent < int64(len(b)) {
			b = b[:total-sent]
		}
		k, err := c.Write(b)
		h.Write(b[:k])
		sent += int64(k)
		if err != nil {
			fmt.Println("source: ended by", class(err))
			fmt.Fprintf(os.Stderr, "source: %d bytes\n", sent)
			os.Exit(3)
		}
	}
	must(c.Close())
	fmt.Printf("source: %d bytes %x\n", sent, h.Sum(nil))
}

// churnServe echoes short connections on one port while its listener
// closes and reopens there (open ~20 ms, closed ~2 ms), rounds times.
// Connections still in the backlog at a close are reset, as the kernel
// does. FILE.count gets the connections accepted.
func churnServe(file string, rounds int) {
	ln := listen()
	addr := ln.Addr().String()
	announce(file, addr)
	var wg sync.WaitGroup
	for r := 0; r < rounds; r++ {
		if r > 0 {
			time.Sleep(2 * time.Millisecond)
			for {
				l, err := net.Listen("tcp", addr)
				if err == nil {
					ln = countingListener{l}
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		ln.(countingListener).Listener.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				echo(c)
			}()
		}
		ln.Close()
	}
	wg.Wait()
	must(os.WriteFile(file+".count", []byte(strconv.FormatInt(accepted.Load(), 10)), 0o644))
	fmt.Println("churn-serve: rounds", rounds)
}

// churnClient runs workers that each open a connection, send a line,
// half-close and read the echo, again and again until stdin closes.
// Refused and reset connections are expected (the listener comes and
// goes); an echo that differs or a connection that hangs is not.
// Prints the verdict on stdout, the counts on stderr; FILE gets the
// connections dialed.
func churnClient(addr string, workers int, file string) {
	var stop atomic.Bool
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop.Store(true)
	}()
	var ok, refused, reset, bad atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				c, err := dial(addr)
				if err != nil {
					switch class(err) {
					case "ECONNREFUSED", "ECONNRESET":
						// Closed, or closing during the handshake.
						refused.Add(1)
						time.Sleep(100 * time.Microsecond)
						continue
					}
					bad.Add(1)
					fmt.Fprintln(os.Stderr, "dial:", err)
					continue
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				msg := []byte(fmt.Sprintf("w%d-%d", w, i))
				_, werr := c.Write(msg)
				if werr == nil {
					werr = c.(*net.TCPConn).CloseWrite()
				}
				b, rerr := io.ReadAll(c)
				c.Close()
				switch {
				case werr == nil && rerr == nil && bytes.Equal(b, msg):
					ok.Add(1)
				case len(b) == 0 && (class(rerr) == "ECONNRESET" || class(werr) == "ECONNRESET" || class(werr) == "EPIPE"):
					reset.Add(1)
				default:
					bad.Add(1)
					fmt.Fprintf(os.Stderr, "%s: got %q, write %v, read %v\n", msg, b, werr, rerr)
				}
			}
		}(w)
	}
	wg.Wait()
	fmt.Println("churn-client: bad", bad.Load(), "some ok:", ok.Load() > 0)
	fmt.Fprintf(os.Stderr, "churn-client: dialed %d ok %d refused %d reset %d bad %d\n", dialed.Load(), ok.Load(), refused.Load(), reset.Load(), bad.Load())
	must(os.WriteFile(file, []byte(strconv.FormatInt(dialed.Load(), 10)), 0o644))
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
	case "sink":
		sink(os.Args[2])
	case "source":
		n, _ := strconv.ParseInt(os.Args[3], 10, 64)
		source(os.Args[2], n)
	case "churn-serve":
		n, _ := strconv.Atoi(os.Args[3])
		churnServe(os.Args[2], n)
	case "churn-client":
		n, _ := strconv.Atoi(os.Args[3])
		churnClient(os.Args[2], n, os.Args[4])
	default:
		fmt.Fprintln(os.Stderr, "unknown scenario", os.Args[1])
		os.Exit(2)
	}
}
