#!/usr/bin/env bash
# Deploy latency: from `caas push --image` to the first HTTP 200 through the gateway, side by side
# with a plain `docker run -p` of the same image to its first 200.
#
#   bench/push-to-first-200.sh [--runs N] [--bin-dir DIR] [--timeout SECONDS]
#
#   --runs N         runs of each (default 5)
#   --bin-dir DIR    take caas and caasd from DIR (default: target/release, built if missing)
#   --timeout S      give up on one run after S seconds (default 120)
#
# It starts a throwaway caasd (temp data dir, loopback listeners on free ports), builds the demo
# image (examples/demo/build-image.sh), and for run i: creates app bench<i>, starts the clock,
# runs `caas push --image caas-demo:latest -a bench<i> --no-wait` and polls the gateway with
# `Host: bench<i>.localhost` every 20 ms until it answers 200. Then the same image with
# `docker run -d -p 127.0.0.1:PORT:5000 -e PORT=5000` until 127.0.0.1:PORT answers 200. It prints
# each run, the medians and the ratio caas/docker, and removes everything it created (the caasd,
# its containers, the docker-run containers, the temp dir, the caas/bench<i> image tags).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=5
BIN_DIR=
RUN_TIMEOUT=120
IMAGE=caas-demo:latest
POLL_INTERVAL=0.02

die() { echo "push-to-first-200: error: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; RUN_TIMEOUT=$2; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"

command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
docker info >/dev/null 2>&1 || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"

# --- binaries ---------------------------------------------------------------------------------
if [ -z "$BIN_DIR" ]; then
    BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
    if [ ! -x "$BIN_DIR/caas" ] || [ ! -x "$BIN_DIR/caasd" ]; then
        command -v cargo >/dev/null 2>&1 || PATH="$HOME/.cargo/bin:$PATH"
        command -v cargo >/dev/null 2>&1 || die "cargo not found: cannot build the release binaries"
        say "building release binaries (cargo build --release --workspace --bins)"
        (cd "$ROOT" && cargo build --release --workspace --bins)
    fi
fi
CAAS=$BIN_DIR/caas
CAASD=$BIN_DIR/caasd
if [ ! -x "$CAAS" ] || [ ! -x "$CAASD" ]; then die "no caas/caasd in $BIN_DIR"; fi

say "building the demo image"
"$ROOT/examples/demo/build-image.sh" "$IMAGE" >/dev/null
IMAGE_ID=$(docker image inspect --format '{{.Id}}' "$IMAGE")

# --- throwaway caasd --------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/caas-bench.XXXXXX")
CAASD_PID=
CLUSTER=
DOCKER_CONTAINERS=()
APPS=()

cleanup() {
    set +e
    if [ -n "$CAASD_PID" ] && kill -0 "$CAASD_PID" 2>/dev/null; then
        kill -TERM "$CAASD_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$CAASD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CAASD_PID" 2>/dev/null
    fi
    if [ -n "$CLUSTER" ]; then
        local ids
        ids=$(docker ps -aq --filter "label=caas.cluster=$CLUSTER")
        # shellcheck disable=SC2086 # a list of ids
        [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
    fi
    [ ${#DOCKER_CONTAINERS[@]} -gt 0 ] && docker rm -f "${DOCKER_CONTAINERS[@]}" >/dev/null 2>&1
    # caasd tags each release caas/APP:vN; drop the tags this run made (of the demo image only).
    local app ref
    for app in "${APPS[@]}"; do
        for ref in $(docker images --format '{{.Repository}}:{{.Tag}}' "caas/$app" 2>/dev/null); do
            [ "$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" = "$IMAGE_ID" ] \
                && docker image rm "$ref" >/dev/null 2>&1
        done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export HOME=$WORK/home CAAS_CONFIG=$WORK/home/config.json
mkdir -p "$HOME"
say "starting a throwaway caasd ($WORK/data)"
"$CAASD" --data-dir "$WORK/data" --api 127.0.0.1:0 --gateway 127.0.0.1:0 --domain localhost \
    --port-range 41000-41999 >"$WORK/caasd.log" 2>&1 </dev/null &
CAASD_PID=$!
json_field() { sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\"\\{0,1\\}\\([^\",}]*\\)\"\\{0,1\\}.*/\\1/p" "$1" | head -n 1; }
for i in $(seq 1 300); do
    [ -s "$WORK/data/caasd.json" ] && break
    kill -0 "$CAASD_PID" 2>/dev/null || { tail -n 20 "$WORK/caasd.log" >&2; die "caasd exited at start"; }
    [ "$i" -eq 300 ] && { tail -n 20 "$WORK/caasd.log" >&2; die "caasd did not write caasd.json in 60 s"; }
    sleep 0.2
done
CAAS_SERVER=$(json_field "$WORK/data/caasd.json" api)
GATEWAY=$(json_field "$WORK/data/caasd.json" gateway)
CLUSTER=$(json_field "$WORK/data/caasd.json" cluster_id)
CAAS_TOKEN=$(cat "$WORK/data/admin-token")
export CAAS_SERVER CAAS_TOKEN
say "caasd: API $CAAS_SERVER, gateway $GATEWAY"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Polls URL (with extra curl args) every 20 ms until it answers 200; prints the ms since $1.
until_200() {
    local t0=$1 url=$2
    shift 2
    local deadline=$((t0 + RUN_TIMEOUT * 1000)) code
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)
        if [ "$code" = 200 ]; then
            echo $(($(now_ms) - t0))
            return 0
        fi
        [ "$(now_ms)" -lt "$deadline" ] || { echo timeout; return 0; }
        sleep "$POLL_INTERVAL"
    done
}

free_port() {
    local port
    for port in $(seq 42000 42999); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port in 42000-42999"
}

CAAS_MS=()
PUSH_MS=()
DOCKER_MS=()
for run in $(seq 1 "$RUNS"); do
    app=bench$run
    "$CAAS" apps:create "$app" >/dev/null
    APPS+=("$app")
    t0=$(now_ms)
    "$CAAS" push --image "$IMAGE" -a "$app" --no-wait >"$WORK/push.log" 2>&1 \
        || { cat "$WORK/push.log" >&2; die "caas push failed"; }
    PUSH_MS+=($(($(now_ms) - t0)))
    CAAS_MS+=("$(until_200 "$t0" "http://$GATEWAY/" -H "Host: $app.localhost")")

    port=$(free_port)
    name=caas-bench-docker-$$-$run
    t0=$(now_ms)
    docker run -d --name "$name" -p "127.0.0.1:$port:5000" -e PORT=5000 "$IMAGE" >/dev/null
    DOCKER_CONTAINERS+=("$name")
    DOCKER_MS+=("$(until_200 "$t0" "http://127.0.0.1:$port/")")
    docker rm -f "$name" >/dev/null 2>&1 || true
    say "run $run: caas ${CAAS_MS[-1]} ms (push returned after ${PUSH_MS[-1]} ms), docker run ${DOCKER_MS[-1]} ms"
done

median() {
    local sorted
    sorted=$(printf '%s\n' "$@" | grep -E '^[0-9]+$' | sort -n)
    local n
    n=$(printf '%s\n' "$sorted" | grep -c . || true)
    [ "$n" -gt 0 ] || { echo "n/a"; return; }
    if [ $((n % 2)) = 1 ]; then
        printf '%s\n' "$sorted" | sed -n "$((n / 2 + 1))p"
    else
        local a b
        a=$(printf '%s\n' "$sorted" | sed -n "$((n / 2))p")
        b=$(printf '%s\n' "$sorted" | sed -n "$((n / 2 + 1))p")
        echo $(((a + b) / 2))
    fi
}

echo
echo "push to first 200 (ms), $RUNS runs, image $IMAGE, $(nproc) cores"
printf '%-6s %14s %14s %18s\n' run "caas push->200" "(push cmd)" "docker run->200"
for i in $(seq 0 $((RUNS - 1))); do
    printf '%-6s %14s %14s %18s\n' "$((i + 1))" "${CAAS_MS[$i]}" "${PUSH_MS[$i]}" "${DOCKER_MS[$i]}"
done
mc=$(median "${CAAS_MS[@]}")
mp=$(median "${PUSH_MS[@]}")
md=$(median "${DOCKER_MS[@]}")
printf '%-6s %14s %14s %18s\n' median "$mc" "$mp" "$md"
if [[ "$mc" =~ ^[0-9]+$ ]] && [[ "$md" =~ ^[0-9]+$ ]] && [ "$md" -gt 0 ]; then
    echo "ratio caas/docker (medians): $(awk -v a="$mc" -v b="$md" 'BEGIN { printf "%.2f", a / b }')"
fi
