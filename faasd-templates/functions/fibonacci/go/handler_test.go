package function

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// vSwarm's outputs (benchmarks/fibonacci/go).
var vectors = map[string]string{
	"10":  "fn: Fib: y = fib(x) | x: 10 y: 55 | runtime: GoLang",
	"0":   "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: GoLang",
	"1":   "fn: Fib: y = fib(x) | x: 1 y: 1 | runtime: GoLang",
	"2":   "fn: Fib: y = fib(x) | x: 2 y: 1 | runtime: GoLang",
	"100": "fn: Fib: y = fib(x) | x: 100 y: 354224848179261915075 | runtime: GoLang",
	"":    "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: GoLang",
	"abc": "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: GoLang",
	"-5":  "fn: Fib: y = fib(x) | x: -5 y: 0 | runtime: GoLang",
	"1e3": "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: GoLang",
	// The one departure: white space around the number is ignored.
	"10\n": "fn: Fib: y = fib(x) | x: 10 y: 55 | runtime: GoLang",
}

func TestFib(t *testing.T) {
	for in, want := range vectors {
		if got := Fib(ParseX(in)); got != want {
			t.Errorf("Fib(ParseX(%q)) = %q, want %q", in, got, want)
		}
	}
}

func TestFibAgreesWithTheRecurrence(t *testing.T) {
	// F(n) for n = 0..92 fits an int64: check the big-integer loop against it.
	a, b := int64(0), int64(1)
	for n := int64(0); n <= 92; n++ {
		want := "fn: Fib: y = fib(x) | x: " + itoa(n) + " y: " + itoa(a) + " | runtime: GoLang"
		if got := Fib(n); got != want {
			t.Fatalf("Fib(%d) = %q, want %q", n, got, want)
		}
		a, b = b, a+b
	}
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func TestHandle(t *testing.T) {
	for in, want := range vectors {
		rec := httptest.NewRecorder()
		Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(in)))
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("POST %q: %d %q, want 200 %q", in, rec.Code, rec.Body.String(), want)
		}
	}
	rec := httptest.NewRecorder()
	Handle(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Body.String() != vectors[""] {
		t.Errorf("GET without a body: %q", rec.Body.String())
	}
}

func TestHandleRefusesHugeX(t *testing.T) {
	rec := httptest.NewRecorder()
	Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("100001")))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "over this function's limit") {
		t.Errorf("x = 100001: %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("100000")))
	if rec.Code != http.StatusOK || len(rec.Body.String()) < 20899 {
		t.Errorf("x = 100000: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}
