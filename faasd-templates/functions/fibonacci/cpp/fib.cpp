#include "fib.hpp"

#include <gmp.h>

#include <limits>
#include <stdexcept>

namespace fib {

namespace {

// An mpz_t that clears itself.
class Big {
public:
    explicit Big(unsigned long v) { mpz_init_set_ui(z_, v); }
    ~Big() { mpz_clear(z_); }
    Big(const Big&) = delete;
    Big& operator=(const Big&) = delete;
    mpz_ptr get() { return z_; }

private:
    mpz_t z_;
};

}  // namespace

std::int64_t parse_int64(std::string_view s) {
    bool neg = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s.empty()) return 0;
    // Accumulate the magnitude; past 2^63 it is out of range.
    constexpr std::uint64_t kLimit = std::uint64_t(1) << 63;
    std::uint64_t v = 0;
    bool range = false;
    for (char c : s) {
        if (c < '0' || c > '9') return 0;  // syntax error: Go returns 0
        std::uint64_t d = std::uint64_t(c - '0');
        if (range) continue;
        if (v > kLimit / 10 || (v == kLimit / 10 && d > kLimit % 10)) {
            range = true;  // v * 10 + d would pass 2^63
        } else {
            v = v * 10 + d;
        }
    }
    if (neg) {
        if (range || v == kLimit) return std::numeric_limits<std::int64_t>::min();
        return -std::int64_t(v);
    }
    if (range || v >= kLimit) return std::numeric_limits<std::int64_t>::max();
    return std::int64_t(v);
}

std::int64_t parse_x(std::string_view text) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
    while (!text.empty() && space(text.front())) text.remove_prefix(1);
    while (!text.empty() && space(text.back())) text.remove_suffix(1);
    return parse_int64(text);
}

std::string fibonacci(std::int64_t n) {
    if (n > kMaxN) throw std::invalid_argument("fibonacci: n is over the limit");
    Big a(0), b(1);
    for (std::int64_t i = 0; i < n; i++) {
        mpz_add(a.get(), a.get(), b.get());
        mpz_swap(a.get(), b.get());
    }
    std::string out(mpz_sizeinbase(a.get(), 10) + 2, '\0');
    mpz_get_str(&out[0], 10, a.get());
    out.resize(out.find('\0'));
    return out;
}

std::string answer(std::int64_t x) {
    return "fn: Fib: y = fib(x) | x: " + std::to_string(x) + " y: " + fibonacci(x) + " | runtime: cpp";
}

}  // namespace fib
