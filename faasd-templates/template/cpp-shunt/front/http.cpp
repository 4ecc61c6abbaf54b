#include "http.hpp"

#include <cstring>

namespace front {

namespace {

// RFC 9110 tchar.
bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (!is_tchar(c)) return false;
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The line starting at `pos` (without its LF or CRLF) and where the next one
// starts; false if `buf` has no LF after `pos`.
bool next_line(std::string_view buf, std::size_t pos, std::string_view& line, std::size_t& next) {
    std::size_t nl = buf.find('\n', pos);
    if (nl == std::string_view::npos) return false;
    line = buf.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    next = nl + 1;
    return true;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && faas::iequals(s.substr(0, prefix.size()), prefix);
}

// Splits a request target into path and query; false if it is not one.
bool split_target(std::string_view target, std::string& path, std::string& query) {
    for (char c : target) {
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
    }
    std::string_view t = target;
    if (starts_with_nocase(t, "http://") || starts_with_nocase(t, "https://")) {
        // absolute-form: keep the path and query after the authority.
        t.remove_prefix(t.find("//") + 2);
        std::size_t slash = t.find_first_of("/?");
        t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
        if (!t.empty() && t[0] == '?') {
            path = "/";
            query = std::string(t.substr(1));
            return true;
        }
    } else if (t == "*") {
        path = "*";
        query.clear();
        return true;
    } else if (t.empty() || t[0] != '/') {
        return false;
    }
    std::size_t q = t.find('?');
    path = std::string(t.substr(0, q));
    query = q == std::string_view::npos ? std::string() : std::string(t.substr(q + 1));
    return true;
}

}  // namespace

Parse parse_head(std::string_view buf, Head& head, std::size_t& consumed, int& status) {
    std::size_t pos = 0;
    // Empty lines before the request line are ignored (RFC 9112 §2.2).
    for (;;) {
        if (buf.substr(pos, 2) == "\r\n") {
            pos += 2;
        } else if (buf.substr(pos, 1) == "\n") {
            pos += 1;
        } else {
            break;
        }
    }
    // The head ends at the first empty line.
    std::size_t end = std::string_view::npos;
    for (std::size_t i = buf.find('\n', pos); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
        if (i + 1 < buf.size() && buf[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            end = i + 3;
            break;
        }
        if (i > kMaxHead) break;
    }
    if (end == std::string_view::npos) {
        if (buf.size() > kMaxHead) {
            status = 431;
            return Parse::Error;
        }
        return Parse::Incomplete;
    }
    if (end - pos > kMaxHead) {
        status = 431;
        return Parse::Error;
    }
    status = 400;
    std::string_view line;
    std::size_t next = 0;
    next_line(buf, pos, line, next);
    // Request line: method SP target SP version.
    std::size_t sp1 = line.find(' ');
    std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return Parse::Error;
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    if (!is_token(method)) return Parse::Error;
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
        version[5] > '9' || version[7] < '0' || version[7] > '9') {
        return Parse::Error;
    }
    if (version[5] != '1') {
        status = 505;
        return Parse::Error;
    }
    head.minor = version[7] - '0';
    head.method = std::string(method);
    head.uri = std::string(target);
    if (!split_target(target, head.path, head.query)) return Parse::Error;
    head.headers = faas::Headers();
    // Header fields, up to the empty line.
    for (pos = next; next_line(buf, pos, line, next) && !line.empty(); pos = next) {
        if (line[0] == ' ' || line[0] == '\t') return Parse::Error;  // obsolete line folding
        std::size_t colon = line.find(':');
        if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return Parse::Error;
        std::string_view value = trim(line.substr(colon + 1));
        if (value.find('\0') != std::string_view::npos || value.find('\r') != std::string_view::npos) {
            return Parse::Error;
        }
        head.headers.add(std::string(line.substr(0, colon)), std::string(value));
    }
    consumed = end;
    status = 0;
    return Parse::Done;
}

bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        std::size_t comma = list.find(',');
        if (faas::iequals(trim(list.substr(0, comma)), token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

bool wants_keep_alive(const Head& head) {
    bool close = false, keep = false;
    for (const auto& f : head.headers) {
        if (faas::iequals(f.first, "Connection")) {
            close = close || has_token(f.second, "close");
            keep = keep || has_token(f.second, "keep-alive");
        }
    }
    if (close) return false;
    return head.minor >= 1 || keep;
}

int body_framing(const faas::Headers& headers, Framing& framing) {
    framing = Framing();
    bool te = false, cl = false;
    std::string codings;
    std::uint64_t length = 0;
    for (const auto& f : headers) {
        if (faas::iequals(f.first, "Transfer-Encoding")) {
            te = true;
            codings += codings.empty() ? f.second : "," + f.second;
        } else if (faas::iequals(f.first, "Content-Length")) {
            // Repeated or listed values must all be the same number.
            std::string_view list = f.second;
            do {
                std::size_t comma = list.find(',');
                std::string_view v = trim(list.substr(0, comma));
                if (v.empty() || v.size() > 18) return 400;
                std::uint64_t n = 0;
                for (char c : v) {
                    if (c < '0' || c > '9') return 400;
                    n = n * 10 + std::uint64_t(c - '0');
                }
                if (cl && n != length) return 400;
                cl = true;
                length = n;
                list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
            } while (!list.empty());
        }
    }
    if (te) {
        // Only "chunked" is understood (a Content-Length is then ignored).
        std::string_view c = trim(codings);
        if (!faas::iequals(c, "chunked")) return 501;
        framing.kind = Framing::kChunked;
        return 0;
    }
    if (cl) {
        framing.kind = Framing::kLength;
        framing.length = length;
    }
    return 0;
}

Parse ChunkedDecoder::feed(std::string_view in, std::string& out, std::size_t& consumed) {
    constexpr std::size_t kMaxLine = 4096;
    std::size_t pos = 0;
    for (;;) {
        std::string_view line;
        std::size_t next = 0;
        switch (state_) {
            case kSize: {
                if (!next_line(in, pos, line, next)) {
                    consumed = pos;
                    return in.size() - pos > kMaxLine ? Parse::Error : Parse::Incomplete;
                }
                line = trim(line.substr(0, line.find(';')));  // chunk extensions are ignored
                if (line.empty() || line.size() > 15) return Parse::Error;
                std::uint64_t size = 0;
                for (char c : line) {
                    int d = (c >= '0' && c <= '9') ? c - '0'
                            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                     : -1;
                    if (d < 0) return Parse::Error;
                    size = size * 16 + std::uint64_t(d);
                }
                pos = next;
                remaining_ = size;
                state_ = size == 0 ? kTrailer : kData;
                break;
            }
            case kData: {
                std::size_t take = in.size() - pos;
                if (take > remaining_) take = std::size_t(remaining_);
                out.append(in.data() + pos, take);
                pos += take;
                remaining_ -= take;
                if (remaining_ > 0) {
                    consumed = pos;
                    return Parse::Incomplete;
                }
                state_ = kDataEnd;
                break;
            }
            case kDataEnd: {
                if (pos < in.size() && in[pos] == '\n') {
                    pos += 1;
                } else if (pos + 1 < in.size() && in[pos] == '\r' && in[pos + 1] == '\n') {
                    pos += 2;
                } else if (pos == in.size() || (pos + 1 == in.size() && in[pos] == '\r')) {
                    consumed = pos;
                    return Parse::Incomplete;
                } else {
                    return Parse::Error;
                }
                state_ = kSize;
                break;
            }
            case kTrailer: {
                if (!next_line(in, pos, line, next)) {
                    consumed = pos;
                    return in.size() - pos > kMaxLine ? Parse::Error : Parse::Incomplete;
                }
                pos = next;
                if (line.empty()) {
                    consumed = pos;
                    state_ = kSize;
                    return Parse::Done;
                }
                break;  // a trailer field: ignored
            }
        }
    }
}

const char* reason_phrase(int status) {
    switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 206: return "Partial Content";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 303: return "See Other";
        case 304: return "Not Modified";
        case 307: return "Temporary Redirect";
        case 308: return "Permanent Redirect";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 411: return "Length Required";
        case 413: return "Content Too Large";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Content";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
    }
}

std::string http_date(std::time_t t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return std::string(buf, n);
}

bool valid_field(std::string_view name, std::string_view value) {
    if (!is_token(name)) return false;
    for (char c : value) {
        if (c == '\r' || c == '\n' || c == '\0') return false;
    }
    return true;
}

}  // namespace front
