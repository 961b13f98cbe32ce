#!/usr/bin/env bash
# Cost per app: one caasd with N apps of one tiny instance each (the busybox demo image).
#
#   bench/many-apps.sh [--apps N[,N...]] [--bin-dir DIR] [--instance-memory SIZE]
#                      [--instance-reserve SIZE] [--instances N] [--hold SECONDS]
#
#   --apps N,...           sizes to measure, in order, growing (default 100; try 100,300,1000)
#   --bin-dir DIR          take caas and caasd from DIR (default: target/release, brought up to date)
#   --instance-memory S    each instance's memory limit (default 32M, so that many fit on one host)
#   --instance-reserve S   what each instance reserves (caasd's default: 128M, capped at the limit)
#   --instances N          only apps ma1..maN get an instance; the others are created and released
#                          at web=0 (when the engine cannot hold one container per app)
#   --hold S               after the last size, wait S seconds before cleaning up (to look at
#                          caasd, e.g. /proc/PID/smaps_rollup; its pid is printed at the start)
#
# It starts a throwaway caasd (temp data dir, loopback listeners, --instance-memory S), builds the
# demo image (examples/demo/build-image.sh), then for each size creates apps ma1..maN (on top of
# those already there) and deploys each with `caas push --image --no-wait`, and waits until every
# app answers through the gateway. At each size it prints:
#   - the time to create and deploy the new apps, and until the last one answered;
#   - caasd's resident memory (RSS, from /proc) and its CPU while idle (10 s, in % of one core),
#     and the gateway process's RSS;
#   - the latency of `caas apps` and `caas ps -a ma1` (median of 5);
#   - the gateway's routing cost: median and p99 of 200 requests to ma1 through the gateway
#     (curl's time_total), beside the same requests straight to the instance's own port.
# It removes everything it created (caasd, containers, temp dir, the caas/maN image tags).
set -euo pipefail

BENCH=many-apps
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZES=100
BIN_DIR=
INSTANCE_MEMORY=32M
INSTANCE_RESERVE=
INSTANCES=
HOLD=0
IMAGE=caas-demo:latest

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --apps) [ $# -ge 2 ] || die "--apps needs a value"; SIZES=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        --instance-memory) [ $# -ge 2 ] || die "--instance-memory needs a value"; INSTANCE_MEMORY=$2; shift 2 ;;
        --instance-reserve) [ $# -ge 2 ] || die "--instance-reserve needs a value"; INSTANCE_RESERVE=$2; shift 2 ;;
        --instances) [ $# -ge 2 ] || die "--instances needs a value"; INSTANCES=$2; shift 2 ;;
        --hold) [ $# -ge 2 ] || die "--hold needs a value"; HOLD=$2; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ "$SIZES" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--apps takes sizes such as 100,300"
[[ -z "$INSTANCES" || "$INSTANCES" =~ ^[1-9][0-9]*$ ]] || die "--instances takes a number such as 500"
[[ "$HOLD" =~ ^[0-9]+$ ]] || die "--hold takes seconds"

command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
docker info >/dev/null 2>&1 || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"

bench_binaries
say "building the demo image"
"$ROOT/examples/demo/build-image.sh" "$IMAGE" >/dev/null
IMAGE_ID=$(docker image inspect --format '{{.Id}}' "$IMAGE")

CREATED=0
cleanup() {
    set +e
    bench_cleanup_caasd
    local i ref
    for i in $(seq 1 "$CREATED"); do
        for ref in $(docker images --format '{{.Repository}}:{{.Tag}}' "caas/ma$i" 2>/dev/null); do
            [ "$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" = "$IMAGE_ID" ] \
                && docker image rm "$ref" >/dev/null 2>&1
        done
    done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_workdir
EXTRA=()
[ -z "$INSTANCE_RESERVE" ] || EXTRA=(--instance-reserve "$INSTANCE_RESERVE")
# A generous start timeout: starting hundreds of containers in a row on a busy engine can take
# longer than the default minute for one of them, which is not what this measures.
bench_start_caasd 40000-41999 --instance-memory "$INSTANCE_MEMORY" --start-timeout 5m "${EXTRA[@]}"

rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo n/a; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ms_of CMD...: wall time of one run, in ms.
ms_of() {
    local t0
    t0=$(now_ms)
    "$@" >/dev/null 2>&1
    echo $(($(now_ms) - t0))
}

# Latencies (ms, 2 decimals) of 200 GETs of URL with curl, extra curl args after it; prints
# "median p99".
latencies() {
    local url=$1
    shift
    for _ in $(seq 1 200); do
        curl -s -o /dev/null -w '%{time_total}\n' --max-time 5 "$@" "$url"
    done | awk '{ printf "%.2f\n", $1 * 1000 }' | sort -g | awk '
        { v[NR] = $1 }
        END { printf "%s %s\n", v[int((NR + 1) / 2)], v[int(NR * 0.99 + 0.5)] }'
}

printf '%-6s %-9s %-9s %-10s %-10s %-9s %-9s %-9s %-9s %-16s %-16s\n' \
    apps instances deploy_s all_up_s caasd_mb idle_cpu gw_mb apps_ms ps_ms gateway_p50/p99 direct_p50/p99
TICK=$(getconf CLK_TCK)
for size in ${SIZES//,/ }; do
    [ "$size" -gt "$CREATED" ] || continue
    t0=$(now_ms)
    for i in $(seq $((CREATED + 1)) "$size"); do
        "$CAAS" apps:create "ma$i" >/dev/null
        # Past --instances: released with no instance (the formation is set before the release).
        [ -z "$INSTANCES" ] || [ "$i" -le "$INSTANCES" ] || "$CAAS" ps:scale web=0 -a "ma$i" >/dev/null
        "$CAAS" push --image "$IMAGE" -a "ma$i" --no-wait >/dev/null 2>>"$WORK/cli.log" \
            || { cat "$WORK/cli.log" >&2; die "caas push -a ma$i failed"; }
    done
    deployed=$(($(now_ms) - t0))
    first=$((CREATED + 1))
    CREATED=$size
    running=$size
    [ -z "$INSTANCES" ] || [ "$INSTANCES" -ge "$size" ] || running=$INSTANCES
    for i in $(seq "$first" "$running"); do
        until_ok=0
        for _ in $(seq 1 1500); do
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: ma$i.localhost" "http://$GATEWAY/" || true)
            [ "$code" = 200 ] && { until_ok=1; break; }
            sleep 0.2
        done
        if [ "$until_ok" != 1 ]; then
            "$CAAS" ps -a "ma$i" >&2 || true
            cp "$WORK/caasd.log" "${TMPDIR:-/tmp}/many-apps-caasd.log"
            die "ma$i did not answer within 5 minutes (caasd's log kept in ${TMPDIR:-/tmp}/many-apps-caasd.log)"
        fi
    done
    all_up=$(($(now_ms) - t0))
    sleep 5
    c0=$(cpu_ticks "$CAASD_PID")
    sleep 10
    c1=$(cpu_ticks "$CAASD_PID")
    idle=$(awk -v d=$((c1 - c0)) -v t="$TICK" 'BEGIN { printf "%.1f%%", d / t / 10 * 100 }')
    # shellcheck disable=SC2046 # a list of numbers, split on purpose
    apps_ms=$(median $(for _ in 1 2 3 4 5; do ms_of "$CAAS" apps; done))
    # shellcheck disable=SC2046 # a list of numbers, split on purpose
    ps_ms=$(median $(for _ in 1 2 3 4 5; do ms_of "$CAAS" ps -a ma1; done))
    addr=$("$CAAS" ps -a ma1 --json | sed -n 's/.*"address":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1)
    read -r gp50 gp99 < <(latencies "http://$GATEWAY/" -H "Host: ma1.localhost")
    read -r dp50 dp99 < <(latencies "http://$addr/")
    printf '%-6s %-9s %-9s %-10s %-10s %-9s %-9s %-9s %-9s %-16s %-16s\n' \
        "$size" "$running" "$(awk -v m="$deployed" 'BEGIN { printf "%.1f", m / 1000 }')" \
        "$(awk -v m="$all_up" 'BEGIN { printf "%.1f", m / 1000 }')" \
        "$(rss_mb "$CAASD_PID")" "$idle" "$(rss_mb "$GATEWAY_PID")" "$apps_ms" "$ps_ms" \
        "$gp50/$gp99" "$dp50/$dp99"
done
if [ "$HOLD" -gt 0 ]; then
    say "holding for ${HOLD}s (caasd $CAASD_PID, gateway $GATEWAY_PID)"
    sleep "$HOLD"
fi
