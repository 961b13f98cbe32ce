#!/bin/sh
# caas build driver: runs one buildpack build inside a throw-away container of the stack image.
#
# caasd starts the container as the stack's unprivileged user (caas, uid 1000) with
#   /app         the unpacked source, writable (BUILD_DIR: what is built there is where it runs)
#   /cache       the app's build cache volume (CACHE_DIR)
#   /env         one file per config var: name = key, content = value (ENV_DIR)
#   /buildpacks  the buildpacks, one folder each with bin/detect, bin/compile, bin/release
# and runs `/bin/sh /caas/driver.sh` with
#   CAAS_BUILDPACK        a pinned buildpack (folder name), or empty
#   CAAS_BUILDPACK_ORDER  folder names in detect order, space-separated (default: the bundled
#                         order, then every other folder alphabetically)
# (CAAS_BUILD_DIR, CAAS_CACHE_DIR, CAAS_ENV_DIR, CAAS_BUILDPACKS_DIR move those paths, for tests.)
#
# Output is the build log, line by line as it happens (stdout; stderr of the steps is merged).
# Results, on success: /app/.caas/release.yml (bin/release's YAML: default_process_types) and
# /app/.caas/buildpack (the folder name of the buildpack that built the app).
#
# Exit status: 0 built; 10 no buildpack detected the app; 11 the pinned buildpack does not exist
# or does not detect the app; 12 bin/compile failed; 13 bin/release failed or printed nothing;
# 14 the build environment is broken (no /buildpacks, /app not writable...).

BUILD_DIR=${CAAS_BUILD_DIR:-/app}
CACHE_DIR=${CAAS_CACHE_DIR:-/cache}
ENV_DIR=${CAAS_ENV_DIR:-/env}
BUILDPACKS_DIR=${CAAS_BUILDPACKS_DIR:-/buildpacks}
BUNDLED_ORDER="java-war jvm-jar nodejs python static procfile"

# Tools that buffer when their output is a pipe print as they go.
export PYTHONUNBUFFERED=1
export NODE_NO_READLINE=1
export DEBIAN_FRONTEND=noninteractive
export HOME="${HOME:-$BUILD_DIR}"
export LANG="${LANG:-C.UTF-8}"
export STACK=caas-bookworm

step() { printf -- '-----> %s\n' "$*"; }
info() { printf '       %s\n' "$*"; }
err() { printf ' !     %s\n' "$*"; }
# fail CODE REASON: the build fails with one line of reason. caasd reads it from the file and
# says it once (as the build's failure), so it is not printed here; what helps to fix it is,
# before this, with info.
fail() {
    printf '%s\n' "$2" >/tmp/caas-failure
    exit "$1"
}
now() { date +%s%N 2>/dev/null || date +%s000000000; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", (b - a) / 1e9 }'; }

# run_script FILE ARG...: run a buildpack script; not executable (lost modes) → through bash/sh
run_script() {
    script=$1
    shift
    if [ -x "$script" ]; then
        "$script" "$@"
    elif [ -x /bin/bash ]; then
        /bin/bash "$script" "$@"
    else
        /bin/sh "$script" "$@"
    fi
}

valid_name() {
    case "$1" in
        ''|.*|*/*|*[!A-Za-z0-9._-]*) return 1 ;;
    esac
    return 0
}

# ---------------------------------------------------------------------------------------------
# The environment
if [ ! -d "$BUILDPACKS_DIR" ]; then
    err "Build environment broken: no buildpacks directory at $BUILDPACKS_DIR"
    exit 14
fi
if [ ! -d "$BUILD_DIR" ] || [ ! -w "$BUILD_DIR" ]; then
    err "Build environment broken: $BUILD_DIR is missing or not writable by uid $(id -u)"
    exit 14
fi
mkdir -p "$CACHE_DIR" 2>/dev/null
if [ ! -w "$CACHE_DIR" ]; then
    err "Build environment broken: the cache $CACHE_DIR is not writable by uid $(id -u)"
    exit 14
fi
[ -d "$ENV_DIR" ] || ENV_DIR=$(mktemp -d)
# Left over from a build of the same source: the driver writes these afresh.
rm -rf "$BUILD_DIR/.caas"

# ---------------------------------------------------------------------------------------------
# Which buildpack
detect() {   # detect NAME: run bin/detect; on success set DETECTED to what it printed
    bp="$BUILDPACKS_DIR/$1"
    [ -f "$bp/bin/detect" ] || return 2
    DETECTED=$(run_script "$bp/bin/detect" "$BUILD_DIR" 2>/dev/null) || return 1
    DETECTED=$(printf '%s\n' "$DETECTED" | sed -n '1{s/[[:cntrl:]]//g;p}')
    [ -n "$DETECTED" ] || DETECTED=$1
    return 0
}

BUILDPACK=
DETECTED=
pinned=$(printf '%s' "${CAAS_BUILDPACK:-}" | tr -d ' \t\r\n')
if [ -n "$pinned" ]; then
    if ! valid_name "$pinned" || [ ! -d "$BUILDPACKS_DIR/$pinned" ]; then
        available=$(cd "$BUILDPACKS_DIR" && for d in *; do [ -f "$d/bin/detect" ] && printf '%s, ' "$d"; done)
        info "Pin another with caas buildpacks:set NAME, or unpin it with caas buildpacks:clear"
        fail 11 "buildpack $pinned does not exist (available: ${available%, })"
    fi
    detect "$pinned"
    case $? in
        0) BUILDPACK=$pinned ;;
        2) fail 11 "buildpack $pinned is broken: it has no bin/detect" ;;
        *) info "Pin another with caas buildpacks:set NAME, or unpin it with caas buildpacks:clear"
           fail 11 "buildpack $pinned does not apply to this app (its bin/detect failed)" ;;
    esac
else
    order=${CAAS_BUILDPACK_ORDER:-}
    if [ -z "$(printf '%s' "$order" | tr -d ' \t')" ]; then
        order=$BUNDLED_ORDER
        for d in "$BUILDPACKS_DIR"/*; do
            name=${d##*/}
            case " $BUNDLED_ORDER " in *" $name "*) continue ;; esac
            [ -f "$d/bin/detect" ] && order="$order $name"
        done
    fi
    tried=
    for name in $order; do
        valid_name "$name" || continue
        [ -f "$BUILDPACKS_DIR/$name/bin/detect" ] || continue
        tried="$tried, $name"
        if detect "$name"; then
            BUILDPACK=$name
            break
        fi
    done
    if [ -z "$BUILDPACK" ]; then
        info "Tried: ${tried#, }"
        info "Each looks for its own files at the top of the app (package.json, requirements.txt, index.html, *.war, an executable *.jar...)."
        info "Hint: add a Procfile (e.g. 'web: ./start.sh'), or pin one with caas buildpacks:set NAME"
        fail 10 "no buildpack detected this app (tried: ${tried#, })"
    fi
fi
BP_DIR=$BUILDPACKS_DIR/$BUILDPACK
step "$DETECTED app detected"

# ---------------------------------------------------------------------------------------------
# Compile: the output goes straight to ours (no pipe, nothing buffered here).
if [ ! -f "$BP_DIR/bin/compile" ]; then
    fail 12 "buildpack $BUILDPACK has no bin/compile"
fi
t=$(now)
run_script "$BP_DIR/bin/compile" "$BUILD_DIR" "$CACHE_DIR" "$ENV_DIR" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    fail 12 "the compile step of buildpack $BUILDPACK exited with $rc (its output is above)"
fi
info "compiled in $(since "$t")"

# ---------------------------------------------------------------------------------------------
# Release
mkdir -p "$BUILD_DIR/.caas" || { err "Build environment broken: cannot create $BUILD_DIR/.caas"; exit 14; }
if [ ! -f "$BP_DIR/bin/release" ]; then
    printf -- '---\ndefault_process_types: {}\n' >"$BUILD_DIR/.caas/release.yml"
else
    run_script "$BP_DIR/bin/release" "$BUILD_DIR" >"$BUILD_DIR/.caas/release.yml.tmp" 2>"$BUILD_DIR/.caas/release.err"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        sed 's/^/       /' "$BUILD_DIR/.caas/release.err"
        rm -rf "$BUILD_DIR/.caas"
        fail 13 "the release step of buildpack $BUILDPACK exited with $rc"
    fi
    if [ ! -s "$BUILD_DIR/.caas/release.yml.tmp" ]; then
        rm -rf "$BUILD_DIR/.caas"
        fail 13 "the release step of buildpack $BUILDPACK printed nothing (it must print YAML)"
    fi
    mv "$BUILD_DIR/.caas/release.yml.tmp" "$BUILD_DIR/.caas/release.yml"
    rm -f "$BUILD_DIR/.caas/release.err"
fi
printf '%s\n' "$BUILDPACK" >"$BUILD_DIR/.caas/buildpack"

# What will run: the Procfile's types win over the buildpack's defaults (caasd merges them).
step "Discovering process types"
procfile_types=
if [ -f "$BUILD_DIR/Procfile" ]; then
    procfile_types=$(sed -n 's/^\([A-Za-z0-9_-][A-Za-z0-9_-]*\):.*/\1/p' "$BUILD_DIR/Procfile" | tr '\n' ' ' | sed 's/ $//; s/ /, /g')
    info "Procfile declares types     -> ${procfile_types:-(none)}"
fi
default_types=$(sed -n 's/^  \([A-Za-z0-9_-][A-Za-z0-9_-]*\):.*/\1/p' "$BUILD_DIR/.caas/release.yml" | tr '\n' ' ' | sed 's/ $//; s/ /, /g')
info "Default types for buildpack -> ${default_types:-(none)}"
case ", $procfile_types, $default_types, " in
    *", web, "*) ;;
    *) info "WARNING: no web process type: the app will get no HTTP traffic (add 'web: COMMAND' to a Procfile)" ;;
esac
exit 0
