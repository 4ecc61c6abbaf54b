package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// front routes /_/health and /_/ready itself and every other path to the
// handler, with of-watchdog's limits: max_inflight and exec_timeout.
type front struct {
	cfg       config
	handle    http.HandlerFunc
	lock      string
	accepting atomic.Bool  // false before start and after SIGTERM
	inflight  atomic.Int64 // requests in the handler now
}

func newFront(cfg config, handle http.HandlerFunc, lock string) *front {
	return &front{cfg: cfg, handle: handle, lock: lock}
}

// start writes the lock file and declares the front healthy.
func (f *front) start() error {
	if err := os.WriteFile(f.lock, nil, 0o660); err != nil {
		return fmt.Errorf("cannot write the lock file: %w", err)
	}
	f.accepting.Store(true)
	return nil
}

// stop declares the front unhealthy (SIGTERM); requests are still served.
func (f *front) stop() {
	f.accepting.Store(false)
	if err := os.Remove(f.lock); err != nil && !os.IsNotExist(err) {
		log.Printf("cannot remove the lock file: %v", err)
	}
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A plain switch rather than a ServeMux: the handler gets every other
	// path exactly as sent, without the mux's cleaning and redirects.
	switch r.URL.Path {
	case "/_/health":
		f.probe(w, r, false)
	case "/_/ready":
		f.probe(w, r, true)
	default:
		f.invoke(w, r)
	}
}

// healthy: the lock file exists (someone may remove it to take the
// function out of service) and SIGTERM has not arrived.
func (f *front) healthy() bool {
	if !f.accepting.Load() {
		return false
	}
	_, err := os.Stat(f.lock)
	return err == nil
}

// probe answers /_/health, and /_/ready, which also says 429 while the
// in-flight limit is reached. Neither counts against the limit.
func (f *front) probe(w http.ResponseWriter, r *http.Request, ready bool) {
	switch {
	case r.Method != http.MethodGet:
		w.WriteHeader(http.StatusMethodNotAllowed)
	case !f.healthy():
		w.WriteHeader(http.StatusServiceUnavailable)
	case ready && f.cfg.maxInflight > 0 && f.inflight.Load() >= f.cfg.maxInflight:
		w.WriteHeader(http.StatusTooManyRequests)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("OK"))
	}
}

// invoke runs the handler for one request, on this goroutine: handing it
// to another one so that this one could answer at exec_timeout would cost
// every request a goroutine and a wake-up (6-8 µs here, measured with
// BenchmarkInvoke). Instead a timer answers at exec_timeout, from its own
// goroutine, through reply's lock, while the handler runs on.
func (f *front) invoke(w http.ResponseWriter, r *http.Request) {
	if n := f.inflight.Add(1); f.cfg.maxInflight > 0 && n > f.cfg.maxInflight {
		f.inflight.Add(-1)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, "Concurrent request limit exceeded. Max concurrent requests: %d\n", f.cfg.maxInflight)
		return
	}
	// A handler that outlives exec_timeout still counts until it returns:
	// it still holds its share of the instance.
	defer f.inflight.Add(-1)

	rep := &reply{w: w, header: make(http.Header), start: time.Now()}
	req := r
	if f.cfg.execTimeout > 0 {
		client := r.Context()
		ctx, cancel := context.WithTimeout(client, f.cfg.execTimeout)
		defer cancel()
		// Runs when ctx ends: at exec_timeout, or when the client goes away.
		stop := context.AfterFunc(ctx, func() { f.late(rep, r, client) })
		defer stop()
		req = r.WithContext(ctx)
	}
	if p := run(f.handle, rep, req); p != nil {
		rep.fail(p)
		return
	}
	rep.finish()
}

// late acts for a handler still running when its context ended. It holds
// reply's lock throughout, so the handler cannot write meanwhile, and does
// nothing if the handler has returned.
func (f *front) late(rep *reply, r *http.Request, client context.Context) {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.closed {
		return
	}
	rep.closed = true // from now on the handler's writes fail
	if client.Err() != nil {
		return // the client went away: nobody to answer
	}
	log.Printf("%s %s: still running at exec_timeout (%s): 504", r.Method, r.URL.Path, f.cfg.execTimeout)
	rc := http.NewResponseController(rep.w)
	if !rep.wroteHeader {
		// A complete 504. The response may be due at write_timeout already
		// (both default to 10s): give it a moment of its own to go out.
		rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		h := rep.w.Header()
		h.Set("X-Duration-Seconds", seconds(time.Since(rep.start)))
		h.Set("Content-Length", "0")
		h.Set("Connection", "close")
		rep.wroteHeader = true
		rep.w.WriteHeader(http.StatusGatewayTimeout)
	}
	// The connection is the handler's until it returns, so take it (net/http
	// allows that once the status is out, and sends what it holds first) and
	// close it: the client is done now, with a complete 504, or with the
	// handler's response cut short if it had sent its status already.
	if conn, _, err := rc.Hijack(); err == nil {
		conn.Close()
	} else {
		rc.Flush()
	}
}

// handlerPanic is a panic of the handler, with its stack.
type handlerPanic struct {
	value any
	stack []byte
}

// run calls the handler and catches its panic, so that the front can
// still answer for it.
func run(handle http.HandlerFunc, rep *reply, r *http.Request) (p *handlerPanic) {
	defer func() {
		if v := recover(); v != nil {
			p = &handlerPanic{value: v, stack: debug.Stack()}
		}
	}()
	handle(rep, r)
	return nil
}

// fail answers for a handler that panicked: 500 if it had not sent a
// status yet (what a stock watchdog answers when its upstream drops the
// connection), else the response is cut short by net/http's own
// http.ErrAbortHandler. Nothing more if the front had answered already.
func (rep *reply) fail(p *handlerPanic) {
	if p.value != http.ErrAbortHandler {
		log.Printf("handler panic: %v\n%s", p.value, p.stack)
	}
	rep.mu.Lock()
	closed, wrote := rep.closed, rep.wroteHeader
	rep.closed = true
	if !closed && !wrote && p.value != http.ErrAbortHandler {
		rep.wroteHeader = true
		rep.w.Header().Set("X-Duration-Seconds", seconds(time.Since(rep.start)))
		rep.w.WriteHeader(http.StatusInternalServerError)
	}
	rep.mu.Unlock()
	if !closed && (wrote || p.value == http.ErrAbortHandler) {
		panic(http.ErrAbortHandler)
	}
}

// reply is the ResponseWriter the handler gets. Writes go straight to the
// connection (nothing is buffered, streaming works) until the front answers
// in the handler's place (exec_timeout, panic) or the request ends; from
// then on they fail with http.ErrHandlerTimeout. The handler's headers are
// its own map, copied when the status goes out, so that the front never
// touches a map the handler may still be writing.
type reply struct {
	mu          sync.Mutex
	w           http.ResponseWriter
	header      http.Header
	start       time.Time
	wroteHeader bool // the status is out
	closed      bool // the handler may no longer write, nor the front after it
}

func (rep *reply) Header() http.Header { return rep.header }

func (rep *reply) WriteHeader(code int) {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if !rep.closed && !rep.wroteHeader {
		rep.writeHeader(code)
	}
}

func (rep *reply) Write(b []byte) (int, error) {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.closed {
		return 0, http.ErrHandlerTimeout
	}
	if !rep.wroteHeader {
		rep.writeHeader(http.StatusOK)
	}
	return rep.w.Write(b)
}

// Flush sends what was written so far (http.Flusher).
func (rep *reply) Flush() { rep.FlushError() }

// FlushError is what http.ResponseController calls.
func (rep *reply) FlushError() error {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.closed {
		return http.ErrHandlerTimeout
	}
	if !rep.wroteHeader {
		rep.writeHeader(http.StatusOK)
	}
	return http.NewResponseController(rep.w).Flush()
}

// writeHeader sends the handler's headers and status; mu is held.
func (rep *reply) writeHeader(code int) {
	dst := rep.w.Header()
	for k, v := range rep.header {
		dst[k] = v
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		rep.w.WriteHeader(code) // informational: the real status comes later
		return
	}
	rep.wroteHeader = true
	// As of-watchdog, the time until the function's response began.
	dst.Set("X-Duration-Seconds", seconds(time.Since(rep.start)))
	rep.w.WriteHeader(code)
}

// finish completes a response after the handler returned: the status if
// the handler never sent one, and the trailers it set meanwhile.
func (rep *reply) finish() {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.closed {
		return
	}
	if !rep.wroteHeader {
		rep.writeHeader(http.StatusOK)
	}
	dst := rep.w.Header()
	for k, v := range rep.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			dst[k] = v
		}
	}
	for _, decl := range rep.header.Values("Trailer") {
		for _, k := range strings.Split(decl, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				dst[k] = rep.header[k]
			}
		}
	}
	rep.closed = true
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64)
}
