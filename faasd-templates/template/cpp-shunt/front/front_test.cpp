// Unit tests of the front's pure parts: durations, configuration, HTTP
// parsing. `make front-test` builds and runs them.
#include <map>
#include <string>

#include "config.hpp"
#include "faas_test.hpp"
#include "http.hpp"

using front::Duration;
using namespace std::chrono_literals;

namespace {

// parse_go_duration's result in nanoseconds, or -1 if invalid.
long long go(std::string_view s) {
    Duration d{};
    return front::parse_go_duration(s, d) ? d.count() : -1;
}

long long timeout(std::string_view s) { return front::parse_timeout(s, 7s).count(); }

}  // namespace

FAAS_TEST(go_durations) {
    EXPECT_EQ(go("0"), 0);
    EXPECT_EQ(go("+0"), 0);
    EXPECT_EQ(go("5s"), 5000000000LL);
    EXPECT_EQ(go("500ms"), 500000000LL);
    EXPECT_EQ(go("1m30s"), 90000000000LL);
    EXPECT_EQ(go("1h"), 3600000000000LL);
    EXPECT_EQ(go("2h45m"), 9900000000000LL);
    EXPECT_EQ(go("1.5s"), 1500000000LL);
    EXPECT_EQ(go(".5s"), 500000000LL);
    EXPECT_EQ(go("1.s"), 1000000000LL);
    EXPECT_EQ(go("300us"), 300000LL);
    EXPECT_EQ(go("300\xC2\xB5s"), 300000LL);
    EXPECT_EQ(go("300\xCE\xBCs"), 300000LL);
    EXPECT_EQ(go("42ns"), 42LL);
    EXPECT_EQ(go("1h1m1s1ms1us1ns"), 3661001001001LL);
    EXPECT_EQ(go("2562047h47m16.854775807s"), 9223372036854775807LL);
    EXPECT_EQ(go("-1.5h") < 0, true);
    // Invalid: Go's ParseDuration refuses these.
    EXPECT_EQ(go(""), -1);
    EXPECT_EQ(go("5"), -1);    // no unit
    EXPECT_EQ(go("abc"), -1);
    EXPECT_EQ(go("."), -1);
    EXPECT_EQ(go(".s"), -1);
    EXPECT_EQ(go("1d"), -1);   // unknown unit
    EXPECT_EQ(go("1h30"), -1); // last number has no unit
    EXPECT_EQ(go("1 s"), -1);
    EXPECT_EQ(go("9223372036854775808ns"), -1);  // overflow
    EXPECT_EQ(go("2562048h"), -1);
}

FAAS_TEST(watchdog_timeouts) {
    EXPECT_EQ(timeout("2"), 2000000000LL);          // whole seconds
    EXPECT_EQ(timeout("0"), 0LL);
    EXPECT_EQ(timeout("+3"), 3000000000LL);
    EXPECT_EQ(timeout("500ms"), 500000000LL);
    EXPECT_EQ(timeout("1m30s"), 90000000000LL);
    EXPECT_EQ(timeout(""), 7000000000LL);           // default
    EXPECT_EQ(timeout("abc"), 7000000000LL);
    EXPECT_EQ(timeout("-3"), 7000000000LL);         // negative: default
    EXPECT_EQ(timeout("-5s"), 7000000000LL);
    EXPECT_EQ(timeout("2.5"), 7000000000LL);        // not whole, no unit
    EXPECT_EQ(timeout("99999999999999999999"), 7000000000LL);
}

FAAS_TEST(go_duration_strings) {
    EXPECT_EQ(front::format_duration(0s), "0s");
    EXPECT_EQ(front::format_duration(10s), "10s");
    EXPECT_EQ(front::format_duration(1500ms), "1.5s");
    EXPECT_EQ(front::format_duration(500ms), "500ms");
    EXPECT_EQ(front::format_duration(90s), "1m30s");
    EXPECT_EQ(front::format_duration(1h), "1h0m0s");
    EXPECT_EQ(front::format_duration(250us), "250\xC2\xB5s");
    EXPECT_EQ(front::format_duration(Duration(42)), "42ns");
    EXPECT_EQ(front::format_duration(Duration(1500)), "1.5\xC2\xB5s");
    EXPECT_EQ(front::format_duration(-2s), "-2s");
}

FAAS_TEST(configuration) {
    std::map<std::string, std::string> env;
    auto get = [&](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
    };
    front::Config c;
    EXPECT_EQ(front::load_config(get, c), "");
    EXPECT_EQ(c.port, 8080);
    EXPECT_EQ(c.read_timeout.count(), 10000000000LL);
    EXPECT_EQ(c.write_timeout.count(), 10000000000LL);
    EXPECT_EQ(c.exec_timeout.count(), 10000000000LL);
    EXPECT_EQ(c.healthcheck_interval.count(), 10000000000LL);  // = write_timeout
    EXPECT_EQ(c.max_inflight, 0L);
    EXPECT_EQ(c.lock_path, "/tmp/.lock");

    env = {{"port", "9090"}, {"write_timeout", "3s"}, {"exec_timeout", "0"}, {"max_inflight", "4"},
           {"TMPDIR", "/run/fn/"}, {"read_timeout", "1m"}};
    EXPECT_EQ(front::load_config(get, c), "");
    EXPECT_EQ(c.port, 9090);
    EXPECT_EQ(c.write_timeout.count(), 3000000000LL);
    EXPECT_EQ(c.healthcheck_interval.count(), 3000000000LL);
    EXPECT_EQ(c.exec_timeout.count(), 0LL);
    EXPECT_EQ(c.read_timeout.count(), 60000000000LL);
    EXPECT_EQ(c.max_inflight, 4L);
    EXPECT_EQ(c.lock_path, "/run/fn/.lock");

    env = {{"port", "http"}, {"max_inflight", "-2"}, {"healthcheck_interval", "250ms"}, {"TMPDIR", ""}};
    EXPECT_EQ(front::load_config(get, c), "");
    EXPECT_EQ(c.port, 8080);
    EXPECT_EQ(c.max_inflight, 0L);
    EXPECT_EQ(c.healthcheck_interval.count(), 250000000LL);
    EXPECT_EQ(c.lock_path, "/tmp/.lock");

    env = {{"write_timeout", "0"}};
    EXPECT_EQ(front::load_config(get, c).empty(), false);
}

FAAS_TEST(request_heads) {
    front::Head h;
    std::size_t used = 0;
    int status = 0;
    std::string req = "POST /function/aes?x=1&y=a%20b HTTP/1.1\r\nHost: h\r\nX-Thing:  v  \r\nx-thing: w\r\n\r\nBODY";
    EXPECT_TRUE(front::parse_head(req, h, used, status) == front::Parse::Done);
    EXPECT_EQ(used, req.size() - 4);
    EXPECT_EQ(h.method, "POST");
    EXPECT_EQ(h.uri, "/function/aes?x=1&y=a%20b");
    EXPECT_EQ(h.path, "/function/aes");
    EXPECT_EQ(h.query, "x=1&y=a%20b");
    EXPECT_EQ(h.minor, 1);
    EXPECT_EQ(h.headers.get("x-THING"), "v");
    EXPECT_EQ(h.headers.size(), std::size_t(3));
    EXPECT_TRUE(front::wants_keep_alive(h));

    // Incomplete until the blank line; LF-only lines; leading empty lines.
    EXPECT_TRUE(front::parse_head("GET / HTTP/1.1\r\nHost: h\r\n", h, used, status) == front::Parse::Incomplete);
    EXPECT_TRUE(front::parse_head("\r\nGET / HTTP/1.0\nA: b\n\n", h, used, status) == front::Parse::Done);
    EXPECT_EQ(used, std::size_t(23));
    EXPECT_EQ(h.minor, 0);
    EXPECT_TRUE(!front::wants_keep_alive(h));
    EXPECT_TRUE(front::parse_head("GET http://example.com/a/b?q HTTP/1.1\r\n\r\n", h, used, status) == front::Parse::Done);
    EXPECT_EQ(h.path, "/a/b");
    EXPECT_EQ(h.query, "q");

    // Errors and their statuses.
    const std::pair<const char*, int> bad[] = {
        {"GET / HTTP/2.0\r\n\r\n", 505},     {"GET /  HTTP/1.1\r\n\r\n", 400},
        {"GET / FTP/1.1\r\n\r\n", 400},      {"G(T / HTTP/1.1\r\n\r\n", 400},
        {"GET x HTTP/1.1\r\n\r\n", 400},     {"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400}, {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
    };
    for (const auto& b : bad) {
        status = 0;
        EXPECT_TRUE(front::parse_head(b.first, h, used, status) == front::Parse::Error);
        EXPECT_EQ(status, b.second);
    }
    std::string huge = "GET / HTTP/1.1\r\nA: " + std::string(front::kMaxHead + 10, 'a');
    EXPECT_TRUE(front::parse_head(huge, h, used, status) == front::Parse::Error);
    EXPECT_EQ(status, 431);
}

FAAS_TEST(connection_tokens) {
    front::Head h;
    h.minor = 1;
    h.headers.add("Connection", "Keep-Alive, Close");
    EXPECT_TRUE(!front::wants_keep_alive(h));
    h = front::Head();
    h.minor = 0;
    h.headers.add("connection", "keep-alive");
    EXPECT_TRUE(front::wants_keep_alive(h));
}

FAAS_TEST(body_framing) {
    front::Framing f;
    faas::Headers h;
    EXPECT_EQ(front::body_framing(h, f), 0);
    EXPECT_TRUE(f.kind == front::Framing::kNone);
    h.add("Content-Length", "12");
    EXPECT_EQ(front::body_framing(h, f), 0);
    EXPECT_TRUE(f.kind == front::Framing::kLength);
    EXPECT_EQ(f.length, 12u);
    h.add("content-length", "12, 12");
    EXPECT_EQ(front::body_framing(h, f), 0);
    h.add("Content-Length", "13");
    EXPECT_EQ(front::body_framing(h, f), 400);
    faas::Headers bad;
    bad.add("Content-Length", "-1");
    EXPECT_EQ(front::body_framing(bad, f), 400);
    faas::Headers te;
    te.add("Content-Length", "5");
    te.add("Transfer-Encoding", "Chunked");
    EXPECT_EQ(front::body_framing(te, f), 0);
    EXPECT_TRUE(f.kind == front::Framing::kChunked);
    faas::Headers gz;
    gz.add("Transfer-Encoding", "gzip, chunked");
    EXPECT_EQ(front::body_framing(gz, f), 501);
}

FAAS_TEST(chunked_bodies) {
    const std::string wire = "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    // All at once.
    {
        front::ChunkedDecoder d;
        std::string out;
        std::size_t used = 0;
        EXPECT_TRUE(d.feed(wire, out, used) == front::Parse::Done);
        EXPECT_EQ(out, "hello, world");
        EXPECT_EQ(wire.substr(used), "NEXT");
    }
    // A byte at a time, as a slow client sends it.
    {
        front::ChunkedDecoder d;
        std::string out, pending;
        front::Parse p = front::Parse::Incomplete;
        std::size_t i = 0;
        while (p == front::Parse::Incomplete && i < wire.size()) {
            pending += wire[i++];
            std::size_t used = 0;
            p = d.feed(pending, out, used);
            pending.erase(0, used);
        }
        EXPECT_TRUE(p == front::Parse::Done);
        EXPECT_EQ(out, "hello, world");
        EXPECT_EQ(wire.substr(i), "NEXT");
    }
    // LF-only lines, upper-case hex.
    {
        front::ChunkedDecoder d;
        std::string out;
        std::size_t used = 0;
        EXPECT_TRUE(d.feed("A\n0123456789\n0\n\n", out, used) == front::Parse::Done);
        EXPECT_EQ(out, "0123456789");
    }
    for (const char* bad : {"x\r\n", "5\r\nhelloX\r\n", "12345678901234567\r\n"}) {
        front::ChunkedDecoder d;
        std::string out;
        std::size_t used = 0;
        EXPECT_TRUE(d.feed(bad, out, used) == front::Parse::Error);
    }
}

FAAS_TEST(request_helpers) {
    faas::Request r;
    r.query = "a=1&name=J%C3%B6rg+M&empty=&flag";
    EXPECT_EQ(r.query_param("name"), "J\xC3\xB6rg M");
    EXPECT_EQ(r.query_param("a"), "1");
    EXPECT_EQ(r.query_param("empty"), "");
    EXPECT_EQ(r.query_param("missing"), "");
    EXPECT_EQ(faas::percent_decode("100%", false), "100%");
    EXPECT_EQ(faas::percent_decode("%zz%41", false), "%zzA");
    faas::Headers h;
    h.add("A", "1");
    h.add("a", "2");
    h.set("A", "3");
    EXPECT_EQ(h.size(), std::size_t(1));
    EXPECT_EQ(h.get("a"), "3");
    EXPECT_TRUE(front::valid_field("X-Ok", "fine value"));
    EXPECT_TRUE(!front::valid_field("X-Bad", "a\r\nInjected: 1"));
    EXPECT_TRUE(!front::valid_field("Bad Name", "v"));
    EXPECT_EQ(front::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
}
