# The fibonacci function: GMP big integers (Debian libgmp-dev, build option `bigint`).
LDLIBS += -lgmp
REQUIRES += gmp.h:libgmp-dev:bigint
