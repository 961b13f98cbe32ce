#!/usr/bin/env bash
# Push a fixture through the buildpack pipeline the way caasd does it, with plain docker commands
# (no caasd needed): a quick way to try a buildpack, the driver or the stack image.
#
#   examples/apps/try-build.sh [options] SOURCE
#
# SOURCE is a directory (its contents become /app), a .war or .jar (copied into /app as a file),
# or a .zip (unpacked into /app). A directory with a Dockerfile is built with `docker build`.
#
#   --pin NAME        pin a buildpack (CAAS_BUILDPACK)
#   --buildpacks DIR  the buildpacks folder (default: this repo's buildpacks/); folders that are
#                     not bundled are tried after the bundled ones, alphabetically (as caasd does)
#   --cache VOLUME    the build cache volume (default caas-try-cache-NAME; reuse it to try a rebuild)
#   --env KEY=VALUE   a config var (repeatable): a file in /env for the build, and in the app's env
#   --process TYPE    the process type to run after the build (default web)
#   --no-run          build only
#   --keep            keep the app image (caas-try/NAME:latest) and print its name
#   --memory MB       the app container's memory limit (default 512)
#
# Steps, as caasd does them: a build container of caas/stack:latest (user 1000, --cap-drop ALL,
# no-new-privileges) gets one tar with app/ (uid 1000), env/, buildpacks/ (this repo's) and
# caas/driver.sh, and runs `/bin/sh /caas/driver.sh` with the cache volume at /cache; its output is
# shown as it comes, each line prefixed with the seconds since the start. Then /app is copied out
# (the slug) onto a fresh stack container, committed with CMD ["caas-launch", WEB], and run with
# PORT=5000 and --init under the same restrictions; the script curls it until it answers.
# Exit status: the driver's when the build fails (10 nothing detected, 11 pinned buildpack,
# 12 compile, 13 release, 14 environment), 1 when the app does not answer, else 0.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STACK=${CAAS_STACK_IMAGE:-caas/stack:latest}
ORDER="java-war jvm-jar nodejs python static procfile"

die() { echo "try-build.sh: $*" >&2; exit 2; }
say() { echo "try-build.sh: $*" >&2; }
now() { date +%s%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

PIN=
BUILDPACKS=$ROOT/buildpacks
CACHE=
PROCESS=web
RUN=1
KEEP=0
MEMORY=512
ENVS=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --pin) PIN=${2:?}; shift 2 ;;
        --buildpacks) BUILDPACKS=$(cd "${2:?}" && pwd); shift 2 ;;
        --cache) CACHE=${2:?}; shift 2 ;;
        --env) ENVS+=("${2:?}"); shift 2 ;;
        --process) PROCESS=${2:?}; shift 2 ;;
        --no-run) RUN=0; shift ;;
        --keep) KEEP=1; shift ;;
        --memory) MEMORY=${2:?}; shift 2 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || die "usage: try-build.sh [options] SOURCE (see --help)"
SOURCE=$1
[ -e "$SOURCE" ] || die "no such file or directory: $SOURCE"
SOURCE=$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")
NAME=$(basename "$SOURCE" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-' | sed 's/^-*//; s/-*$//')
NAME=${NAME:-app}
CACHE=${CACHE:-caas-try-cache-$NAME}
IMAGE=caas-try/$NAME:latest
docker image inspect "$STACK" >/dev/null 2>&1 || die "no $STACK image: run stack/build.sh first"

WORK=$(mktemp -d)
BUILD_CTR=
SLUG_CTR=
RUN_CTR=
cleanup() {
    for c in "$BUILD_CTR" "$SLUG_CTR" "$RUN_CTR"; do
        [ -z "$c" ] || docker rm -f "$c" >/dev/null 2>&1 || true
    done
    if [ "$KEEP" = 0 ]; then docker rmi "$IMAGE" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

SECURE=(--cap-drop ALL --security-opt no-new-privileges --pids-limit 4096)
ENV_ARGS=()
for kv in "${ENVS[@]+"${ENVS[@]}"}"; do ENV_ARGS+=(-e "$kv"); done

# ---------------------------------------------------------------------------------------------
if [ -d "$SOURCE" ] && [ -f "$SOURCE/Dockerfile" ]; then
    say "Dockerfile build of $SOURCE"
    t=$(now)
    DOCKER_BUILDKIT=0 docker build --pull=false -t "$IMAGE" "$SOURCE" 2>&1 | sed -u 's/^/       /'
    say "docker build took $(since "$t")s"
    WEB=
else
    # One tar for the build container, ownership as caasd sets it.
    python3 - "$WORK/input.tar" "$SOURCE" "$BUILDPACKS" "$ROOT/server/src/builder/driver.sh" "${ENVS[@]+"${ENVS[@]}"}" <<'PY'
import io, os, sys, tarfile, zipfile
out, source, buildpacks, driver, envs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]

def own(info, uid, mode=None):
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    if mode is not None:
        info.mode = mode
    return info

with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
    def tree(path, arc, uid):
        tar.add(path, arcname=arc, filter=lambda i: own(i, uid))
    def data(arc, content, uid, mode):
        info = own(tarfile.TarInfo(arc), uid, mode)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    def dir(arc, uid, mode):
        info = own(tarfile.TarInfo(arc), uid, mode)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)

    if os.path.isdir(source):
        tree(source, "app", 1000)
    else:
        dir("app", 1000, 0o755)
        if source.endswith(".zip"):
            with zipfile.ZipFile(source) as z:
                for zi in z.infolist():
                    name = zi.filename
                    if name.startswith("/") or ".." in name.split("/"):
                        sys.exit("unsafe name in zip: %r" % name)
                    if zi.is_dir():
                        dir("app/" + name.rstrip("/"), 1000, 0o755)
                    else:
                        data("app/" + name, z.read(zi), 1000, 0o644)
        else:
            tree(source, "app/" + os.path.basename(source), 1000)
    dir("env", 1000, 0o700)
    for kv in envs:
        k, _, v = kv.partition("=")
        data("env/" + k, v.encode(), 1000, 0o600)
    tree(buildpacks, "buildpacks", 0)
    dir("caas", 0, 0o755)
    with open(driver, "rb") as f:
        data("caas/driver.sh", f.read(), 0, 0o755)
PY
    for d in "$BUILDPACKS"/*/; do
        d=$(basename "$d")
        case " $ORDER " in *" $d "*) ;; *) ORDER="$ORDER $d" ;; esac
    done
    docker volume create "$CACHE" >/dev/null
    BUILD_CTR=$(docker create "${SECURE[@]}" --user 1000:1000 --memory 1g \
        -e CAAS_BUILDPACK="$PIN" -e CAAS_BUILDPACK_ORDER="$ORDER" -e HOME=/app \
        -v "$CACHE:/cache" --label caas.try=build "$STACK" /bin/sh /caas/driver.sh)
    docker cp - "$BUILD_CTR:/" <"$WORK/input.tar"
    say "build of $SOURCE${PIN:+ (pinned: $PIN)}, cache volume $CACHE"
    t=$(now)
    set +e
    docker start -a "$BUILD_CTR" 2>&1 | while IFS= read -r line; do
        printf '%6ss | %s\n' "$(since "$t")" "$line"
    done
    rc=$(docker wait "$BUILD_CTR")
    set -e
    say "driver exited with $rc after $(since "$t")s"
    if [ "$rc" != 0 ]; then
        exit "$rc"
    fi
    docker cp "$BUILD_CTR:/app/.caas/release.yml" - | tar -xO >"$WORK/release.yml"
    echo "---- /app/.caas/release.yml (buildpack: $(docker cp "$BUILD_CTR:/app/.caas/buildpack" - | tar -xO))"
    sed 's/^/    /' "$WORK/release.yml"

    # The slug on a fresh stack container, committed as the app image (as caasd does).
    docker cp "$BUILD_CTR:/app" - >"$WORK/slug.tar"
    slug_mb=$(( $(stat -c %s "$WORK/slug.tar") / 1000000 ))
    WEB=$(python3 - "$WORK/release.yml" "$SOURCE" "$PROCESS" <<'PY'
import os, re, sys
release, source, want = sys.argv[1], sys.argv[2], sys.argv[3]
types = {}
section = False
for line in open(release):
    if re.match(r"^default_process_types:\s*$", line):
        section = True
        continue
    m = re.match(r"^  ([A-Za-z0-9_-]+):\s*(.*)$", line)
    if section and m:
        v = m.group(2).strip()
        if len(v) >= 2 and v[0] == v[-1] == "'":
            v = v[1:-1].replace("''", "'")
        types[m.group(1)] = v
procfile = os.path.join(source, "Procfile") if os.path.isdir(source) else None
if procfile and os.path.isfile(procfile):
    for line in open(procfile):
        m = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.rstrip("\n"))
        if m:
            types[m.group(1)] = m.group(2).strip()
print(types.get(want, ""))
PY
)
    SLUG_CTR=$(docker create --label caas.try=slug "$STACK")
    docker cp - "$SLUG_CTR:/" <"$WORK/slug.tar"
    cmd_json=$(python3 -c 'import json,sys; print(json.dumps(["caas-launch", sys.argv[1]] if sys.argv[1] else []))' "$WEB")
    docker commit --change "CMD $cmd_json" --change 'USER caas' --change 'WORKDIR /app' \
        "$SLUG_CTR" "$IMAGE" >/dev/null
    say "app image $IMAGE: slug ${slug_mb} MB, $PROCESS: ${WEB:-(none)}"
fi

[ "$RUN" = 1 ] || exit 0

# ---------------------------------------------------------------------------------------------
RUN_ARGS=("${SECURE[@]}" --init --memory "${MEMORY}m" --memory-swap "${MEMORY}m"
    -e PORT=5000 -e CAAS_INSTANCE="$PROCESS.1" "${ENV_ARGS[@]+"${ENV_ARGS[@]}"}"
    -p 127.0.0.1::5000 --label caas.try=run)
if [ -n "${WEB:-}" ]; then
    RUN_CTR=$(docker run -d "${RUN_ARGS[@]}" "$IMAGE" caas-launch "$WEB")
else
    RUN_CTR=$(docker run -d "${RUN_ARGS[@]}" "$IMAGE")
fi
t=$(now)
port=$(docker port "$RUN_CTR" 5000/tcp | head -n1 | sed 's/.*://')
say "running $PROCESS.1 on 127.0.0.1:$port"
if [ "$PROCESS" != web ]; then
    sleep 4
    docker logs "$RUN_CTR" 2>&1 | sed 's/^/    | /'
    exit 0
fi
body=
for _ in $(seq 1 300); do
    if body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null); then
        break
    fi
    if [ "$(docker inspect -f '{{.State.Running}}' "$RUN_CTR")" != true ]; then
        say "the app exited:"
        docker logs "$RUN_CTR" 2>&1 | tail -n 40 | sed 's/^/    | /'
        exit 1
    fi
    body=
    sleep 0.2
done
if [ -z "$body" ]; then
    say "no answer on port $port after 60s; the app's output:"
    docker logs "$RUN_CTR" 2>&1 | tail -n 40 | sed 's/^/    | /'
    exit 1
fi
first=$(since "$t")
say "first 200 after ${first}s: $body"
mem=$(docker stats --no-stream --format '{{.MemUsage}}' "$RUN_CTR" 2>/dev/null || true)
say "memory: $mem"
echo "---- app output"
docker logs "$RUN_CTR" 2>&1 | tail -n 15 | sed 's/^/    | /'
t=$(now)
docker stop -t 10 "$RUN_CTR" >/dev/null
say "stopped in $(since "$t")s (exit $(docker inspect -f '{{.State.ExitCode}}' "$RUN_CTR"))"
[ "$KEEP" = 0 ] || say "kept $IMAGE"
