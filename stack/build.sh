#!/usr/bin/env bash
# Build the caas stack images from Debian packages only: the run image caas/stack (the base every
# built app runs on) and the build image caas/build (the run image plus compilers and -dev
# headers: every buildpack build runs on it). debootstrap --variant=minbase bookworm, apt-get
# install of stack/packages in a chroot, a user `caas` (uid/gid 1000, home /app), /app /cache
# /env, and server/src/builder/launch.sh as /usr/local/bin/caas-launch; the root filesystem is fed
# to `docker import` as the run image; then stack/build-packages are installed into the same
# tree and it is imported again as the build image.
#
#   stack/build.sh [--force] [--verbose] [--mirror URL] [--no-host-cas] [--keep-old]
#
# The images are tagged caas/stack:HASH and caas/build:HASH (HASH = first 12 hex of a sha256 over
# the recipe: every file in stack/ except *.md, launch.sh, and the extra CA certificates below)
# and :latest, and labelled caas.stack.recipe=HASH. When both HASH tags exist nothing is built;
# latest is re-tagged (cheap, so install.sh and CI can call this every time). After a build, tags
# of earlier recipes are removed. --force rebuilds anyway (e.g. to pick up Debian security
# updates; the tag stays the same because the recipe did not change). --keep-old leaves the tags
# of earlier recipes (a machine where several checkouts of caas build their own).
#
# The mirror is the one this host's apt uses (/etc/apt/sources.list, sources.list.d/*.sources and
# *.list), unless --mirror or $CAAS_STACK_MIRROR says otherwise. The matching -security mirror,
# when the host has one, is added to the image's apt sources and used during the build.
# Downloaded .debs are kept in $CAAS_STACK_CACHE (default /var/cache/caas-stack) for rebuilds.
# CA certificates this host trusts beyond its distribution's set (a TLS-inspecting proxy, an
# internal mirror) are trusted in the image too, so builds reach npm and PyPI as the host does;
# --no-host-cas (or CAAS_STACK_HOST_CAS=0) leaves them out.
#
# stdout: the tag (last line). stderr: phase timings; the tools' output goes to a log that is
# printed when a phase fails (--verbose streams it instead). Needs root, debootstrap and Docker.
set -euo pipefail

SUITE=bookworm
REPO=caas/stack
BUILD_REPO=caas/build
LABEL=caas.stack.recipe

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
LAUNCH=$ROOT/server/src/builder/launch.sh
CACHE=${CAAS_STACK_CACHE:-/var/cache/caas-stack}

die() { echo "stack/build.sh: error: $*" >&2; exit 1; }
say() { echo "stack/build.sh: $*" >&2; }

FORCE=0
VERBOSE=0
KEEP_OLD=0
HOST_CAS=${CAAS_STACK_HOST_CAS:-1}
MIRROR=${CAAS_STACK_MIRROR:-}
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --force) FORCE=1; shift ;;
        -v|--verbose) VERBOSE=1; shift ;;
        --no-host-cas) HOST_CAS=0; shift ;;
        --keep-old) KEEP_OLD=1; shift ;;
        --mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; MIRROR=$2; shift 2 ;;
        --mirror=*) MIRROR=${1#--mirror=}; shift ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[ -f "$LAUNCH" ] || die "missing $LAUNCH"
[ -f "$HERE/packages" ] || die "missing $HERE/packages"
[ -f "$HERE/build-packages" ] || die "missing $HERE/build-packages"
command -v docker >/dev/null 2>&1 || die "the docker command is missing (./install.sh --deps-only installs Docker)"

# ---------------------------------------------------------------------------------------------
# CA certificates this host trusts beyond its distribution's: the ones in its bundle that no file
# under /usr/share/ca-certificates provides (added by the admin, e.g. for a TLS-inspecting proxy
# or an internal package mirror). Builds in the stack fetch from npm and PyPI and need to trust
# what the host trusts. Printed when building; --no-host-cas (CAAS_STACK_HOST_CAS=0) leaves them out.
host_extra_cas() {
    local bundle=/etc/ssl/certs/ca-certificates.crt
    [ -r "$bundle" ] && [ -d /usr/share/ca-certificates ] || return 0
    find /usr/share/ca-certificates -name '*.crt' -type f -print0 | xargs -0 -r cat \
        | awk -v bundle="$bundle" '
            function key(s) { gsub(/[ \t\r]/, "", s); return s }
            /-----BEGIN CERTIFICATE-----/ { body = ""; inside = 1; next }
            /-----END CERTIFICATE-----/   { if (inside) known[key(body)] = 1; inside = 0; next }
            inside { body = body $0 }
            END {
                while ((getline line < bundle) > 0) {
                    if (line ~ /-----BEGIN CERTIFICATE-----/) { body = ""; pem = line "\n"; inside = 1; continue }
                    if (!inside) continue
                    pem = pem line "\n"
                    if (line ~ /-----END CERTIFICATE-----/) { inside = 0; if (!(key(body) in known)) printf "%s", pem; continue }
                    body = body line
                }
            }'
}
EXTRA_CAS=
if [ "$HOST_CAS" = 1 ]; then
    EXTRA_CAS=$(host_extra_cas | tr -d '\r')
fi

# ---------------------------------------------------------------------------------------------
# Recipe hash: file names and contents of stack/* (not the README), launch.sh and the extra CAs.
recipe_hash() {
    (
        cd "$ROOT"
        { find stack -type f ! -name '*.md' ! -name '.*'; echo server/src/builder/launch.sh; } \
            | LC_ALL=C sort | while IFS= read -r f; do
                printf '%s\n' "$f"
                sha256sum < "$f"
            done
        echo "suite=$SUITE"
        [ -z "$EXTRA_CAS" ] || { echo "extra-cas"; printf '%s\n' "$EXTRA_CAS" | sha256sum; }
    ) | sha256sum | cut -c1-12
}
HASH=$(recipe_hash)
TAG=$REPO:$HASH
BUILD_TAG=$BUILD_REPO:$HASH
# Both images of this recipe exist: tag them latest.
up_to_date() {
    docker image inspect "$TAG" >/dev/null 2>&1 && docker image inspect "$BUILD_TAG" >/dev/null 2>&1 \
        && docker tag "$TAG" "$REPO:latest" && docker tag "$BUILD_TAG" "$BUILD_REPO:latest"
}

T0=$(date +%s.%N)
PHASE_START=$T0
PHASE=
phase() {   # phase NAME: close the previous phase (print its time), open the next
    local now; now=$(date +%s.%N)
    [ -z "$PHASE" ] || awk -v p="$PHASE" -v a="$PHASE_START" -v b="$now" \
        'BEGIN { printf "stack/build.sh: phase %-11s %6.1fs\n", p, b - a }' >&2
    PHASE=$1
    PHASE_START=$now
}
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}'; }

docker info >/dev/null 2>&1 || die "Docker Engine is not running"

if [ "$FORCE" = 0 ] && up_to_date; then
    say "$TAG and $BUILD_TAG are up to date (recipe $HASH); tagged latest"
    echo "$TAG"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "building the stack image needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing: apt-get install debootstrap"

# One build at a time; a concurrent caller waits, then finds the image built.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    say "another stack build is running; waiting for it"
    flock 9
fi
if [ "$FORCE" = 0 ] && up_to_date; then
    say "$TAG was built meanwhile; tagged latest"
    echo "$TAG"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Mirrors: the ones this host's apt uses for $SUITE and $SUITE-security.
host_mirror() {   # host_mirror SUITE: print the first URI the host's apt uses for SUITE
    local want=$1 f
    # deb822 (*.sources)
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v want="$want" '
            function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " want " ")) { split(uris, u, " "); print u[1]; found = 1; exit } types = uris = suites = ""; enabled = "" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^Types:/   { sub(/^Types:[ \t]*/, "");   types = $0 }
            /^URIs:/    { sub(/^URIs:[ \t]*/, "");    uris = $0 }
            /^Suites:/  { sub(/^Suites:[ \t]*/, "");  suites = $0 }
            /^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = tolower($0) }
            END { if (!found) flush() }' "$f"
    done
    # one-line style (sources.list, *.list)
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -e 's/\[[^]]*\]//' "$f" | awk -v want="$want" '$1 == "deb" && $3 == want { print $2; exit }'
    done
}
if [ -z "$MIRROR" ]; then
    MIRROR=$(host_mirror "$SUITE" | head -n1)
    [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
fi
SECURITY=$(host_mirror "$SUITE-security" | head -n1)
MIRROR=${MIRROR%/}
SECURITY=${SECURITY%/}
say "building $TAG from $MIRROR${SECURITY:+ and $SECURITY} ($SUITE)"

# ---------------------------------------------------------------------------------------------
# Work dirs of builds that were killed (an hour old and more; an earlier build's own detached
# clean-up may still be at it, which is harmless).
find /var/tmp -maxdepth 1 -name 'caas-stack.??????' -type d -mmin +60 2>/dev/null | while IFS= read -r old; do
    grep -q " $old/" /proc/self/mounts || rm -rf --one-file-system "$old"
done
WORK=$(mktemp -d /var/tmp/caas-stack.XXXXXX)
ROOTFS=$WORK/rootfs
LOG=$WORK/build.log
: >"$LOG"
cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ -s "$LOG" ] && [ "$VERBOSE" = 0 ]; then
        say "failed in phase '$PHASE'; last lines of the log:"
        tail -n 60 "$LOG" >&2
    fi
    if [ -d "$ROOTFS/proc" ] && mountpoint -q "$ROOTFS/proc"; then
        umount "$ROOTFS/proc" || umount -l "$ROOTFS/proc"
    fi
    # Never delete through a mount that is still there.
    if grep -q " $WORK/" /proc/self/mounts; then
        say "leaving $WORK in place: something is still mounted under it"
    else
        remove_tree "$WORK"
    fi
    exit "$rc"
}
# Deleting a 600 MB tree of 37,000 files can take a minute on a busy disk mounted with `discard`;
# nobody needs to wait for it: it runs detached, at idle I/O priority.
remove_tree() {
    if command -v setsid >/dev/null 2>&1; then
        setsid sh -c 'ionice -c3 rm -rf --one-file-system "$1" 2>/dev/null || rm -rf --one-file-system "$1"' \
            sh "$1" </dev/null >/dev/null 2>&1 &
    else
        rm -rf --one-file-system "$1"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run() {   # run CMD...: tool output to the log (or to stderr with --verbose)
    if [ "$VERBOSE" = 1 ]; then "$@" >&2; else "$@" >>"$LOG" 2>&1; fi
}
in_root() { run chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

link_debs() {   # link_debs FROM TO: hard-link (else copy) the .debs TO lacks
    local f
    for f in "$1"/*.deb; do
        [ -f "$f" ] && [ ! -e "$2/${f##*/}" ] || continue
        ln "$f" "$2/" 2>/dev/null || cp "$f" "$2/"
    done
}

packages() { sed -e 's/#.*//' "$1" | tr -s ' \t\n' '\n' | grep -v '^$' | tr '\n' ' '; }
PACKAGES=$(packages "$HERE/packages")
BUILD_PACKAGES=$(packages "$HERE/build-packages")

# ---------------------------------------------------------------------------------------------
phase debootstrap
mkdir -p "$CACHE/debootstrap" "$CACHE/apt"
# Two stages so that the second (dpkg configuring the base system in the chroot) already runs
# with dpkg's unsafe-io: no fsync per unpacked file, which is most of debootstrap's time.
run debootstrap --foreign --variant=minbase --cache-dir="$CACHE/debootstrap" "$SUITE" "$ROOTFS" "$MIRROR"
echo force-unsafe-io >"$ROOTFS/etc/dpkg/dpkg.cfg.d/00caas-build-unsafe-io"
run chroot "$ROOTFS" /debootstrap/debootstrap --second-stage

# ---------------------------------------------------------------------------------------------
phase configure
# apt and dpkg policy, kept in the image: no recommends, no docs/man pages/translations
cat >"$ROOTFS/etc/apt/apt.conf.d/90caas" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/90caas-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
# build-time only: no fsync per file, no service starts
echo force-unsafe-io >"$ROOTFS/etc/dpkg/dpkg.cfg.d/00caas-build-unsafe-io"
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
rm -f "$ROOTFS/etc/apt/sources.list"
{
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" "$SUITE" "$SUITE"
    if [ -n "$SECURITY" ]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$SECURITY" "$SUITE"
    fi
} >"$ROOTFS/etc/apt/sources.list.d/debian.sources"
mount -t proc proc "$ROOTFS/proc"
in_root apt-get update

# ---------------------------------------------------------------------------------------------
phase install
# Reuse .debs from earlier builds (hard links when on one file system).
link_debs "$CACHE/apt" "$ROOTFS/var/cache/apt/archives"
# shellcheck disable=SC2086
in_root apt-get install -y --no-install-recommends $PACKAGES
# Debian's `tomcat10` package carries the default conf (web.xml with the default and JSP servlets,
# mime types, catalina.properties) but also a systemd unit, a system user and cron jobs; take
# only /usr/share/tomcat10/etc from it.
in_root sh -c 'cd /tmp && apt-get download tomcat10 && dpkg-deb -x tomcat10_*.deb /tmp/t10 \
    && cp -a /tmp/t10/usr/share/tomcat10/etc /usr/share/tomcat10/etc && rm -rf /tmp/t10 /tmp/tomcat10_*.deb'
link_debs "$ROOTFS/var/cache/apt/archives" "$CACHE/apt"

# ---------------------------------------------------------------------------------------------
phase setup
# Class data sharing archive for the JVM (faster start of every java process), when Debian's
# package did not ship one.
JSA=$(find "$ROOTFS/usr/lib/jvm" -path '*/lib/server/classes.jsa' 2>/dev/null | head -n1 || true)
if [ -z "$JSA" ]; then
    in_root java -Xshare:dump || say "warning: java -Xshare:dump failed (JVM start is a little slower)"
fi
if [ -n "$EXTRA_CAS" ]; then
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    printf '%s\n' "$EXTRA_CAS" | awk -v dir="$ROOTFS/usr/local/share/ca-certificates" '
        /-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/caas-host-%02d.crt", dir, n) }
        f { print > f }
        /-----END CERTIFICATE-----/ { close(f); f = "" }'
    for crt in "$ROOTFS"/usr/local/share/ca-certificates/caas-host-*.crt; do
        subject=$(openssl x509 -noout -subject -in "$crt" 2>/dev/null || echo "${crt##*/}")
        say "trusting the host's CA ${subject#subject=}"
    done
    # also refreshes Java's cacerts (ca-certificates-java hook)
    in_root update-ca-certificates
fi
in_root groupadd --gid 1000 caas
in_root useradd --uid 1000 --gid 1000 --home-dir /app --no-create-home --shell /bin/bash caas
install -d -m 0755 -o 1000 -g 1000 "$ROOTFS/app" "$ROOTFS/cache"
install -d -m 0755 -o 0 -g 0 "$ROOTFS/env" "$ROOTFS/caas"
install -m 0755 -o 0 -g 0 "$LAUNCH" "$ROOTFS/usr/local/bin/caas-launch"
cat >"$ROOTFS/etc/caas-stack" <<EOF
CAAS_STACK=$SUITE
CAAS_STACK_RECIPE=$HASH
EOF

# ---------------------------------------------------------------------------------------------
clean_rootfs() {
    in_root apt-get clean
    umount "$ROOTFS/proc"
    rm -f "$ROOTFS/etc/dpkg/dpkg.cfg.d/00caas-build-unsafe-io" "$ROOTFS/usr/sbin/policy-rc.d"
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/debconf/*-old \
        "$ROOTFS"/var/lib/dpkg/*-old "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/root/.cache
    find "$ROOTFS/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
    find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian/*
    find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    find "$ROOTFS/var/log" -type f -delete
    # Docker provides these per container; do not ship the build host's.
    rm -f "$ROOTFS/etc/resolv.conf" "$ROOTFS/etc/hostname"
    : >"$ROOTFS/etc/hosts"
}

import_rootfs() {   # import_rootfs REPO TAG WHAT
    tar --numeric-owner --xattrs -C "$ROOTFS" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
        | docker import \
            --change "LABEL $LABEL=$HASH" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'ENV HOME=/app' \
            --change 'WORKDIR /app' \
            --change 'USER caas' \
            --change 'CMD ["/bin/bash"]' \
            --message "caas $3 $SUITE recipe $HASH" \
            - "$2" >/dev/null
    docker tag "$2" "$1:latest"
    # Untag the images of earlier recipes (an image that app images still build on stays until they go).
    [ "$KEEP_OLD" = 0 ] || return 0
    docker image ls --format '{{.Repository}}:{{.Tag}}' "$1" | while IFS= read -r old; do
        case "$old" in "$2"|"$1:latest"|*:"<none>") continue ;; esac
        docker rmi "$old" >/dev/null 2>&1 && say "removed the old $old" || true
    done
}

phase clean
clean_rootfs

phase import
import_rootfs "$REPO" "$TAG" stack

# ---------------------------------------------------------------------------------------------
# The build image: the same tree plus compilers and headers, so C extensions (psycopg2,
# mysqlclient) and native npm modules build; none of it reaches the app images.
phase build-image
echo force-unsafe-io >"$ROOTFS/etc/dpkg/dpkg.cfg.d/00caas-build-unsafe-io"
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOTFS/proc"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
in_root apt-get update
link_debs "$CACHE/apt" "$ROOTFS/var/cache/apt/archives"
# shellcheck disable=SC2086
in_root apt-get install -y --no-install-recommends $BUILD_PACKAGES
link_debs "$ROOTFS/var/cache/apt/archives" "$CACHE/apt"
clean_rootfs
import_rootfs "$BUILD_REPO" "$BUILD_TAG" build
phase finish

SIZE=$(docker image inspect --format '{{.Size}}' "$TAG")
BUILD_SIZE=$(docker image inspect --format '{{.Size}}' "$BUILD_TAG")
say "built $TAG ($((SIZE / 1000000)) MB) and $BUILD_TAG ($((BUILD_SIZE / 1000000)) MB) in $(secs "$T0")s"
echo "$TAG"
