// vSwarm AES semantics (as its Go version): key = hex-decode
// "6368616e676520746869732070617373" ("change this pass"), AES-128-CTR with a
// zero 16-byte IV; the ciphertext is printed as lowercase hex.
#include "aes.hpp"

#include <openssl/evp.h>

#include <stdexcept>
#include <vector>

namespace aes_fn {

namespace {
const unsigned char kKey[16] = {'c', 'h', 'a', 'n', 'g', 'e', ' ', 't', 'h', 'i', 's', ' ', 'p', 'a', 's', 's'};
const unsigned char kIv[16] = {0};
const char kDefault[] = "defaultplaintext";
}  // namespace

std::string encrypt_hex(const std::string &plaintext) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) throw std::runtime_error("EVP_CIPHER_CTX_new");
    std::vector<unsigned char> out(plaintext.size() + 16);
    int n = 0, m = 0;
    bool ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), nullptr, kKey, kIv) == 1 &&
              EVP_EncryptUpdate(ctx, out.data(), &n, reinterpret_cast<const unsigned char *>(plaintext.data()),
                                static_cast<int>(plaintext.size())) == 1 &&
              EVP_EncryptFinal_ex(ctx, out.data() + n, &m) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) throw std::runtime_error("AES-128-CTR failed");
    static const char digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(2 * (n + m));
    for (int i = 0; i < n + m; i++) {
        hex.push_back(digits[out[i] >> 4]);
        hex.push_back(digits[out[i] & 15]);
    }
    return hex;
}

std::string handle(const std::string &body) {
    std::string pt = (body.empty() || body == "world") ? std::string(kDefault) : body;
    return "fn: AES | plaintext: " + pt + " | ciphertext: " + encrypt_hex(pt) + " | runtime: cpp";
}

}  // namespace aes_fn
