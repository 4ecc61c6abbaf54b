# The AES function: OpenSSL's libcrypto (Debian libssl-dev, build option `crypto`).
# server.cpp is left out: see its first lines.
FUNCTION_SRCS := handler.cpp aes.cpp
LDLIBS += -lcrypto
REQUIRES += openssl/evp.h:libssl-dev:crypto
