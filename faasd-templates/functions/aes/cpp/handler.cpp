// vSwarm's AES function (benchmarks/aes) as a cpp-shunt handler: the
// request body is the plaintext, the answer vSwarm's Go version's line with
// runtime "cpp". Any method; any path.
#include "aes.hpp"
#include "faas.hpp"

namespace {

// As the golang-shunt handler (functions/aes/go): at most 1 MiB to encrypt
// (vSwarm's inputs are a few hundred bytes), the body's exact bytes.
constexpr std::size_t kMaxBody = std::size_t(1) << 20;

}  // namespace

faas::Response handle(const faas::Request& req) {
    if (req.body.size() > kMaxBody) {
        return faas::Response(413, "cannot read the request body: http: request body too large\n");
    }
    faas::Response resp(200, aes_fn::handle(req.body));
    resp.headers.set("Content-Type", "text/plain; charset=utf-8");
    return resp;
}
