// A very small unit-test kit for cpp-shunt functions (and the front).
//
//     #include "faas_test.hpp"
//
//     FAAS_TEST(echoes_the_body) {
//         EXPECT_EQ(faas::test::post("hello").body, "Body: hello");
//     }
//
// `make test` compiles every function/*_test.cpp with the handler's sources
// and the template's test main, runs the result, and fails if a check fails.
#pragma once

#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "faas.hpp"

namespace faas {
namespace test {

// The function called as the front calls it for `POST <path>` with `body`.
inline Response post(const std::string& body, const std::string& path = "/") {
    Request req;
    req.method = "POST";
    req.uri = path;
    req.path = path;
    req.body = body;
    return handle(req);
}

struct Case {
    const char* name;
    void (*fn)();
};

inline std::vector<Case>& cases() {
    static std::vector<Case> all;
    return all;
}

// Failed checks in the current test.
inline int& failed_checks() {
    static int n = 0;
    return n;
}

struct Register {
    Register(const char* name, void (*fn)()) { cases().push_back(Case{name, fn}); }
};

inline void fail(const char* file, int line, const std::string& what) {
    failed_checks()++;
    std::fprintf(stderr, "%s:%d: %s\n", file, line, what.c_str());
}

template <class A, class B>
void expect_eq(const A& a, const B& b, const char* ea, const char* eb, const char* file, int line) {
    if (a == b) return;
    std::ostringstream o;
    o << "expected " << ea << " == " << eb << "\n    left:  " << a << "\n    right: " << b;
    fail(file, line, o.str());
}

// Runs every registered test; returns the process exit status.
inline int run_all() {
    int failed = 0;
    for (const Case& c : cases()) {
        failed_checks() = 0;
        try {
            c.fn();
        } catch (const std::exception& e) {
            fail(c.name, 0, std::string("exception: ") + e.what());
        } catch (...) {
            fail(c.name, 0, "unknown exception");
        }
        std::printf("test %s ... %s\n", c.name, failed_checks() ? "FAILED" : "ok");
        if (failed_checks()) failed++;
    }
    std::printf("%zu test(s), %d failed\n", cases().size(), failed);
    return failed ? 1 : 0;
}

}  // namespace test
}  // namespace faas

#define FAAS_TEST(name)                                                   \
    static void name();                                                   \
    static const ::faas::test::Register name##_registration(#name, name); \
    static void name()

#define EXPECT_EQ(a, b) ::faas::test::expect_eq((a), (b), #a, #b, __FILE__, __LINE__)
#define EXPECT_TRUE(cond) \
    ((cond) ? (void)0 : ::faas::test::fail(__FILE__, __LINE__, std::string("expected ") + #cond))
