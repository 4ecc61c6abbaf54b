// Unit tests of the handler: `make test` (or `make test CXX=g++`).
#include "faas.hpp"
#include "faas_test.hpp"

FAAS_TEST(echoes_the_body) {
    faas::Response resp = faas::test::post("hello");
    EXPECT_EQ(resp.status, 200);
    EXPECT_EQ(resp.body, "Body: hello");
    EXPECT_EQ(resp.headers.get("content-type"), "text/plain; charset=utf-8");
}

FAAS_TEST(empty_body) {
    faas::Request req;
    req.method = "GET";
    EXPECT_EQ(handle(req).body, "Body: ");
}
