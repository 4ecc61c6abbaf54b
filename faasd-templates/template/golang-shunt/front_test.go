package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	def := 7 * time.Second
	for in, want := range map[string]time.Duration{
		"":      def,
		"0":     0,
		"2":     2 * time.Second,
		"90":    90 * time.Second,
		"500ms": 500 * time.Millisecond,
		"1m30s": 90 * time.Second,
		"2s":    2 * time.Second,
		"-3":    def,
		"-1s":   def,
		"abc":   def,
		"1.5":   def, // neither whole seconds nor a Go duration
	} {
		if got := parseDuration(in, def); got != want {
			t.Errorf("parseDuration(%q) = %s, want %s", in, got, want)
		}
	}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	c, err := loadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := config{port: "8080", readTimeout: defaultTimeout, writeTimeout: defaultTimeout,
		execTimeout: defaultTimeout, healthInterval: defaultTimeout}
	if c != want {
		t.Errorf("defaults: %+v, want %+v", c, want)
	}
	c, err = loadConfig(env(map[string]string{"port": "9000", "write_timeout": "3", "exec_timeout": "0",
		"read_timeout": "250ms", "max_inflight": "4"}))
	if err != nil {
		t.Fatal(err)
	}
	want = config{port: "9000", readTimeout: 250 * time.Millisecond, writeTimeout: 3 * time.Second,
		execTimeout: 0, healthInterval: 3 * time.Second, maxInflight: 4}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	for _, bad := range []string{"x", "-2"} {
		if c, _ := loadConfig(env(map[string]string{"max_inflight": bad})); c.maxInflight != 0 {
			t.Errorf("max_inflight=%q gave %d, want 0 (no limit)", bad, c.maxInflight)
		}
	}
	if _, err := loadConfig(env(map[string]string{"write_timeout": "0"})); err == nil {
		t.Error("write_timeout=0 was accepted")
	}
}

// serve runs a front around h on a test server.
func serve(t *testing.T, cfg config, h http.HandlerFunc) (*front, *httptest.Server) {
	t.Helper()
	f := newFront(cfg, h, filepath.Join(t.TempDir(), ".lock"))
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var base = config{readTimeout: 5 * time.Second, writeTimeout: 5 * time.Second, execTimeout: 5 * time.Second}

func TestHandlerGetsThePathHeadersAndBody(t *testing.T) {
	for _, exec := range []time.Duration{0, 5 * time.Second} {
		cfg := base
		cfg.execTimeout = exec
		_, srv := serve(t, cfg, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Echo", r.Header.Get("X-In"))
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
		})
		req, _ := http.NewRequest("PUT", srv.URL+"//a/../b?q=1", strings.NewReader("data"))
		req.Header.Set("X-In", "hi")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 || string(b) != "PUT //a/../b?q=1 data" || resp.Header.Get("X-Echo") != "hi" {
			t.Errorf("exec %s: %d %q %v", exec, resp.StatusCode, b, resp.Header)
		}
		if resp.Header.Get("X-Duration-Seconds") == "" {
			t.Errorf("exec %s: no X-Duration-Seconds", exec)
		}
	}
}

func TestExecTimeoutAnswers504AndStopsTheHandlersWrites(t *testing.T) {
	cfg := base
	cfg.execTimeout = 200 * time.Millisecond
	wrote := make(chan error, 1)
	_, srv := serve(t, cfg, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the front cancels the handler's context
		time.Sleep(100 * time.Millisecond)
		_, err := w.Write([]byte("too late"))
		wrote <- err
	})
	resp, body := get(t, srv.URL)
	if resp.StatusCode != http.StatusGatewayTimeout || body != "" {
		t.Errorf("got %d %q, want 504 and no body", resp.StatusCode, body)
	}
	if err := <-wrote; err != http.ErrHandlerTimeout {
		t.Errorf("a write after the 504 gave %v, want http.ErrHandlerTimeout", err)
	}
}

func TestExecTimeoutDoesNotWaitForAStuckHandler(t *testing.T) {
	cfg := base
	cfg.execTimeout = 200 * time.Millisecond
	release := make(chan struct{})
	f, srv := serve(t, cfg, func(w http.ResponseWriter, r *http.Request) {
		<-release // ignores its context
	})
	defer close(release)
	start := time.Now()
	resp, _ := get(t, srv.URL)
	if took := time.Since(start); resp.StatusCode != http.StatusGatewayTimeout || took > 3*time.Second {
		t.Errorf("got %d after %s, want 504 at exec_timeout", resp.StatusCode, took)
	}
	if !resp.Close || resp.Header.Get("X-Duration-Seconds") == "" {
		t.Errorf("504 headers: %v", resp.Header)
	}
	if n := f.inflight.Load(); n != 1 {
		t.Errorf("the stuck handler should still count in flight: %d", n)
	}
}

func TestExecTimeoutAfterTheStatusCutsTheResponse(t *testing.T) {
	cfg := base
	cfg.execTimeout = 200 * time.Millisecond
	_, srv := serve(t, cfg, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		time.Sleep(3 * time.Second) // ignores its context
	})
	start := time.Now()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "partial" || err == nil {
		t.Errorf("got %d %q (read error %v), want 200 \"partial\" and a cut stream", resp.StatusCode, b, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the response was cut after %s: at the handler's return, not at exec_timeout", took)
	}
}

func TestPanicGives500AndTheFrontSurvives(t *testing.T) {
	for _, exec := range []time.Duration{0, 5 * time.Second} {
		cfg := base
		cfg.execTimeout = exec
		_, srv := serve(t, cfg, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/panic" {
				panic("boom")
			}
			w.Write([]byte("fine"))
		})
		if resp, _ := get(t, srv.URL+"/panic"); resp.StatusCode != 500 {
			t.Errorf("exec %s: panic gave %d", exec, resp.StatusCode)
		}
		if resp, body := get(t, srv.URL+"/"); resp.StatusCode != 200 || body != "fine" {
			t.Errorf("exec %s: after the panic: %d %q", exec, resp.StatusCode, body)
		}
	}
}

func TestMaxInflight(t *testing.T) {
	cfg := base
	cfg.maxInflight = 1
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	f, srv := serve(t, cfg, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.Write([]byte("done"))
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, body := get(t, srv.URL); resp.StatusCode != 200 || body != "done" {
			t.Errorf("first request: %d %q", resp.StatusCode, body)
		}
	}()
	<-entered
	resp, body := get(t, srv.URL)
	if resp.StatusCode != 429 || body != "Concurrent request limit exceeded. Max concurrent requests: 1\n" {
		t.Errorf("second request: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, srv.URL+"/_/ready"); resp.StatusCode != 429 {
		t.Errorf("ready at the limit: %d", resp.StatusCode)
	}
	if resp, body := get(t, srv.URL+"/_/health"); resp.StatusCode != 200 || body != "OK" {
		t.Errorf("health at the limit: %d %q", resp.StatusCode, body)
	}
	close(release)
	wg.Wait()
	if resp, _ := get(t, srv.URL+"/_/ready"); resp.StatusCode != 200 {
		t.Errorf("ready below the limit: %d", resp.StatusCode)
	}
	if n := f.inflight.Load(); n != 0 {
		t.Errorf("%d request(s) still counted in flight", n)
	}
}

func TestHealthFollowsTheLockAndStop(t *testing.T) {
	f, srv := serve(t, base, func(w http.ResponseWriter, r *http.Request) {})
	check := func(what string, want int) {
		t.Helper()
		for _, p := range []string{"/_/health", "/_/ready"} {
			if resp, _ := get(t, srv.URL+p); resp.StatusCode != want {
				t.Errorf("%s: %s gave %d, want %d", what, p, resp.StatusCode, want)
			}
		}
	}
	check("started", 200)
	os.Remove(f.lock)
	check("lock removed", 503)
	os.WriteFile(f.lock, nil, 0o600)
	check("lock back", 200)
	f.stop()
	check("stopped", 503)
	if _, err := os.Stat(f.lock); !os.IsNotExist(err) {
		t.Errorf("the lock survived stop: %v", err)
	}
	resp, err := http.Post(srv.URL+"/_/health", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /_/health: %d", resp.StatusCode)
	}
}

func TestTrailersAndStreaming(t *testing.T) {
	_, srv := serve(t, base, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Write([]byte("a"))
		http.NewResponseController(w).Flush()
		w.Write([]byte("b"))
		w.Header().Set("X-Sum", "2")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ab" || resp.Trailer.Get("X-Sum") != "2" || resp.Trailer.Get("X-Late") != "yes" {
		t.Errorf("body %q, trailers %v", b, resp.Trailer)
	}
}

// BenchmarkInvoke measures what the front adds to a request, without the
// network: inline (exec_timeout=0) and on its own goroutine (the default).
func BenchmarkInvoke(b *testing.B) {
	for _, exec := range []time.Duration{0, 10 * time.Second} {
		b.Run("exec="+exec.String(), func(b *testing.B) {
			cfg := base
			cfg.execTimeout = exec
			f := newFront(cfg, func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte("ok"))
			}, filepath.Join(b.TempDir(), ".lock"))
			req := httptest.NewRequest("POST", "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				f.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
