# Sourced by the scripts that build test images (certifier-images.sh,
# debian-python-image.sh): what they share before building anything.
# The caller sets `me` (its name, for messages) and `here` (the checkout).
#
#   find_shared          sets `shared`: $SHUNT_SHARED, else the first
#                        shared/ with tools/ beside a parent of the checkout
#   need_files F...      fails in one line naming the first missing file
#   need_tools T...      fails in one line naming the first missing command
#   make_work            sets `work`: a temporary directory removed on exit

find_shared() {
    shared=${SHUNT_SHARED:-}
    if [ -z "$shared" ]; then
        d=$here
        while [ "$d" != / ]; do
            d=$(dirname "$d")
            if [ -d "$d/shared/tools" ]; then shared=$d/shared; break; fi
        done
    fi
    [ -n "$shared" ] || { echo "$me: no shared/tools beside any parent of $here (set SHUNT_SHARED)" >&2; exit 1; }
}

need_files() {
    for f in "$@"; do
        [ -e "$f" ] || { echo "$me: $f is missing (see ../shared/third_party/README.md, scripts/setup.sh)" >&2; exit 1; }
    done
}

need_tools() {
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "$me: $t is not installed: run scripts/setup.sh" >&2; exit 1; }
    done
}

make_work() {
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
}
