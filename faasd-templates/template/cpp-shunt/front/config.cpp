#include "config.hpp"

#include <cerrno>
#include <cstdlib>
#include <limits>

namespace front {

namespace {

constexpr std::uint64_t kMax = std::uint64_t(1) << 63;  // |int64 min|

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Leading decimal digits of `s` as an integer; false if it exceeds 2^63.
bool leading_int(std::string_view& s, std::uint64_t& x) {
    x = 0;
    std::size_t i = 0;
    for (; i < s.size() && is_digit(s[i]); i++) {
        if (x > kMax / 10) return false;
        x = x * 10 + std::uint64_t(s[i] - '0');
        if (x > kMax) return false;
    }
    s.remove_prefix(i);
    return true;
}

// Leading fraction digits: as many as fit, the rest are skipped.
void leading_fraction(std::string_view& s, std::uint64_t& x, double& scale) {
    x = 0;
    scale = 1;
    bool overflow = false;
    std::size_t i = 0;
    for (; i < s.size() && is_digit(s[i]); i++) {
        if (overflow) continue;
        if (x > (kMax - 1) / 10) {
            overflow = true;
            continue;
        }
        std::uint64_t y = x * 10 + std::uint64_t(s[i] - '0');
        if (y > kMax) {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10;
    }
    s.remove_prefix(i);
}

bool unit_value(std::string_view u, std::uint64_t& ns) {
    struct Unit {
        const char* name;
        std::uint64_t ns;
    };
    static const Unit units[] = {
        {"ns", 1ULL},
        {"us", 1000ULL},
        {"\xC2\xB5s", 1000ULL},  // U+00B5 micro sign
        {"\xCE\xBCs", 1000ULL},  // U+03BC Greek mu
        {"ms", 1000000ULL},
        {"s", 1000000000ULL},
        {"m", 60000000000ULL},
        {"h", 3600000000000ULL},
    };
    for (const Unit& x : units) {
        if (u == x.name) {
            ns = x.ns;
            return true;
        }
    }
    return false;
}

}  // namespace

bool parse_go_duration(std::string_view s, Duration& out) {
    bool neg = false;
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s == "0") {
        out = Duration(0);
        return true;
    }
    if (s.empty()) return false;
    std::uint64_t total = 0;
    while (!s.empty()) {
        if (!(s[0] == '.' || is_digit(s[0]))) return false;
        std::size_t before = s.size();
        std::uint64_t v = 0;
        if (!leading_int(s, v)) return false;
        bool pre = before != s.size();
        std::uint64_t f = 0;
        double scale = 1;
        bool post = false;
        if (!s.empty() && s[0] == '.') {
            s.remove_prefix(1);
            std::size_t at = s.size();
            leading_fraction(s, f, scale);
            post = at != s.size();
        }
        if (!pre && !post) return false;  // "." alone
        std::size_t i = 0;
        while (i < s.size() && s[i] != '.' && !is_digit(s[i])) i++;
        if (i == 0) return false;  // missing unit
        std::uint64_t unit = 0;
        if (!unit_value(s.substr(0, i), unit)) return false;
        s.remove_prefix(i);
        if (v > kMax / unit) return false;
        v *= unit;
        if (f > 0) {
            v += std::uint64_t(double(f) * (double(unit) / scale));
            if (v > kMax) return false;
        }
        total += v;
        if (total > kMax) return false;
    }
    if (neg) {
        // -2^63 is representable; negate through the unsigned value.
        out = Duration(total == kMax ? std::numeric_limits<std::int64_t>::min() : -std::int64_t(total));
        return true;
    }
    if (total > kMax - 1) return false;
    out = Duration(std::int64_t(total));
    return true;
}

Duration parse_timeout(std::string_view text, Duration fallback) {
    if (text.empty()) return fallback;
    // A whole number of seconds (optionally signed, as Go's strconv.Atoi).
    std::string_view digits = text;
    bool neg = false;
    if (digits[0] == '+' || digits[0] == '-') {
        neg = digits[0] == '-';
        digits.remove_prefix(1);
    }
    bool all_digits = !digits.empty();
    for (char c : digits) all_digits = all_digits && is_digit(c);
    if (all_digits) {
        if (neg) {
            bool zero = digits.find_first_not_of('0') == std::string_view::npos;
            return zero ? Duration(0) : fallback;
        }
        std::uint64_t secs = 0;
        for (char c : digits) {
            secs = secs * 10 + std::uint64_t(c - '0');
            // Past int64 nanoseconds (where Go would wrap around): the default.
            if (secs > 9223372036ULL) return fallback;
        }
        return std::chrono::seconds(secs);
    }
    Duration d{};
    if (!parse_go_duration(text, d) || d.count() < 0) return fallback;
    return d;
}

namespace {

// `v` as digits with `prec` of them after a decimal point, trailing zeros
// (and a bare point) dropped: (1500, 3) -> "1.5".
std::string fixed(std::uint64_t v, int prec) {
    std::uint64_t div = 1;
    for (int i = 0; i < prec; i++) div *= 10;
    std::string out = std::to_string(v / div);
    std::uint64_t frac = v % div;
    if (frac != 0) {
        std::string f = std::to_string(frac);
        f.insert(0, std::size_t(prec) - f.size(), '0');
        while (!f.empty() && f.back() == '0') f.pop_back();
        out += "." + f;
    }
    return out;
}

}  // namespace

std::string format_duration(Duration d) {
    std::int64_t n = d.count();
    if (n == 0) return "0s";
    bool neg = n < 0;
    std::uint64_t u = neg ? std::uint64_t(0) - std::uint64_t(n) : std::uint64_t(n);
    std::string out;
    if (u < 1000000000ULL) {
        if (u < 1000ULL) {
            out = std::to_string(u) + "ns";
        } else if (u < 1000000ULL) {
            out = fixed(u, 3) + "\xC2\xB5s";
        } else {
            out = fixed(u, 6) + "ms";
        }
    } else {
        out = fixed(u % 60000000000ULL, 9) + "s";
        std::uint64_t minutes = u / 60000000000ULL;
        if (minutes > 0) {
            out = std::to_string(minutes % 60) + "m" + out;
            std::uint64_t hours = minutes / 60;
            if (hours > 0) out = std::to_string(hours) + "h" + out;
        }
    }
    return neg ? "-" + out : out;
}

namespace {

// A whole number in [lo, hi], else `fallback`.
long parse_int(const char* text, long lo, long hi, long fallback) {
    if (!text || !*text) return fallback;
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) return fallback;
    return v;
}

}  // namespace

std::string load_config(const std::function<const char*(const char*)>& getenv, Config& c) {
    auto env = [&](const char* name) -> std::string_view {
        const char* v = getenv(name);
        return v ? std::string_view(v) : std::string_view();
    };
    c.port = int(parse_int(getenv("port"), 0, 65535, 8080));
    c.bind_address = std::string(env("bind_address"));
    c.read_timeout = parse_timeout(env("read_timeout"), kDefaultTimeout);
    c.write_timeout = parse_timeout(env("write_timeout"), kDefaultTimeout);
    c.exec_timeout = parse_timeout(env("exec_timeout"), kDefaultTimeout);
    c.healthcheck_interval = parse_timeout(env("healthcheck_interval"), c.write_timeout);
    c.max_inflight = parse_int(getenv("max_inflight"), 0, std::numeric_limits<long>::max(), 0);
    std::string_view debug = env("write_debug");
    c.log_requests = debug == "true" || debug == "1";
    std::string_view tmp = env("TMPDIR");
    c.lock_path = std::string(tmp.empty() ? std::string_view("/tmp") : tmp);
    if (c.lock_path.size() > 1 && c.lock_path.back() == '/') c.lock_path.pop_back();
    c.lock_path += "/.lock";
    // As of-watchdog: with no time to write, every response would fail.
    if (c.write_timeout.count() <= 0) return "HTTP write timeout must be over 0s (write_timeout)";
    return std::string();
}

}  // namespace front
