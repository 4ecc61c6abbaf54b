#!/bin/sh
# Builds an ordinary OpenFaaS-style image from Debian's packages: a minimal
# bookworm root filesystem made by mmdebstrap (variant essential + python3,
# from the machine's apt mirror), and on top of it a small Python HTTP
# function (http.server, written below) behind of-watchdog in http mode
# (../shared/tools/fwatchdog), as the python3-http templates run it.
#   OUT/layout   the OCI image layout, tag `latest`
# Two layers: the root filesystem as mmdebstrap wrote it (device nodes
# left out: the runtime makes /dev), then /home/app and the watchdog.
# Needs mmdebstrap, umoci (scripts/setup.sh installs them) and the Debian
# mirror; takes about 1.5 min cold (the tests cache its output).
# Usage: scripts/debian-python-image.sh OUT [SUITE]
set -eu
out=${1:?usage: scripts/debian-python-image.sh OUT [SUITE]}
suite=${2:-bookworm}
here=$(cd "$(dirname "$0")/.." && pwd)
me=debian-python-image
. "$here/scripts/lib/image-build.sh"
find_shared
need_files "$shared/tools/fwatchdog"
need_tools mmdebstrap umoci
mkdir -p "$out"
make_work
mmdebstrap --quiet --mode=root --variant=essential --include=python3 --skip=output/dev \
    --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-exclude=/usr/share/man/* \
    --dpkgopt=path-exclude=/usr/share/locale/* \
    "$suite" "$work/rootfs.tar"

app=$work/app
mkdir -p "$app/home/app" "$app/usr/bin"
cp "$shared/tools/fwatchdog" "$app/usr/bin/fwatchdog"
cat >"$app/home/app/index.py" <<'PY'
# A small HTTP function: what it was asked and where it runs, as JSON.
import hashlib, http.server, json, os, sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
        if self.path.startswith("/fail"):
            code, out = 500, b"asked to fail\n"
        else:
            code = 200
            out = json.dumps({
                "method": self.command,
                "path": self.path,
                "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "upper": body.decode("utf-8", "replace").upper()[:64],
                "uid": os.getuid(),
                "cwd": os.getcwd(),
                "python": sys.version.split()[0],
                "libc": os.confstr("CS_GNU_LIBC_VERSION"),
                "os_release": open("/etc/debian_version").read().strip(),
                "fprocess": os.environ.get("fprocess"),
            }, sort_keys=True).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = answer

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", 5000), Handler).serve_forever()
PY
(cd "$app" && tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$work/app.tar" .)

rm -rf "$out/layout"
umoci init --layout "$out/layout"
umoci new --image "$out/layout:latest"
umoci raw add-layer --image "$out/layout:latest" "$work/rootfs.tar"
umoci raw add-layer --image "$out/layout:latest" "$work/app.tar"
umoci config --image "$out/layout:latest" --config.cmd fwatchdog --config.workingdir /home/app \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env mode=http --config.env "fprocess=python3 index.py" \
    --config.env upstream_url=http://127.0.0.1:5000 --config.env prefix_logs=false
echo "debian-python-image: wrote $out/layout (tag latest)"
