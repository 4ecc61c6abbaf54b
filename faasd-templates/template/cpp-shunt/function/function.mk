# Build settings of this function, read by the template's Makefile:
#   LDLIBS   += -lcrypto                         libraries to link
#   REQUIRES += openssl/evp.h:libssl-dev:crypto  header:Debian package:build option
#   FUNCTION_SRCS := handler.cpp more.cpp        sources (default: function/*.cpp but *_test.cpp)
