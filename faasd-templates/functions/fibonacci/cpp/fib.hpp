// vSwarm's fibonacci function (benchmarks/fibonacci/go) in C++, with GMP.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fib {

// The largest n answered: one request cannot ask for unbounded work (the
// golang-shunt version has the same bound). F(100000) has 20899 digits.
constexpr std::int64_t kMaxN = 100000;

// Go's strconv.ParseInt(s, 10, 64) with the error ignored, as vSwarm reads
// its input: an optional sign and decimal digits, nothing else; a syntax
// error gives 0, a value out of range the nearest int64 limit.
std::int64_t parse_int64(std::string_view s);

// x as the function reads it: parse_int64 of the text without the ASCII
// white space around it (vSwarm's gRPC strings have none; HTTP bodies sent
// with `echo` end in a newline).
std::int64_t parse_x(std::string_view text);

// F(n) in decimal, iteratively with big integers (as vSwarm);
// F(n) = 0 for n <= 0. Requires n <= kMaxN.
std::string fibonacci(std::int64_t n);

// vSwarm's answer line for x:
// "fn: Fib: y = fib(x) | x: <x> y: <F(x)> | runtime: cpp".
std::string answer(std::int64_t x);

}  // namespace fib
