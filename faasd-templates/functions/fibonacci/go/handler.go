// The vSwarm "fibonacci" function (benchmarks/fibonacci/go) as a handler of
// the golang-shunt template: the request body is x, the answer F(x) computed
// with big integers, in vSwarm's exact output format.
package function

import (
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
)

// MaxX bounds the work one request can ask for: F(100000) has 20899 digits
// and takes about 35 ms; F(1000000) would take seconds. vSwarm has no bound.
const MaxX = 100000

// Fib returns vSwarm's answer for x: F(x), with F(x) = 0 for x <= 0.
func Fib(x int64) string {
	a, b := big.NewInt(0), big.NewInt(1)
	for i := int64(0); i < x; i++ {
		a.Add(a, b)
		a, b = b, a
	}
	return fmt.Sprintf("fn: Fib: y = fib(x) | x: %d y: %s | runtime: GoLang", x, a.String())
}

// ParseX reads x as vSwarm does: text that is not a decimal int64 means 0.
// Surrounding white space is dropped first (a departure from vSwarm, whose
// gRPC strings have none) so that `echo 10 | faas-cli invoke` asks for F(10).
func ParseX(input string) int64 {
	x, _ := strconv.ParseInt(strings.TrimSpace(input), 10, 64)
	return x
}

// Handle answers any method: the request body is x.
func Handle(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		defer r.Body.Close()
		// A longer body is not an int64 anyway.
		body, _ = io.ReadAll(io.LimitReader(r.Body, 64))
	}
	x := ParseX(string(body))
	if x > MaxX {
		http.Error(w, fmt.Sprintf("fibonacci: x = %d is over this function's limit (%d)", x, MaxX), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, Fib(x))
}
