// vSwarm's fibonacci function as a cpp-shunt handler: the request body is
// x, the answer F(x) in vSwarm's Go format with runtime "cpp". Any method;
// any path. As the golang-shunt handler (functions/fibonacci/go): only the
// first 64 bytes are read (a longer body is not an int64 anyway), white
// space around x is dropped (so that `echo 10 | faas-cli invoke` asks for
// F(10)), and x over kMaxN is answered 400.
#include "faas.hpp"
#include "fib.hpp"

faas::Response handle(const faas::Request& req) {
    std::int64_t x = fib::parse_x(std::string_view(req.body).substr(0, 64));
    if (x > fib::kMaxN) {
        return faas::Response(400, "fibonacci: x = " + std::to_string(x) + " is over this function's limit (" +
                                       std::to_string(fib::kMaxN) + ")\n");
    }
    faas::Response resp(200, fib::answer(x));
    resp.headers.set("Content-Type", "text/plain; charset=utf-8");
    return resp;
}
