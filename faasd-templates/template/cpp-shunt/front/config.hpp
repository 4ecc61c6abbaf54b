// The front's configuration: of-watchdog's http-mode environment variables.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace front {

using Duration = std::chrono::nanoseconds;

// Go's time.ParseDuration: an optionally signed sequence of decimal numbers,
// each with an optional fraction and a unit ("300ms", "-1.5h", "2h45m");
// units ns, us (or µs, μs), ms, s, m, h; "0" needs no unit. Returns false
// for anything else, and on overflow of int64 nanoseconds.
bool parse_go_duration(std::string_view text, Duration& out);

// of-watchdog's reading of a timeout: a non-negative whole number is seconds
// ("5" = 5s), otherwise a Go duration ("500ms", "1m30s"); empty, invalid and
// negative values give `fallback`.
Duration parse_timeout(std::string_view text, Duration fallback);

// Go's Duration.String(): "0s", "1.5s", "500ms", "1m30s", "1h0m0s", "250µs".
std::string format_duration(Duration d);

struct Config {
    int port = 8080;                   // port (0: any free port)
    std::string bind_address;          // bind_address ("": all interfaces, IPv6 and IPv4)
    Duration read_timeout{};           // read_timeout
    Duration write_timeout{};          // write_timeout (must be over 0)
    Duration exec_timeout{};           // exec_timeout (0: no limit)
    Duration healthcheck_interval{};   // healthcheck_interval (default: write_timeout)
    long max_inflight = 0;             // max_inflight (0: no limit)
    bool log_requests = false;         // write_debug=true: one log line per request
    std::string lock_path;             // $TMPDIR/.lock (TMPDIR unset or empty: /tmp)
};

// The default of the three timeouts: golang-shunt's and the stock front's
// (golang-middleware's entrypoint), so that functions of either language
// behave alike with no environment. of-watchdog alone defaults to 30s.
constexpr Duration kDefaultTimeout = std::chrono::seconds(10);

// Reads the configuration through `getenv` (returns nullptr for unset).
// Returns an error message, or "" when the configuration is usable.
std::string load_config(const std::function<const char*(const char*)>& getenv, Config& out);

}  // namespace front
