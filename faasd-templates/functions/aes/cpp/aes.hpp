// vSwarm's AES function in C++: AES-128-CTR through OpenSSL's libcrypto.
#pragma once
#include <string>

namespace aes_fn {

// The function: `body` is the plaintext (empty or "world" means
// "defaultplaintext"); returns
// "fn: AES | plaintext: <pt> | ciphertext: <lowercase hex> | runtime: cpp".
std::string handle(const std::string &body);

// AES-128-CTR of `plaintext` with vSwarm's key and a zero IV, as lowercase hex.
std::string encrypt_hex(const std::string &plaintext);

}  // namespace aes_fn
