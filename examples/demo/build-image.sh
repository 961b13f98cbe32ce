#!/usr/bin/env bash
# Build the caas demo web app image without any registry.
#
#   examples/demo/build-image.sh [--greeting TEXT] [--force] [TAG]     (TAG default: caas-demo:latest)
#
# The image is a root filesystem holding Debian's statically linked /bin/busybox (package
# busybox-static), one symlink per busybox applet, and a start script, fed to `docker import`.
# At start the app prints `demo listening on port $PORT as $CAAS_INSTANCE` and serves HTTP on
# $PORT (default 5000) with busybox httpd. `GET /` answers
#
#   $GREETING: $CAAS_INSTANCE on $HOSTNAME        e.g. "Hello from caas: web.2 on 3f2a1b9c0d1e"
#
# and logs one line per request to the container's stderr (so `caas logs` shows it). GREETING
# defaults to "Hello from caas"; --greeting bakes another default into the image (ENV), which the
# container's environment still overrides.
#
# For health checks and drains it also answers
#   GET /cgi-bin/health     "ok" with status 200, or the status in /tmp/health-status when that
#                           file exists (`docker exec ... sh -c 'echo 503 > /tmp/health-status'`),
#                           else $HEALTH_STATUS (e.g. `caas config:set HEALTH_STATUS=500`); the
#                           file is removed at every start, so a restarted instance is healthy
#   GET /cgi-bin/sleep?N    "slept N" after N seconds (at most 120), for requests in flight It runs as an unprivileged user and needs no
# capability and no writable file system (fine with --cap-drop ALL, no-new-privileges, --read-only).
#
# Quick and idempotent: the image carries a label with a hash of its recipe (this script, the
# busybox binary, the greeting); when TAG already has that hash nothing is rebuilt. Safe to run
# concurrently: builds of one tag are serialised with flock, and a build is imported under a
# temporary tag and only then moved onto TAG.
set -euo pipefail

RECIPE_LABEL=io.caas.demo.recipe
BUSYBOX=/bin/busybox

die() { echo "build-image.sh: error: $*" >&2; exit 1; }
say() { echo "build-image.sh: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

TAG=caas-demo:latest
GREETING=
HAVE_GREETING=0
FORCE=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --greeting) [ $# -ge 2 ] || die "--greeting needs a value"; GREETING=$2; HAVE_GREETING=1; shift 2 ;;
        --greeting=*) GREETING=${1#--greeting=}; HAVE_GREETING=1; shift ;;
        --force) FORCE=1; shift ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) TAG=$1; shift ;;
    esac
done
case "$GREETING" in
    *$'\n'*|*$'\r'*) die "--greeting must be a single line" ;;
esac
# Docker's own rules are looser; this keeps the tag safe in a file name and a command line.
[[ "$TAG" =~ ^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$ ]] \
    || die "invalid image tag: $TAG"
[[ "$TAG" == *:* ]] || TAG="$TAG:latest"

command -v docker >/dev/null 2>&1 \
    || die "the docker command is missing: install Docker Engine (./install.sh --deps-only does it)"
docker info >/dev/null 2>&1 \
    || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"

# --- busybox-static ---------------------------------------------------------------------------
busybox_is_static() {
    [ -x "$BUSYBOX" ] || return 1
    # ldd fails on a static executable ("not a dynamic executable").
    if command -v ldd >/dev/null 2>&1 && ldd "$BUSYBOX" >/dev/null 2>&1; then
        return 1
    fi
    return 0
}
if ! busybox_is_static; then
    command -v apt-get >/dev/null 2>&1 \
        || die "$BUSYBOX is missing or not statically linked, and there is no apt-get to install busybox-static"
    [ "$(id -u)" -eq 0 ] \
        || die "$BUSYBOX is missing or not statically linked: run 'apt-get install busybox-static' as root"
    say "installing busybox-static with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q busybox-static >/dev/null; then
        apt-get update -q >/dev/null || true
        apt-get install -y -q busybox-static >/dev/null \
            || die "could not install busybox-static with apt-get"
    fi
    busybox_is_static || die "$BUSYBOX is still not a static executable after installing busybox-static"
fi

# --- serialise builds of this tag --------------------------------------------------------------
if command -v flock >/dev/null 2>&1; then
    lock="${TMPDIR:-/tmp}/caas-build-image.$(printf '%s' "$TAG" | tr -c 'A-Za-z0-9._-' '_').lock"
    exec 9>>"$lock"
    flock 9
fi

# --- up to date? ------------------------------------------------------------------------------
recipe=$(
    {
        echo "recipe-format 1"
        sha256sum < "$0"
        sha256sum < "$BUSYBOX"
        echo "greeting $HAVE_GREETING $GREETING"
    } | sha256sum | cut -c1-32
)
current=$(docker image inspect --format "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$TAG" 2>/dev/null || true)
if [ "$FORCE" = 0 ] && [ "$current" = "$recipe" ]; then
    say "$TAG is up to date"
    echo "$TAG"
    exit 0
fi
old_id=$(docker image inspect --format '{{ .Id }}' "$TAG" 2>/dev/null || true)

# --- root file system -------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/caas-demo-image.XXXXXX")
tmp_tag="caas-demo-build:tmp-$$-$RANDOM"
cleanup() {
    rm -rf "$work"
    docker image rm "$tmp_tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT

root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,app/www/cgi-bin}
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# One symlink per applet, all in /bin (PATH=/bin): sh, httpd, hostname, ...
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
ln -s bin "$root/sbin"
mkdir -p "$root/usr"
ln -s ../bin "$root/usr/bin"

cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:10001:10001:demo app:/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
app:x:10001:
nogroup:x:65534:
EOF

# PID 1 is this script, not httpd: a shell with a trap handles SIGTERM, so `docker stop` is quick
# (a PID 1 without a handler ignores SIGTERM and is only killed after the stop timeout).
cat > "$root/app/start" <<'EOF'
#!/bin/sh
# caas demo app: serve HTTP on $PORT with busybox httpd.
port="${PORT:-5000}"
# A fresh start is a healthy one (see cgi-bin/health).
rm -f /tmp/health-status
echo "demo listening on port $port as ${CAAS_INSTANCE:-standalone}"
httpd -f -p "$port" -h /app/www &
pid=$!
trap 'echo "demo stopping"; kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 0' TERM INT
wait "$pid"
status=$?
echo "demo: httpd exited with status $status" >&2
exit "$status"
EOF

# Served for "/" (busybox httpd runs cgi-bin/index.cgi for a directory without index.html).
# The CGI's stdout is the HTTP response; its stderr is httpd's, i.e. the container's log.
cat > "$root/app/www/cgi-bin/index.cgi" <<'EOF'
#!/bin/sh
echo "request $REQUEST_METHOD $REQUEST_URI from ${HTTP_X_FORWARDED_FOR:-$REMOTE_ADDR}${HTTP_X_REQUEST_ID:+ id=$HTTP_X_REQUEST_ID}" >&2
body="${GREETING:-Hello from caas}: ${CAAS_INSTANCE:-standalone} on ${HOSTNAME:-$(hostname)}"
length=$(printf '%s\n' "$body" | wc -c)
printf 'Content-Type: text/plain; charset=utf-8\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$length"
[ "$REQUEST_METHOD" = HEAD ] || printf '%s\n' "$body"
EOF
# Health: 200 "ok", unless /tmp/health-status or $HEALTH_STATUS says another status.
cat > "$root/app/www/cgi-bin/health" <<'EOF'
#!/bin/sh
status="${HEALTH_STATUS:-200}"
[ -r /tmp/health-status ] && status=$(cat /tmp/health-status)
case "$status" in
    2??) body=ok ;;
    *) body="not ok" ;;
esac
echo "health $status for $REQUEST_METHOD $REQUEST_URI" >&2
printf 'Status: %s\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n%s\n' "$status" "$body"
EOF

# A slow request: sleeps N seconds (the query string, at most 120), then answers.
cat > "$root/app/www/cgi-bin/sleep" <<'EOF'
#!/bin/sh
n="${QUERY_STRING:-1}"
case "$n" in
    ''|*[!0-9]*) n=1 ;;
esac
[ "$n" -gt 120 ] && n=120
echo "sleeping $n s for ${HTTP_X_REQUEST_ID:-a request}" >&2
sleep "$n"
printf 'Content-Type: text/plain\r\nConnection: close\r\n\r\nslept %s\n' "$n"
EOF
chmod 0755 "$root/app/start" "$root/app/www/cgi-bin/index.cgi" "$root/app/www/cgi-bin/health" \
    "$root/app/www/cgi-bin/sleep"

# --- import -----------------------------------------------------------------------------------
changes=(
    --change 'ENV PATH=/bin'
    --change 'WORKDIR /app'
    --change 'USER 10001:10001'
    --change 'EXPOSE 5000'
    --change "LABEL $RECIPE_LABEL=$recipe"
    --change 'CMD ["/app/start"]'
)
if [ "$HAVE_GREETING" = 1 ]; then
    escaped=${GREETING//\\/\\\\}
    escaped=${escaped//\"/\\\"}
    changes+=(--change "ENV GREETING=\"$escaped\"")
fi

say "building $TAG"
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . \
    | docker import "${changes[@]}" --message "caas demo app ($recipe)" - "$tmp_tag" >/dev/null \
    || die "docker import failed"
docker tag "$tmp_tag" "$TAG"
docker image rm "$tmp_tag" >/dev/null 2>&1 || true
new_id=$(docker image inspect --format '{{ .Id }}' "$TAG")
# Drop the image this one replaced, unless something still uses or names it.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi
say "built $TAG ($new_id)"
echo "$TAG"
