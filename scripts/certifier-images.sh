#!/bin/sh
# Builds the OCI image layouts the OpenFaaS certifier deploys, as stand-ins
# made from parts on this machine (the originals cannot be pulled here):
#   OUT/alpine      functions/alpine:latest — Debian's busybox-static and the
#                   classic watchdog (forks fprocess per request, like the original)
#   OUT/redirector  theaxer/redirector:latest — the certifier's
#                   functions/redirector/handler.go built with the golang-middleware
#                   template, behind of-watchdog (http mode)
# Each layout holds its image under the tag `latest`. Needs umoci, go,
# busybox-static (scripts/setup.sh installs them) and ../shared (the
# watchdogs, the template and the certifier).
# Usage: scripts/certifier-images.sh OUT
set -eu
out=${1:?usage: scripts/certifier-images.sh OUT}
here=$(cd "$(dirname "$0")/.." && pwd)
me=certifier-images
. "$here/scripts/lib/image-build.sh"
find_shared
need_files "$shared/tools/classic-watchdog" "$shared/tools/fwatchdog" \
    "$shared/third_party/golang-http-template/golang-middleware/main.go" \
    "$shared/third_party/certifier/functions/redirector/handler.go" /bin/busybox
need_tools umoci go
mkdir -p "$out"
make_work
# Debian's umoci 0.4.7 `insert` writes a tar that ends inside its last
# file's padding, without the end-of-archive blocks; so each layer is made
# by GNU tar (owned by root) and added verbatim.
add_layer() {
    (cd "$2" && tar --numeric-owner --owner=0 --group=0 --sort=name -cf "$work/layer.tar" .)
    umoci raw add-layer --image "$1" "$work/layer.tar"
    rm -f "$work/layer.tar"
}
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# functions/alpine:latest
root=$work/alpine
mkdir -p "$root/bin" "$root/usr/bin" "$root/etc" "$root/root" "$root/home/app"
cp /bin/busybox "$root/bin/busybox"
for app in $(/bin/busybox --list); do
    [ "$app" = busybox ] || ln -s busybox "$root/bin/$app"
done
cp "$shared/tools/classic-watchdog" "$root/usr/bin/fwatchdog"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:100:101:app:/home/app:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\napp:x:101:\n' >"$root/etc/group"
rm -rf "$out/alpine"
umoci init --layout "$out/alpine"
umoci new --image "$out/alpine:latest"
add_layer "$out/alpine:latest" "$root"
umoci config --image "$out/alpine:latest" --config.cmd fwatchdog --config.env "PATH=$path" --config.workingdir /home/app

# theaxer/redirector:latest
src=$work/redirector-src
cp -r "$shared/third_party/golang-http-template/golang-middleware" "$src"
chmod -R u+w "$src"
cp "$shared/third_party/certifier/functions/redirector/handler.go" "$src/function/handler.go"
root=$work/redirector
mkdir -p "$root/home/app/static" "$root/etc" "$root/tmp"
(cd "$src" && CGO_ENABLED=0 GOFLAGS= GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w" -o "$root/home/app/handler" .)
cp "$shared/tools/fwatchdog" "$root/home/app/fwatchdog"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:100:101:app:/home/app:/bin/sh\n' >"$root/etc/passwd"
rm -rf "$out/redirector"
umoci init --layout "$out/redirector"
umoci new --image "$out/redirector:latest"
add_layer "$out/redirector:latest" "$root"
umoci config --image "$out/redirector:latest" --config.cmd ./fwatchdog --config.workingdir /home/app \
    --config.env "PATH=$path" --config.env fprocess=./handler --config.env mode=http \
    --config.env upstream_url=http://127.0.0.1:8082 --config.env prefix_logs=false
echo "certifier-images: wrote $out/alpine and $out/redirector (tag latest)"
