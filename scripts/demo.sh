#!/bin/sh
# The demo: build shunt, run a program natively and under shunt, compare the
# results, show the syscall statistics, and measure the gate.
set -eu
cd "$(dirname "$0")/.."
SHUNT=target/release/shunt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "building shunt (release)"
cargo build --release --workspace --quiet

step "the function: a Python handler that hashes and sorts its request, using threads and a subprocess"
cat > "$WORK/function.py" <<'PY'
import hashlib, subprocess, sys, threading
request = sys.stdin.read()
digests = {}
def work(i):
    digests[i] = hashlib.sha256((request * (i + 1)).encode()).hexdigest()[:16]
threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
words = subprocess.run(["sort"], input="\n".join(request.split()), capture_output=True, text=True).stdout.split()
print("sorted:", " ".join(words))
print("digests:", " ".join(digests[i] for i in range(4)))
PY
REQUEST="shunt sends system calls to a libOS by function call"

step "native run"
echo "$REQUEST" | /usr/bin/python3 "$WORK/function.py" | tee "$WORK/native.out"

step "under shunt (shunt run --stats)"
echo "$REQUEST" | "$SHUNT" run --stats "$WORK/stats.json" -- /usr/bin/python3 "$WORK/function.py" | tee "$WORK/shunt.out"

step "same output?"
if cmp -s "$WORK/native.out" "$WORK/shunt.out"; then echo "yes: identical"; else echo "NO: outputs differ"; exit 1; fi

step "syscall statistics of the instance"
"$SHUNT" stats "$WORK/stats.json" --top 12

step "what each path costs (shunt bench syscall, quick)"
"$SHUNT" bench syscall --calls 50000 --rounds 7
