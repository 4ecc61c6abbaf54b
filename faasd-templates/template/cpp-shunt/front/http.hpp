// HTTP/1.1 message parsing and formatting for the front (RFC 9112), as pure
// functions over buffers so that they can be unit-tested without sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "faas.hpp"

namespace front {

enum class Parse { Incomplete, Done, Error };

// Limits: a request head as large as Go's http.DefaultMaxHeaderBytes; a
// body of at most 64 MiB (larger ones are answered 413).
constexpr std::size_t kMaxHead = std::size_t(1) << 20;
constexpr std::size_t kMaxBody = std::size_t(64) << 20;

// The request line and header fields.
struct Head {
    std::string method;
    std::string uri;    // the request target as sent
    std::string path;   // origin-form path (absolute-form reduced to its path)
    std::string query;  // after '?', raw
    int minor = 1;      // HTTP/1.<minor>
    faas::Headers headers;
};

// Parses the request head at the start of `buf` (empty lines before the
// request line are skipped, lines may end in CRLF or LF). Done: `consumed`
// is the head's length with its blank line. Error: `status` is the answer
// (400 malformed, 431 too large, 505 not HTTP/1.x).
Parse parse_head(std::string_view buf, Head& head, std::size_t& consumed, int& status);

// How a request body is delimited.
struct Framing {
    enum Kind { kNone, kLength, kChunked };
    Kind kind = kNone;
    std::uint64_t length = 0;
};

// The body's framing from the header fields: 0, or the error status (400
// for a bad or conflicting Content-Length, 501 for a transfer coding other
// than chunked).
int body_framing(const faas::Headers& headers, Framing& framing);

// Whether `list` (a comma-separated header value) holds `token`, ignoring case.
bool has_token(std::string_view list, std::string_view token);

// Whether the client wants the connection kept after this request.
bool wants_keep_alive(const Head& head);

// Decodes a chunked body incrementally.
class ChunkedDecoder {
public:
    // Decodes from `in`, appending the data to `out`. `consumed` says how
    // much of `in` was used: Done (the last chunk and the trailer fields were
    // read), Incomplete (call again with the unused rest followed by more
    // input), or Error (malformed).
    Parse feed(std::string_view in, std::string& out, std::size_t& consumed);

private:
    enum State { kSize, kData, kDataEnd, kTrailer };
    State state_ = kSize;
    std::uint64_t remaining_ = 0;
};

// "OK", "Not Found", …; "Unknown" for codes without a name here.
const char* reason_phrase(int status);

// An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
std::string http_date(std::time_t t);

// Whether a response field may be sent as it is (a token name, and a value
// without CR, LF or NUL): handlers' fields that are not are dropped.
bool valid_field(std::string_view name, std::string_view value);

}  // namespace front
