package main

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	c, err := loadConfig(env(map[string]string{"fprocess": "./handler -x", "upstream_url": "http://127.0.0.1:8082/"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.fprocess, "|") != "./handler|-x" || c.upstream.String() != "http://127.0.0.1:8082" ||
		c.upstreamAddr != "127.0.0.1:8082" || c.port != "8080" {
		t.Errorf("got %+v", c)
	}
	if c.readTimeout != defaultTimeout || c.writeTimeout != defaultTimeout || c.execTimeout != defaultTimeout ||
		c.healthInterval != defaultTimeout || c.maxInflight != 0 {
		t.Errorf("defaults: %+v", c)
	}

	c, err = loadConfig(env(map[string]string{"fprocess": "a", "function_process": "b", "upstream_url": "http://x:1",
		"http_upstream_url": "http://localhost", "write_timeout": "2", "exec_timeout": "1m", "read_timeout": "bad",
		"max_inflight": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.fprocess[0] != "b" || c.upstreamAddr != "localhost:80" || c.writeTimeout != 2*time.Second ||
		c.healthInterval != 2*time.Second || c.execTimeout != time.Minute || c.readTimeout != defaultTimeout || c.maxInflight != 5 {
		t.Errorf("overrides: %+v", c)
	}

	for _, bad := range []map[string]string{
		{"upstream_url": "http://127.0.0.1:8082"},
		{"fprocess": "./handler"},
		{"fprocess": "./handler", "upstream_url": "not a url"},
		{"fprocess": "./handler", "upstream_url": "http://127.0.0.1:8082", "write_timeout": "0"},
		{"fprocess": "./handler", "upstream_url": "http://127.0.0.1:8082", "mode": "streaming"},
	} {
		if _, err := loadConfig(env(bad)); err == nil {
			t.Errorf("%v was accepted", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 3 * time.Second, "0": 0, "4": 4 * time.Second,
		"250ms": 250 * time.Millisecond, "-1": 3 * time.Second, "x": 3 * time.Second} {
		if got := parseDuration(in, 3*time.Second); got != want {
			t.Errorf("parseDuration(%q) = %s, want %s", in, got, want)
		}
	}
}
