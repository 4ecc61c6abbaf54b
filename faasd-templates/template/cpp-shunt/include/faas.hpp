// The cpp-shunt handler contract.
//
// A function is one C++ function, written in function/handler.cpp:
//
//     #include "faas.hpp"
//
//     faas::Response handle(const faas::Request& req) {
//         return faas::Response(200, "Body: " + req.body);
//     }
//
// The template's front (an HTTP/1.1 server speaking of-watchdog's http-mode
// contract) is linked into the same program and calls handle() for every
// request except GET /_/health and /_/ready. It calls it from several
// threads at once (one per client connection), so shared state in the
// function needs its own locking. The request body is read in full before
// handle() is called (Content-Length or chunked), and the response body is
// sent with a Content-Length the front computes. An exception escaping
// handle() becomes a 500 whose body is the exception's what().
//
// Everything here is header-only, so a unit test of a handler needs only
// this header, the handler's sources and faas_test.hpp.
#pragma once

#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace faas {

// HTTP field names compare case-insensitively.
inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); i++) {
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    }
    return true;
}

// An ordered list of header fields; names are matched case-insensitively,
// repeated fields are kept (in the order received).
class Headers {
public:
    using Field = std::pair<std::string, std::string>;

    // The value of the first field called `name`, or "" if there is none.
    std::string get(std::string_view name) const {
        for (const auto& f : fields_) {
            if (iequals(f.first, name)) return f.second;
        }
        return std::string();
    }
    bool has(std::string_view name) const {
        for (const auto& f : fields_) {
            if (iequals(f.first, name)) return true;
        }
        return false;
    }
    // Appends a field (keeps any others of the same name).
    void add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }
    // Replaces every field called `name` by one with this value.
    void set(std::string name, std::string value) {
        remove(name);
        add(std::move(name), std::move(value));
    }
    void remove(std::string_view name) {
        std::vector<Field> kept;
        kept.reserve(fields_.size());
        for (auto& f : fields_) {
            if (!iequals(f.first, name)) kept.push_back(std::move(f));
        }
        fields_ = std::move(kept);
    }
    std::vector<Field>::const_iterator begin() const { return fields_.begin(); }
    std::vector<Field>::const_iterator end() const { return fields_.end(); }
    std::size_t size() const { return fields_.size(); }
    bool empty() const { return fields_.empty(); }

private:
    std::vector<Field> fields_;
};

// Decodes %XX escapes, and '+' as a space when `plus_is_space` (query
// strings); malformed escapes are kept as they are.
inline std::string percent_decode(std::string_view s, bool plus_is_space) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); i++) {
        if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            out.push_back(' ');
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// One HTTP request, as the client sent it.
struct Request {
    std::string method;  // "GET", "POST", ...
    std::string uri;     // the request target as sent: "/function/aes?x=1"
    std::string path;    // the target up to '?', not percent-decoded: "/function/aes"
    std::string query;   // after '?', raw ("" if none): "x=1"
    Headers headers;
    std::string body;    // the whole body (chunked bodies already decoded)

    std::string header(std::string_view name) const { return headers.get(name); }

    // The first value of query parameter `name`, percent-decoded, or "".
    std::string query_param(std::string_view name) const {
        std::string_view q = query;
        while (!q.empty()) {
            std::size_t amp = q.find('&');
            std::string_view pair = q.substr(0, amp);
            std::size_t eq = pair.find('=');
            std::string key = percent_decode(pair.substr(0, eq), true);
            if (key == name) return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
            if (amp == std::string_view::npos) break;
            q.remove_prefix(amp + 1);
        }
        return std::string();
    }
};

// What handle() answers. The front adds Content-Length, Date,
// X-Duration-Seconds and, when the handler set none and the body is not
// empty, Content-Type: text/plain; charset=utf-8.
struct Response {
    int status = 200;
    Headers headers;
    std::string body;

    Response() = default;
    explicit Response(std::string b) : body(std::move(b)) {}
    Response(int s, std::string b) : status(s), body(std::move(b)) {}
};

}  // namespace faas

// Implemented by the function (function/handler.cpp). Called concurrently.
faas::Response handle(const faas::Request& req);
