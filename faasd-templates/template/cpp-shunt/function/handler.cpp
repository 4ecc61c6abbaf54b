// A starter function: answers "Body: " and the request body.
//
// The contract (include/faas.hpp): the front calls handle() for every
// request but GET /_/health and /_/ready, from several threads at once.
#include "faas.hpp"

faas::Response handle(const faas::Request& req) {
    faas::Response resp(200, "Body: " + req.body);
    resp.headers.set("Content-Type", "text/plain; charset=utf-8");
    return resp;
}
