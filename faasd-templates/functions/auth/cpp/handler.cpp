// vSwarm's auth function as a cpp-shunt handler: the request body is the
// token, the answer vSwarm's Go line with runtime "cpp". Any method; any
// path. As the golang-shunt handler (functions/auth/go): one trailing
// newline (LF or CRLF) is dropped, so that `echo allow | faas-cli invoke`
// sends the token "allow", and a body over 4096 bytes is answered 413.
#include "auth.hpp"
#include "faas.hpp"

namespace {

constexpr std::size_t kMaxToken = 4096;

}  // namespace

faas::Response handle(const faas::Request& req) {
    if (req.body.size() > kMaxToken) {
        return faas::Response(413, "cannot read the token: http: request body too large\n");
    }
    std::string token = req.body;
    if (token.size() >= 2 && token.compare(token.size() - 2, 2, "\r\n") == 0) {
        token.resize(token.size() - 2);
    } else if (!token.empty() && token.back() == '\n') {
        token.pop_back();
    }
    faas::Response resp(200, auth::answer(token));
    resp.headers.set("Content-Type", "text/plain; charset=utf-8");
    return resp;
}
