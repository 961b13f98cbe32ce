#!/usr/bin/env bash
# Deploy latency: from `caas push --image` to the first HTTP 200 through the gateway, side by side
# with a plain `docker run -p` of the same image to its first 200.
#
#   bench/push-to-first-200.sh [--runs N] [--bin-dir DIR] [--timeout SECONDS]
#
#   --runs N         runs of each (default 5)
#   --bin-dir DIR    take caas and caasd from DIR (default: target/release, brought up to date)
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

BENCH=push-to-first-200
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=5
BIN_DIR=
RUN_TIMEOUT=120
IMAGE=caas-demo:latest

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

bench_binaries

say "building the demo image"
"$ROOT/examples/demo/build-image.sh" "$IMAGE" >/dev/null
IMAGE_ID=$(docker image inspect --format '{{.Id}}' "$IMAGE")

DOCKER_CONTAINERS=()
APPS=()

cleanup() {
    set +e
    bench_cleanup_caasd
    [ ${#DOCKER_CONTAINERS[@]} -gt 0 ] && docker rm -f "${DOCKER_CONTAINERS[@]}" >/dev/null 2>&1
    # caasd tags each release caas/APP:vN; drop the tags this run made (of the demo image only).
    local app ref
    for app in "${APPS[@]}"; do
        for ref in $(docker images --format '{{.Repository}}:{{.Tag}}' "caas/$app" 2>/dev/null); do
            [ "$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" = "$IMAGE_ID" ] \
                && docker image rm "$ref" >/dev/null 2>&1
        done
    done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_workdir
bench_start_caasd 41000-41999

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
    CAAS_MS+=("$(until_200 "$t0" "http://$GATEWAY/" "" -H "Host: $app.localhost")")

    port=$(free_port 42000 42999)
    name=caas-bench-docker-$$-$run
    t0=$(now_ms)
    docker run -d --name "$name" -p "127.0.0.1:$port:5000" -e PORT=5000 "$IMAGE" >/dev/null
    DOCKER_CONTAINERS+=("$name")
    DOCKER_MS+=("$(until_200 "$t0" "http://127.0.0.1:$port/" "")")
    docker rm -f "$name" >/dev/null 2>&1 || true
    say "run $run: caas ${CAAS_MS[-1]} ms (push returned after ${PUSH_MS[-1]} ms), docker run ${DOCKER_MS[-1]} ms"
done

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
    echo "ratio caas/docker (medians): $(ratio "$mc" "$md")"
fi
