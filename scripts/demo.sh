#!/bin/sh
# The demo: build shunt; build vSwarm's AES function (Go and C++) from the
# OpenFaaS templates into the image store of `shunt daemon`; deploy it to a
# daemon running natively (`--native`) and to one on the shunt runtime, with
# faas-cli as OpenFaaS users do (curl when faas-cli is missing); call it,
# compare the answers, show the functions' syscall statistics from the
# daemon's metrics (trapped must be 0), scale to zero and cold-start, show
# the logs; run an unmodified program under shunt; end with the benchmarks at
# a small scale (syscall paths, the daemon's deploy time and gateway hop,
# the platform benchmark: Figures 5 and 6, cold starts, density).
#
# Everything runs on loopback, on ports the kernel picks, with state in a
# temporary directory (removed at the end).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
SHUNT=$ROOT/target/release/shunt
WORK=$(mktemp -d)
DAEMON_PID=""
cleanup() {
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
fail() {
    echo "demo: $*" >&2
    exit 1
}

# faas-cli: $FAAS_CLI, else on PATH, else where scripts/setup.sh installs it
# (Go's bin directory).
FAAS_CLI=${FAAS_CLI:-$(command -v faas-cli || true)}
if [ -z "$FAAS_CLI" ] && command -v go >/dev/null 2>&1 && [ -x "$(go env GOPATH)/bin/faas-cli" ]; then
    FAAS_CLI="$(go env GOPATH)/bin/faas-cli"
fi

step "building shunt (release)"
cargo build --release --workspace --quiet

step "the function: vSwarm's AES as golang-shunt and cpp-shunt handlers (faasd-templates/stack.yml)"
mkdir -p "$WORK/stack"
cp -r faasd-templates/stack.yml faasd-templates/template faasd-templates/functions "$WORK/stack/"
cd "$WORK/stack"
# Both builds (shunt and --native) of each function, as one OCI image per
# function (named by the stack's image:) in the daemon's image store.
"$SHUNT" faas build -f stack.yml --native --filter aes-go --filter aes-cpp --state-dir "$WORK/native"
mkdir -p "$WORK/shunt"
cp -r "$WORK/native/images" "$WORK/shunt/images"
"$SHUNT" image list --state-dir "$WORK/native"

# start_daemon NAME [FLAGS…]: `shunt daemon` with its state in $WORK/NAME,
# on a free loopback port; sets URL and PASSWORD once it listens.
start_daemon() {
    name=$1
    shift
    "$SHUNT" daemon --listen 127.0.0.1:0 --state-dir "$WORK/$name" --ready-file "$WORK/$name.url" "$@" \
        > "$WORK/$name.out" 2> "$WORK/$name.err" &
    DAEMON_PID=$!
    i=0
    until grep -q '^http' "$WORK/$name.url" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 1200 ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            cat "$WORK/$name.err" >&2
            fail "shunt daemon $* did not start listening"
        fi
        sleep 0.1
    done
    URL=$(cat "$WORK/$name.url")
    PASSWORD_FILE="$WORK/$name/auth/basic-auth-password"
    cat "$WORK/$name.err"
}
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || fail "shunt daemon did not stop cleanly: $(cat "$WORK"/*.err)"
    DAEMON_PID=""
}

# The OpenFaaS API with the admin's credentials (what faas-cli does).
api() { # METHOD PATH [JSON]
    curl -sS --fail-with-body --max-time 60 -u "admin:$(cat "$PASSWORD_FILE")" -X "$1" \
        -H 'Content-Type: application/json' ${3:+-d "$3"} "$URL$2"
}
# faas-cli with its own config (login credentials) in $WORK/home.
faas() { HOME="$WORK/home" "$FAAS_CLI" "$@" -g "$URL"; }

deploy() {
    if [ -n "$FAAS_CLI" ]; then
        echo "\$ faas-cli login --username admin --password-stdin < $PASSWORD_FILE"
        HOME="$WORK/home" "$FAAS_CLI" login -g "$URL" --username admin --password-stdin < "$PASSWORD_FILE"
        echo "\$ faas-cli deploy -f stack.yml --filter 'aes-*'"
        faas deploy -f stack.yml --filter 'aes-*'
        echo "\$ faas-cli list"
        faas list
    else
        echo "(faas-cli is not installed: deploying with curl, the same API)"
        for f in aes-go aes-cpp; do
            api POST /system/functions "{\"service\":\"$f\",\"image\":\"shunt-$f:latest\"}"
            echo "deployed $f"
        done
        api GET /system/functions
        echo
    fi
}

# Each function once through faas-cli (or curl) and once with curl on the
# gateway's route; the first call waits until the new instance is healthy.
call() {
    for f in aes-go aes-cpp; do
        if [ -n "$FAAS_CLI" ]; then
            printf 'A unique message' | faas invoke "$f"
        else
            curl -sS --fail-with-body --max-time 60 -d 'A unique message' "$URL/function/$f"
        fi
        echo
        curl -sS --fail-with-body --max-time 60 -d 'A unique message' "$URL/function/$f"
        echo
    done
}

# The invocations, and under shunt the functions' and the daemon's syscalls
# by class, from the daemon's /metrics (read live from the instances' stats
# segments); under shunt, fails if any call trapped or none reached the gate.
calls() { # NAME
    curl -sS --max-time 30 "$URL/metrics" > "$WORK/metrics"
    grep -E '^(shunt_function_syscalls_total|shunt_daemon_syscalls_total|gateway_function_invocation_total)' "$WORK/metrics" || true
    if [ "$1" = native ]; then
        echo "(natively nothing counts syscalls: no shunt_*_syscalls_total)"
        return
    fi
    if grep -E '^shunt_function_syscalls_total\{.*class="trapped"' "$WORK/metrics" | grep -qv ' 0$'; then
        fail "a function's calls trapped (see above)"
    fi
    grep -qE '^shunt_function_syscalls_total\{.*class="redirected".*\} [1-9]' "$WORK/metrics" ||
        fail "no function call went through the gate"
}

# Scale aes-go to zero, wait until no replica is left, then call it: the
# call starts an instance and waits for it (a cold start).
scale_to_zero() {
    echo "\$ curl -u admin:… -X POST $URL/system/scale-function/aes-go -d '{\"serviceName\":\"aes-go\",\"replicas\":0}'"
    api POST /system/scale-function/aes-go '{"serviceName":"aes-go","replicas":0}'
    i=0
    # (availableReplicas is left out at 0, as faas-provider's JSON does)
    while status=$(api GET /system/function/aes-go) && echo "$status" | grep -q '"availableReplicas":[1-9]'; do
        i=$((i + 1))
        [ "$i" -le 300 ] || fail "aes-go did not scale to zero"
        sleep 0.1
    done
    echo "$status" | grep -q '"name":"aes-go"' || fail "cannot read the status of aes-go: $status"
    echo "aes-go has no replica left; the next call cold-starts it:"
    curl -sS --fail-with-body --max-time 60 -d 'A unique message' "$URL/function/aes-go"
    echo
    curl -sS --max-time 30 "$URL/metrics" | grep -E '^shunt_function_cold_start(s_total|_seconds_(sum|count))\{function_name="aes-go' || true
}

show_logs_and_remove() {
    if [ -n "$FAAS_CLI" ]; then
        echo "\$ faas-cli logs aes-go --tail=false --lines 4"
        faas logs aes-go --tail=false --lines 4
        echo "\$ faas-cli describe aes-cpp"
        faas describe aes-cpp
        echo "\$ faas-cli remove -f stack.yml --filter 'aes-*'"
        faas remove -f stack.yml --filter 'aes-*'
    else
        api GET '/system/logs?name=aes-go&follow=false&tail=4'
        for f in aes-go aes-cpp; do
            api DELETE /system/functions "{\"functionName\":\"$f\"}"
            echo "removed $f"
        done
    fi
}

demo_daemon() { # NAME [FLAGS…]
    name=$1
    start_daemon "$@"
    deploy
    call > "$WORK/$name.answers"
    cat "$WORK/$name.answers"
    step "$name: the calls, from the daemon's /metrics"
    calls "$name"
    step "$name: scale to zero and a cold start (faasd CE cannot do this)"
    scale_to_zero
    step "$name: logs, describe, remove"
    show_logs_and_remove
    stop_daemon
}

step "natively: shunt daemon --native (the daemon and plain go build / g++ functions, no shunt)"
demo_daemon native --native

step "under shunt: shunt daemon (the daemon on the runtime, each function a shunt instance of its own)"
demo_daemon shunt

step "same answers natively and under shunt?"
if cmp -s "$WORK/native.answers" "$WORK/shunt.answers"; then echo "yes: identical"; else fail "NO: the answers differ"; fi
cd "$ROOT"

step "an unmodified program (python3 with threads and a subprocess) under shunt run"
printf 'import subprocess, threading\nt = [threading.Thread(target=print, args=(i,)) for i in range(3)]\n[x.start() or x.join() for x in t]\nprint(subprocess.run(["sort"], input="b\\na\\n", capture_output=True, text=True).stdout, end="")\n' > "$WORK/prog.py"
"$SHUNT" run --stats "$WORK/py.json" -- /usr/bin/python3 "$WORK/prog.py"
"$SHUNT" stats "$WORK/py.json" --top 5

step "what each path costs (shunt bench syscall, quick)"
"$SHUNT" bench syscall --calls 50000 --rounds 7

step "what the daemon costs: deploy to ready, and the gateway hop (shunt bench manager --quick)"
"$SHUNT" bench manager --quick --templates "$ROOT/faasd-templates"

step "the Junctiond report's evaluation through the platform, small scale (shunt bench platform --quick)"
# stock = the real of-watchdog + golang-middleware in containerd/runc (needs root),
# native, shunt-kernel, shunt (shm + spin): Figure 5, Figure 6, cold starts, density.
# Kept after the demo: results.json and the plots (SVG) to open.
if [ "$(id -u)" = 0 ]; then configs=""; else configs="--configs native,shunt-kernel,shunt"; echo "(not root: no stock containers)"; fi
# Its stderr (the functions' and watchdogs' logs) goes to a file; on a
# failure the last lines, which hold shunt's own one-line error, are shown.
log="$ROOT/target/demo-bench-platform.log"
if ! "$SHUNT" bench platform --quick $configs --out "$ROOT/target/demo-bench-platform" --templates "$ROOT/faasd-templates" 2>"$log"; then
	echo "demo: shunt bench platform failed; the end of its log ($log):" >&2
	tail -n 3 "$log" >&2
	exit 1
fi
echo "(a full run: target/release/shunt bench platform --out DIR; results.json and the SVG plots land in DIR)"
