// Unit tests of the fibonacci handler: vSwarm's outputs.
#include <cstdint>
#include <limits>
#include <string>

#include "faas.hpp"
#include "faas_test.hpp"
#include "fib.hpp"

FAAS_TEST(reference_outputs) {
    EXPECT_EQ(faas::test::post("10").body, "fn: Fib: y = fib(x) | x: 10 y: 55 | runtime: cpp");
    EXPECT_EQ(faas::test::post("100").body, "fn: Fib: y = fib(x) | x: 100 y: 354224848179261915075 | runtime: cpp");
    EXPECT_EQ(faas::test::post("1").body, "fn: Fib: y = fib(x) | x: 1 y: 1 | runtime: cpp");
    EXPECT_EQ(faas::test::post("2").body, "fn: Fib: y = fib(x) | x: 2 y: 1 | runtime: cpp");
    EXPECT_EQ(faas::test::post("0").body, "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: cpp");
    EXPECT_EQ(faas::test::post("-5").body, "fn: Fib: y = fib(x) | x: -5 y: 0 | runtime: cpp");
    EXPECT_EQ(faas::test::post("+7").body, "fn: Fib: y = fib(x) | x: 7 y: 13 | runtime: cpp");
}

FAAS_TEST(white_space_around_x_is_dropped) {
    for (const char* s : {"10\n", " 10", "\t10\r\n", "10 "}) {
        EXPECT_EQ(faas::test::post(s).body, "fn: Fib: y = fib(x) | x: 10 y: 55 | runtime: cpp");
    }
    // Only the first 64 bytes count.
    EXPECT_EQ(faas::test::post("10" + std::string(62, ' ') + "junk").body, "fn: Fib: y = fib(x) | x: 10 y: 55 | runtime: cpp");
}

FAAS_TEST(not_a_number_is_zero) {
    for (const char* s : {"", "abc", "1 0", "1e3", "0x10", "+", "-", "1_000", "10abc"}) {
        faas::Response r = faas::test::post(s);
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(r.body, "fn: Fib: y = fib(x) | x: 0 y: 0 | runtime: cpp");
    }
}

FAAS_TEST(parse_int64_like_go) {
    EXPECT_EQ(fib::parse_int64("9223372036854775807"), std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(fib::parse_int64("9223372036854775808"), std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(fib::parse_int64("99999999999999999999999"), std::numeric_limits<std::int64_t>::max());
    EXPECT_EQ(fib::parse_int64("-9223372036854775808"), std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(fib::parse_int64("-9223372036854775809"), std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(fib::parse_int64("-0"), 0);
    EXPECT_EQ(fib::parse_int64("007"), 7);
    EXPECT_EQ(fib::parse_int64("12a"), 0);
}

FAAS_TEST(big_values) {
    // F(1000) has 209 digits and ends ...849228875.
    std::string f = fib::fibonacci(1000);
    EXPECT_EQ(f.size(), std::size_t(209));
    EXPECT_EQ(f.substr(f.size() - 9), "849228875");
    EXPECT_EQ(f.substr(0, 10), "4346655768");
    EXPECT_EQ(fib::fibonacci(fib::kMaxN).size(), std::size_t(20899));
}

FAAS_TEST(over_the_limit_is_refused) {
    EXPECT_EQ(faas::test::post("100001").status, 400);
    EXPECT_EQ(faas::test::post("100001").body, "fibonacci: x = 100001 is over this function's limit (100000)\n");
    EXPECT_EQ(faas::test::post("99999999999999999999").status, 400);
    EXPECT_EQ(faas::test::post("100000").status, 200);
}
