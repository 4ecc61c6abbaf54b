// Command fwatchdog is the stock front of shunt's benchmark baseline: what
// an OpenFaaS function runs behind today, an of-watchdog in http mode. It
// starts the function's own server (fprocess) once and proxies every request
// to it over loopback (upstream_url), so a request costs two processes and
// two HTTP hops.
//
// Written for shunt from of-watchdog's documented and observed behaviour
// (the real one cannot be installed here); it keeps what shapes latency and
// what the platform relies on: the request body streamed upstream without a
// length (the upstream sees chunked), status, headers and body copied back
// with X-Duration-Seconds added, exec_timeout → 504, max_inflight → 429,
// /_/health and /_/ready with the lock file, and the SIGTERM drain.
//
// Environment: mode (http, the only one), fprocess, upstream_url, port
// (8080; 0 = any free port), exec_timeout, read_timeout, write_timeout (10s
// each, like the golang-shunt front), healthcheck_interval (write_timeout),
// max_inflight (0 = no limit). Durations are whole seconds or Go durations;
// invalid or negative values keep the default.
//
// Departures from of-watchdog, each for the benchmark's sake: the lock file
// is written once the upstream accepts connections (of-watchdog writes it
// at once, so a client that waits for health may still meet a 500); the
// upstream is killed when the watchdog ends (of-watchdog can leave it
// orphaned, holding its port); the upstream's output is relayed unprefixed
// (prefix_logs=false); there is no streaming mode for event streams, no
// X-Timeout header and no metrics port.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const defaultTimeout = 10 * time.Second

// parseDuration reads a whole number of seconds or a Go duration; empty,
// invalid and negative values give def.
func parseDuration(v string, def time.Duration) time.Duration {
	if v == "" {
		return def
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return def
		}
		return time.Duration(n) * time.Second
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d
	}
	return def
}

type config struct {
	fprocess       []string
	upstream       *url.URL
	upstreamAddr   string // host:port, to see when the upstream listens
	port           string
	readTimeout    time.Duration
	writeTimeout   time.Duration
	execTimeout    time.Duration
	healthInterval time.Duration
	maxInflight    int64
}

func loadConfig(getenv func(string) string) (config, error) {
	var c config
	if m := getenv("mode"); m != "" && m != "http" {
		return c, fmt.Errorf("mode %q: this watchdog has only the http mode", m)
	}
	// As of-watchdog: function_process wins over fprocess, http_upstream_url
	// over upstream_url, and the command line is split on spaces.
	fp := getenv("function_process")
	if fp == "" {
		fp = getenv("fprocess")
	}
	c.fprocess = strings.Fields(fp)
	if len(c.fprocess) == 0 {
		return c, fmt.Errorf("set fprocess (or function_process): the command that starts the function's server")
	}
	up := getenv("http_upstream_url")
	if up == "" {
		up = getenv("upstream_url")
	}
	u, err := url.Parse(strings.TrimSuffix(up, "/"))
	if up == "" || err != nil || u.Host == "" {
		return c, fmt.Errorf("set upstream_url to the function server's URL, e.g. http://127.0.0.1:8082 (got %q)", up)
	}
	c.upstream = u
	if u.Port() == "" {
		c.upstreamAddr = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[u.Scheme == "https"])
	} else {
		c.upstreamAddr = u.Host
	}
	c.port = getenv("port")
	if c.port == "" {
		c.port = "8080"
	}
	c.readTimeout = parseDuration(getenv("read_timeout"), defaultTimeout)
	c.writeTimeout = parseDuration(getenv("write_timeout"), defaultTimeout)
	c.execTimeout = parseDuration(getenv("exec_timeout"), defaultTimeout)
	c.healthInterval = parseDuration(getenv("healthcheck_interval"), c.writeTimeout)
	if n, err := strconv.ParseInt(getenv("max_inflight"), 10, 64); err == nil && n > 0 {
		c.maxInflight = n
	}
	if c.writeTimeout <= 0 {
		return c, fmt.Errorf("write_timeout must be over 0s (got %q)", getenv("write_timeout"))
	}
	return c, nil
}

type watchdog struct {
	cfg       config
	client    *http.Client
	lock      string
	accepting atomic.Bool
	inflight  atomic.Int64
}

func (d *watchdog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_/health":
		d.probe(w, r, false)
	case "/_/ready":
		d.probe(w, r, true)
	default:
		d.proxy(w, r)
	}
}

func (d *watchdog) healthy() bool {
	if !d.accepting.Load() {
		return false
	}
	_, err := os.Stat(d.lock)
	return err == nil
}

func (d *watchdog) probe(w http.ResponseWriter, r *http.Request, ready bool) {
	switch {
	case r.Method != http.MethodGet:
		w.WriteHeader(http.StatusMethodNotAllowed)
	case !d.healthy():
		w.WriteHeader(http.StatusServiceUnavailable)
	case ready && d.cfg.maxInflight > 0 && d.inflight.Load() >= d.cfg.maxInflight:
		w.WriteHeader(http.StatusTooManyRequests)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("OK"))
	}
}

func (d *watchdog) proxy(w http.ResponseWriter, r *http.Request) {
	if n := d.inflight.Add(1); d.cfg.maxInflight > 0 && n > d.cfg.maxInflight {
		d.inflight.Add(-1)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, "Concurrent request limit exceeded. Max concurrent requests: %d\n", d.cfg.maxInflight)
		return
	}
	defer d.inflight.Add(-1)

	start := time.Now()
	ctx := r.Context()
	if d.cfg.execTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.cfg.execTimeout)
		defer cancel()
	}
	// The body goes upstream as a stream: wrapping it hides its length, so
	// the upstream sees Transfer-Encoding: chunked, as behind of-watchdog.
	var body io.Reader
	if r.Body != nil && r.Body != http.NoBody {
		body = io.NopCloser(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, d.cfg.upstream.String()+r.RequestURI, body)
	if err != nil {
		d.fail(w, start, http.StatusBadRequest, err)
		return
	}
	req.Header = r.Header.Clone()
	req.Host = r.Host
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			log.Printf("%s %s: no answer within exec_timeout (%s): 504", r.Method, r.URL.Path, d.cfg.execTimeout)
			d.fail(w, start, http.StatusGatewayTimeout, nil)
		} else {
			d.fail(w, start, http.StatusInternalServerError, err)
		}
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Set("X-Duration-Seconds", seconds(time.Since(start)))
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		// Headers are out: the client sees a cut response.
		log.Printf("%s %s: copying the answer: %v", r.Method, r.URL.Path, err)
	}
}

// fail answers status with an empty body.
func (d *watchdog) fail(w http.ResponseWriter, start time.Time, status int, err error) {
	if err != nil {
		log.Printf("upstream: %v", err)
	}
	w.Header().Set("X-Duration-Seconds", seconds(time.Since(start)))
	w.WriteHeader(status)
}

func seconds(t time.Duration) string {
	return strconv.FormatFloat(t.Seconds(), 'f', 6, 64)
}

// startUpstream starts fprocess with the watchdog's environment and output.
// The child gets SIGKILL if the watchdog dies (PR_SET_PDEATHSIG), so that a
// killed benchmark leaves no server holding the upstream port. The death
// signal follows the thread that forked, so that thread stays locked to the
// goroutine that waits for the child, for the child's whole life.
func startUpstream(argv []string, exited chan<- error) (*os.Process, error) {
	started := make(chan error, 1)
	var proc *os.Process
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		proc = cmd.Process
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return proc, nil
}

// waitForUpstream returns once the upstream accepts a connection.
func waitForUpstream(host string) {
	for {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func main() {
	log.SetPrefix("fwatchdog: ")
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("timeouts: read %s, write %s, exec %s, healthcheck_interval %s; max_inflight %d",
		cfg.readTimeout, cfg.writeTimeout, cfg.execTimeout, cfg.healthInterval, cfg.maxInflight)

	exited := make(chan error, 1)
	child, err := startUpstream(cfg.fprocess, exited)
	if err != nil {
		log.Fatalf("cannot start %q: %v", strings.Join(cfg.fprocess, " "), err)
	}

	d := &watchdog{
		cfg: cfg,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // loopback: never through an HTTP proxy
				DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        1024,
				MaxIdleConnsPerHost: 1024,
				IdleConnTimeout:     120 * time.Second,
				DisableCompression:  true, // pass Accept-Encoding and bodies through untouched
			},
			// Redirects are the client's business.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		lock: filepath.Join(os.TempDir(), ".lock"),
	}
	srv := &http.Server{Handler: d, ReadTimeout: cfg.readTimeout, WriteTimeout: cfg.writeTimeout}
	ln, err := net.Listen("tcp", ":"+cfg.port)
	if err != nil {
		child.Kill()
		log.Fatalf("cannot listen on port %s: %v", cfg.port, err)
	}
	go func() {
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			child.Kill()
			log.Fatalf("serving: %v", err)
		}
	}()
	log.Printf("listening on %s, upstream %s", ln.Addr(), cfg.upstream)

	ready := make(chan struct{})
	go func() {
		waitForUpstream(cfg.upstreamAddr)
		close(ready)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	var s os.Signal
	for s == nil {
		select {
		case <-ready:
			ready = nil
			if err := os.WriteFile(d.lock, nil, 0o660); err != nil {
				child.Kill()
				log.Fatalf("cannot write the lock file: %v", err)
			}
			d.accepting.Store(true)
			log.Printf("upstream %s accepts connections: healthy", cfg.upstreamAddr)
		case err := <-exited:
			// As of-watchdog: without its function the watchdog is useless.
			log.Fatalf("forked function has terminated: %v", err)
		case s = <-sig:
		}
	}

	// Unhealthy at once; the function hears SIGTERM at once too and drains
	// on its own. Requests are still proxied for healthcheck_interval, then
	// the listener closes and those in flight get up to write_timeout.
	d.accepting.Store(false)
	os.Remove(d.lock)
	child.Signal(syscall.SIGTERM)
	log.Printf("%v: serving for %s more, then draining", s, cfg.healthInterval)
	time.Sleep(cfg.healthInterval)
	log.Printf("draining: %d request(s) in flight", d.inflight.Load())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.writeTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("drain cut short after %s: %v", cfg.writeTimeout, err)
	}
	// The function had as long as we did; do not leave it behind.
	select {
	case <-exited:
	case <-time.After(time.Second):
		log.Printf("the function is still running: killing it")
		child.Kill()
		<-exited
	}
	log.Printf("exiting")
}
