#!/bin/sh
# Installs what shunt needs on a Debian machine, idempotently: nothing is
# downloaded when everything is present already.
set -eu

# What the machine must offer before anything is installed: each miss is one
# line saying what to install or upgrade, and setup stops (exit 1).
hard_miss=""
miss() { echo "setup: $1" >&2; hard_miss=1; }
# "X.Y[.Z]" >= "A.B": compares the first two numbers.
at_least() {
    set -- $(echo "$1.0.0" | cut -d. -f1,2 | tr . ' ') $(echo "$2.0.0" | cut -d. -f1,2 | tr . ' ')
    [ "$1" -gt "$3" ] 2>/dev/null || { [ "$1" -eq "$3" ] 2>/dev/null && [ "$2" -ge "$4" ] 2>/dev/null; }
}
[ "$(uname -m)" = x86_64 ] || miss "this is $(uname -m): shunt runs on x86-64 Linux only"
kernel=$(uname -r | sed 's/[^0-9.].*//')
# Syscall User Dispatch (the trap fallback) came in Linux 5.11.
at_least "$kernel" 5.11 || miss "Linux $kernel is too old: upgrade the kernel to 5.11 or later (Syscall User Dispatch)"
# seccomp filters (--isolate, the daemon's default).
grep -q '^Seccomp:' /proc/self/status 2>/dev/null && [ -r /proc/sys/kernel/seccomp/actions_avail ] \
    || miss "the kernel has no seccomp filters: use a kernel built with CONFIG_SECCOMP_FILTER"
grep -qw kill_process /proc/sys/kernel/seccomp/actions_avail 2>/dev/null \
    || miss "the kernel's seccomp lacks SECCOMP_RET_KILL_PROCESS: upgrade the kernel to 4.14 or later"
# pidfds: the supervisor and the tests wait on processes through them.
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import os; os.close(os.pidfd_open(os.getpid()))' 2>/dev/null \
        || miss "pidfd_open(2) fails here: upgrade the kernel to 5.3 or later (pidfds)"
fi
# FSGSBASE: the gate switches GS with wrgsbase.
grep -qw fsgsbase /proc/cpuinfo || miss "this CPU or kernel does not offer FSGSBASE: the runtime needs it (Linux 5.9+ on x86-64)"
[ -z "$hard_miss" ] || exit 1

# Debian packages: the C toolchain and the programs the tests run.
# libssl-dev and libgmp-dev: the C++ functions' build options (crypto, bigint).
# linux-libc-dev: the kernel uapi headers the syscall table is checked against.
# curl: the demo calls the functions with it.
# busybox-static, musl-tools: binaries shunt did not build (static glibc, musl)
# whose syscall sites the rewrite tests plan and run.
# strace: rewrite_jit watches threads meet the int3 of a site being rewritten.
PACKAGES="gcc g++ make cmake python3 coreutils sqlite3 libssl-dev libgmp-dev git util-linux curl busybox-static musl-tools linux-libc-dev strace"
# containerd, runc, umoci: the benchmark's stock container path (a private
# containerd started by shunt-containerd; images made with umoci).
PACKAGES="$PACKAGES containerd runc umoci"
# skopeo, docker-registry: shunt-image's pull and its tests (a registry on 127.0.0.1,
# images pushed to it from OCI layouts).
PACKAGES="$PACKAGES skopeo docker-registry"
# patchelf, mmdebstrap: shunt-oci (the shunt executable given its own loader inside
# containers) and its tests (a Debian root filesystem with python3, built once).
PACKAGES="$PACKAGES patchelf mmdebstrap"
# libclang-dev, clang: bindgen (runtime/abi/build.rs) reads the kernel's uapi
# headers through libclang to generate the syscall numbers and kernel structs.
PACKAGES="$PACKAGES libclang-dev clang"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# A JDK (java, javac; any version): tests/tests/java_jvm.rs runs a JVM.
command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1 || missing="$missing default-jdk-headless"
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Go tools: hey, the load generator of `shunt bench invoke` (pinned).
if command -v go >/dev/null 2>&1; then
    # The Go target rewrites the runtime of Go 1.25 to 1.27 (gotarget/src/rules.rs).
    gover=$(go env GOVERSION 2>/dev/null | sed 's/^go//; s/[^0-9.].*//')
    if ! at_least "$gover" 1.25; then
        echo "setup: Go $gover is too old: install Go 1.25, 1.26 or 1.27 (https://go.dev/dl), or set GOTOOLCHAIN=go1.26.8" >&2
        exit 1
    elif at_least "$gover" 1.28; then
        echo "setup: Go $gover is newer than the Go target knows (1.25-1.27): install one of those, or set GOTOOLCHAIN=go1.27.4" >&2
        exit 1
    fi
    GOBIN_DIR="$(go env GOPATH)/bin"
    if [ ! -x "$GOBIN_DIR/hey" ] && ! command -v hey >/dev/null 2>&1; then
        echo "setup: installing hey (go install github.com/rakyll/hey@v0.1.5)"
        GOTOOLCHAIN=local go install github.com/rakyll/hey@v0.1.5
    fi
    # crictl: the CRI client oci_containerd drives containerd's CRI plugin with
    # (the kubelet's path to shunt-oci).
    if [ ! -x "$GOBIN_DIR/crictl" ] && ! command -v crictl >/dev/null 2>&1; then
        echo "setup: installing crictl (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0)"
        GOTOOLCHAIN=local go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0
    fi
    # vegeta: the constant-rate (open-loop) generator of the load sweep.
    if [ ! -x "$GOBIN_DIR/vegeta" ] && ! command -v vegeta >/dev/null 2>&1; then
        echo "setup: installing vegeta (go install github.com/tsenart/vegeta/v12@v12.13.0)"
        GOTOOLCHAIN=local go install github.com/tsenart/vegeta/v12@v12.13.0
    fi
    # faas-cli 0.18.12: the OpenFaaS client the daemon's end-to-end test and
    # the demo drive `shunt daemon` with. Where the Go proxy refuses
    # github.com/openfaas/* (it answers 403 on some machines), the machine's
    # shared copy (shared/tools/faas-cli in a folder above this checkout) is
    # linked into Go's bin directory instead.
    if [ ! -x "$GOBIN_DIR/faas-cli" ] && ! command -v faas-cli >/dev/null 2>&1; then
        echo "setup: installing faas-cli (go install github.com/openfaas/faas-cli@0.18.12)"
        if ! GOTOOLCHAIN=local go install github.com/openfaas/faas-cli@0.18.12 2>"${TMPDIR:-/tmp}/shunt-setup-faas-cli.err"; then
            shared=""
            d=$(cd "$(dirname "$0")/.." && pwd)
            while [ "$d" != / ]; do
                if [ -x "$d/shared/tools/faas-cli" ]; then shared="$d/shared/tools/faas-cli"; break; fi
                d=$(dirname "$d")
            done
            if [ -n "$shared" ]; then
                echo "setup: go install failed ($(head -n 1 "${TMPDIR:-/tmp}/shunt-setup-faas-cli.err")); linking $shared"
                mkdir -p "$GOBIN_DIR"
                ln -sf "$shared" "$GOBIN_DIR/faas-cli"
            else
                echo "setup: cannot install faas-cli 0.18.12 ($(head -n 1 "${TMPDIR:-/tmp}/shunt-setup-faas-cli.err")); put it on PATH or set FAAS_CLI (the demo then uses curl; the faas-cli test needs it)" >&2
            fi
        fi
    fi
else
    echo "setup: go is missing; install Go 1.25+ (https://go.dev/dl) and retry" >&2
    exit 1
fi

# Rust (cargo fetches the crates itself).
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust (https://rustup.rs) and retry" >&2
    exit 1
fi
# The workspace's rust-version (Cargo.toml).
rustver=$(rustc --version 2>/dev/null | awk '{print $2}')
if ! at_least "${rustver:-0.0}" 1.85; then
    echo "setup: Rust ${rustver:-(no rustc)} is too old: upgrade to 1.85 or later (rustup update stable)" >&2
    exit 1
fi
# `make check` runs clippy over the runtime's crates.
if ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        echo "setup: installing clippy (rustup component add clippy)"
        rustup component add clippy
    else
        echo "setup: cargo clippy is missing; install the clippy component and retry" >&2
        exit 1
    fi
fi

