// Command handler is a golang-shunt function: the function's Handle and an
// of-watchdog-compatible front (http mode) linked into one program.
//
// A stock golang-middleware function runs as two processes: of-watchdog
// receives the request and proxies it over loopback to the template's own
// HTTP server, which calls Handle. Here the front's listener calls Handle
// directly (what OpenFaaS calls inproc mode): one process, one hop, and
// built with `shunt go build`, the front's system calls enter the shunt
// runtime as the handler's do.
//
// Configuration, from the environment as of-watchdog reads it:
//
//	port                  TCP port to listen on, all interfaces (8080; 0 = any free port)
//	exec_timeout          longest a request may run; past it the client gets 504 (10s; 0 = no limit)
//	read_timeout          longest to read a request (10s)
//	write_timeout         longest to write a response, and the drain limit on SIGTERM (10s; must be over 0)
//	healthcheck_interval  how long requests are still served after SIGTERM (write_timeout)
//	max_inflight          requests run at once before 429 (0 = no limit)
//
// A duration is a whole number of seconds ("5") or a Go duration ("500ms",
// "1m30s"); anything else, and a negative number, keeps the default.
//
// The defaults are golang-middleware's entrypoint's (10s), not
// of-watchdog's (30s): with no environment, a stock golang-middleware
// function is bounded by its entrypoint's 10s write timeout whatever the
// watchdog allows, so 10s keeps the one process behaving like the pair.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"handler/function"
)

const defaultTimeout = 10 * time.Second

// config is the front's environment, parsed.
type config struct {
	port           string
	readTimeout    time.Duration
	writeTimeout   time.Duration
	execTimeout    time.Duration
	healthInterval time.Duration
	maxInflight    int64
}

// loadConfig reads the configuration through getenv (os.Getenv in main).
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		port:         getenv("port"),
		readTimeout:  parseDuration(getenv("read_timeout"), defaultTimeout),
		writeTimeout: parseDuration(getenv("write_timeout"), defaultTimeout),
		execTimeout:  parseDuration(getenv("exec_timeout"), defaultTimeout),
	}
	if c.port == "" {
		c.port = "8080"
	}
	c.healthInterval = parseDuration(getenv("healthcheck_interval"), c.writeTimeout)
	if n, err := strconv.ParseInt(getenv("max_inflight"), 10, 64); err == nil && n > 0 {
		c.maxInflight = n
	}
	// of-watchdog refuses to start with a zero write timeout: every response
	// would fail.
	if c.writeTimeout <= 0 {
		return c, fmt.Errorf("write_timeout must be over 0s (got %q)", getenv("write_timeout"))
	}
	return c, nil
}

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

func main() {
	log.SetPrefix("golang-shunt: ")
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("timeouts: read %s, write %s, exec %s, healthcheck_interval %s; max_inflight %d",
		cfg.readTimeout, cfg.writeTimeout, cfg.execTimeout, cfg.healthInterval, cfg.maxInflight)

	f := newFront(cfg, function.Handle, filepath.Join(os.TempDir(), ".lock"))
	srv := &http.Server{
		Handler:      f,
		ReadTimeout:  cfg.readTimeout,
		WriteTimeout: cfg.writeTimeout,
	}
	ln, err := net.Listen("tcp", ":"+cfg.port)
	if err != nil {
		log.Fatalf("cannot listen on port %s: %v", cfg.port, err)
	}
	go func() {
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			log.Fatalf("serving: %v", err)
		}
	}()
	// As of-watchdog: the lock (the container health check's file) is
	// written once the listener is up; the handler needs no warm-up of its own.
	if err := f.start(); err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s", ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	s := <-sig
	name := "SIGTERM"
	if s == os.Interrupt {
		name = "SIGINT"
	}

	// Unhealthy at once, so that the platform stops routing here, but keep
	// serving whatever still arrives for healthcheck_interval; then stop
	// accepting and give the requests in flight up to write_timeout.
	f.stop()
	log.Printf("%s: serving for %s more, then draining", name, cfg.healthInterval)
	time.Sleep(cfg.healthInterval)
	log.Printf("draining: %d request(s) in flight", f.inflight.Load())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.writeTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("drain cut short after %s: %v", cfg.writeTimeout, err)
	}
	log.Printf("exiting")
}
