// Command handler is the upstream of the stock Go configuration, shaped
// like golang-middleware's entrypoint: function.Handle behind its own HTTP
// server, reached through the stock watchdog (../watchdog) over loopback.
// Our code, written from that template's documented behaviour.
//
// It listens on the port of upstream_url, which it inherits from the
// watchdog, so that several stock pairs can run side by side (e.g. tests);
// golang-middleware always uses 8082, the default here too. read_timeout,
// write_timeout (10s) and healthcheck_interval (write_timeout) are read as
// the watchdog reads them; on SIGTERM (the watchdog forwards it) the server
// keeps serving for healthcheck_interval, then drains for up to write_timeout.
package main

import (
	"context"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"handler/function"
)

const defaultTimeout = 10 * time.Second

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

// listenAddr is the host:port of upstream_url, else :8082.
func listenAddr() string {
	for _, k := range []string{"http_upstream_url", "upstream_url"} {
		if u, err := url.Parse(os.Getenv(k)); err == nil && u.Port() != "" {
			return net.JoinHostPort(u.Hostname(), u.Port())
		}
	}
	return ":8082"
}

func main() {
	log.SetPrefix("upstream: ")
	readTimeout := parseDuration(os.Getenv("read_timeout"), defaultTimeout)
	writeTimeout := parseDuration(os.Getenv("write_timeout"), defaultTimeout)
	healthInterval := parseDuration(os.Getenv("healthcheck_interval"), writeTimeout)

	srv := &http.Server{
		Handler:        http.HandlerFunc(function.Handle),
		ReadTimeout:    readTimeout,
		WriteTimeout:   writeTimeout,
		MaxHeaderBytes: 1 << 20,
	}
	ln, err := net.Listen("tcp", listenAddr())
	if err != nil {
		log.Fatalf("cannot listen: %v", err)
	}
	go func() {
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			log.Fatalf("serving: %v", err)
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	log.Printf("SIGTERM: serving for %s more, then draining", healthInterval)
	time.Sleep(healthInterval)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("drain cut short: %v", err)
	}
	log.Printf("exiting")
}
