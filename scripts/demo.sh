#!/bin/sh
# The demo: build shunt; build vSwarm's AES function (Go and C++) from the
# OpenFaaS templates; serve it natively and under shunt, call it, compare the
# answers and show the syscall statistics; run an unmodified program under
# shunt; end with the invocation benchmark at a small scale.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
SHUNT=$ROOT/target/release/shunt
WORK=$(mktemp -d)
UP_PID=""
cleanup() {
    [ -z "$UP_PID" ] || kill -INT "$UP_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=18180 # aes-cpp; aes-go is on the next port

step() { printf '\n== %s\n' "$*"; }

step "building shunt (release)"
cargo build --release --workspace --quiet

step "the function: vSwarm's AES as golang-shunt and cpp-shunt handlers (faasd-templates/stack.yml)"
mkdir -p "$WORK/stack"
cp -r faasd-templates/stack.yml faasd-templates/template faasd-templates/functions "$WORK/stack/"
cd "$WORK/stack"
"$SHUNT" faas build -f stack.yml --native --filter aes-go --filter aes-cpp

# Starts the two functions (extra arguments: --native, --stats-dir) and waits
# until `shunt faas up` says they are healthy.
up() {
    # Emptied here, not by the job's redirection: the job may not have
    # started yet when the loop below first reads the file.
    : > "$WORK/up.out"
    "$SHUNT" faas up -f stack.yml --filter aes-go --filter aes-cpp --base-port "$PORT" "$@" > "$WORK/up.out" 2> "$WORK/up.err" &
    UP_PID=$!
    i=0
    until grep -q "function(s) up" "$WORK/up.out"; do
        i=$((i + 1))
        if [ "$i" -gt 600 ] || ! kill -0 "$UP_PID" 2>/dev/null; then
            cat "$WORK/up.err" >&2
            echo "demo: shunt faas up did not come up" >&2
            exit 1
        fi
        sleep 0.1
    done
    cat "$WORK/up.out"
}
# Ctrl-C for `shunt faas up`: every front drains and exits.
down() {
    kill -INT "$UP_PID"
    wait "$UP_PID"
    UP_PID=""
}
call() {
    for p in "$PORT" $((PORT + 1)); do
        curl -sS --max-time 30 -d 'A unique message' "http://127.0.0.1:$p/"
        echo
    done
}

step "native (plain go build / g++, no shunt): shunt faas up --native"
up --native
call | tee "$WORK/native.out"
down

step "under shunt (shunt go build / shunt c++, run by shunt run): shunt faas up --stats-dir"
up --stats-dir "$WORK/stats"
call | tee "$WORK/shunt.out"
down

step "same answers natively and under shunt?"
if cmp -s "$WORK/native.out" "$WORK/shunt.out"; then echo "yes: identical"; else echo "NO: the answers differ"; exit 1; fi

for f in aes-go aes-cpp; do
    step "syscall statistics of $f under shunt (trapped must be 0)"
    "$SHUNT" stats "$WORK/stats/$f.json" --top 8
done
cd "$ROOT"

step "an unmodified program (python3 with threads and a subprocess) under shunt run"
printf 'import subprocess, threading\nt = [threading.Thread(target=print, args=(i,)) for i in range(3)]\n[x.start() or x.join() for x in t]\nprint(subprocess.run(["sort"], input="b\\na\\n", capture_output=True, text=True).stdout, end="")\n' > "$WORK/prog.py"
"$SHUNT" run --stats "$WORK/py.json" -- /usr/bin/python3 "$WORK/prog.py"
"$SHUNT" stats "$WORK/py.json" --top 5

step "what each path costs (shunt bench syscall, quick)"
"$SHUNT" bench syscall --calls 50000 --rounds 7

step "the Junctiond report's invocation benchmark, small scale (shunt bench invoke --quick)"
# Kept after the demo: results.json and the plots (SVG) to open.
"$SHUNT" bench invoke --quick --out "$ROOT/target/demo-bench-invoke" --templates "$ROOT/faasd-templates" 2>/dev/null
echo "(a full run: target/release/shunt bench invoke --out DIR; results.json and the SVG plots land in DIR)"
