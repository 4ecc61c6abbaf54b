// Unit tests of the AES handler: vSwarm's reference vectors.
#include <string>

#include "aes.hpp"
#include "faas.hpp"
#include "faas_test.hpp"

namespace {

std::string answer(const std::string& body) {
    faas::Response resp = faas::test::post(body);
    EXPECT_EQ(resp.status, 200);
    return resp.body;
}

const std::string kDefault =
    "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: cpp";

}  // namespace

FAAS_TEST(reference_vectors) {
    EXPECT_EQ(answer("defaultplaintext"), kDefault);
    EXPECT_EQ(answer("A unique message"),
              "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: cpp");
    EXPECT_EQ(answer("hello"), "fn: AES | plaintext: hello | ciphertext: d40e94c520 | runtime: cpp");
}

FAAS_TEST(empty_or_world_means_the_default) {
    EXPECT_EQ(answer(""), kDefault);
    EXPECT_EQ(answer("world"), kDefault);
    EXPECT_EQ(answer("World").find("plaintext: World |") != std::string::npos, true);
}

FAAS_TEST(ctr_keeps_the_length) {
    std::string pt(600, 'x');
    EXPECT_EQ(aes_fn::encrypt_hex(pt).size(), std::size_t(1200));
    EXPECT_EQ(aes_fn::encrypt_hex(""), "");
}

FAAS_TEST(over_one_mebibyte_is_refused) {
    faas::Request req;
    req.body.assign((std::size_t(1) << 20) + 1, 'a');
    EXPECT_EQ(handle(req).status, 413);
}
