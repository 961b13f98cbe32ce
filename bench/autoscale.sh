#!/usr/bin/env bash
# Autoscaling under a step in load: seconds until the new instances serve, latency during the
# step, and seconds back to the minimum after it; side by side with the same step against a
# fixed single instance (autoscaling off), the peer at hand.
#
#   bench/autoscale.sh [--runs N] [--duration S] [--connections C] [--rps N] [--max N]
#                      [--cooldown S] [--bin-dir DIR]
#
#   --runs N         steps (default 3); medians are taken over them
#   --duration S     seconds of load per step (default 30)
#   --connections C  wrk connections (default 32; wrk -t2)
#   --rps N          the autoscaling target per instance (default 500)
#   --max N          the autoscaling maximum (default 4; the minimum is 1)
#   --cooldown S     the autoscaling cool-down (default 10)
#   --bin-dir DIR    take caas and caasd from DIR (default: target/release, brought up to date)
#
# Setup: a throwaway caasd (temp data dir, loopback listeners) and the backend image of
# gateway-vs-nginx.sh (node's http server, a 29-byte answer, keep-alive) built locally FROM
# caas/stack:latest, deployed with `caas push --image` as app as-PID.
#
# Each step: the app is at one instance; `wrk -t2 -cC -dSs --latency` starts against the gateway
# (full speed: the step is from nothing to as much as the machine serves). The clock starts with
# wrk. `caas ps` is polled every 250 ms meanwhile, for when more instances were up (the gateway
# routes an up instance within a scheduler pass, tens of ms); after wrk ends, it measures how
# long until the app is back at one instance. (The time of the first decision, read from the
# app's caas lines, is still printed in the progress lines' data but came out empty in the runs
# recorded: not reported.) Then the same step runs with autoscaling off and the app at one instance: what the
# step costs without it. Everything the script made is removed at the end.
set -euo pipefail

BENCH=autoscale
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=3
DURATION=30
CONNECTIONS=32
TARGET=500
MAX=4
COOLDOWN=10
BIN_DIR=
RUN_TIMEOUT=180
STACK=caas/stack:latest
BACKEND_IMAGE=caas-bench-backend:$$

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --duration) [ $# -ge 2 ] || die "--duration needs a value"; DURATION=$2; shift 2 ;;
        --connections) [ $# -ge 2 ] || die "--connections needs a value"; CONNECTIONS=$2; shift 2 ;;
        --rps) [ $# -ge 2 ] || die "--rps needs a value"; TARGET=$2; shift 2 ;;
        --max) [ $# -ge 2 ] || die "--max needs a value"; MAX=$2; shift 2 ;;
        --cooldown) [ $# -ge 2 ] || die "--cooldown needs a value"; COOLDOWN=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
for v in RUNS DURATION CONNECTIONS TARGET MAX COOLDOWN; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--$(echo "$v" | tr '[:upper:]' '[:lower:]') must be a positive integer"
done
command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
command -v wrk >/dev/null 2>&1 || die "wrk is needed (apt-get install wrk)"
command -v python3 >/dev/null 2>&1 || die "python3 is needed"
docker info >/dev/null 2>&1 || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"
docker image inspect "$STACK" >/dev/null 2>&1 || die "no $STACK image: run stack/build.sh first"

bench_binaries
bench_workdir
APP=as-$$
WATCH_PID=

cleanup() {
    set +e
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
    bench_cleanup_caasd
    local refs
    refs=$(docker images --format '{{.Repository}}:{{.Tag}}' "caas/$APP" 2>/dev/null)
    # shellcheck disable=SC2086 # a list of refs
    [ -n "$refs" ] && docker image rm $refs >/dev/null 2>&1
    docker image rm "$BACKEND_IMAGE" >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the backend image $BACKEND_IMAGE (node http server, keep-alive)"
mkdir -p "$WORK/backend"
cat >"$WORK/backend/server.js" <<'EOF'
// caas bench backend: the same small answer to every request, keep-alive, as fast as node goes.
const http = require("http");
const body = Buffer.from("hello from the bench backend\n");
const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": body.length });
  res.end(body);
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
server.listen(Number(process.env.PORT || 5000), () => console.log("bench backend listening"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
EOF
cat >"$WORK/backend/Dockerfile" <<'EOF'
FROM caas/stack:latest
COPY server.js /app/bench-backend.js
CMD ["node", "/app/bench-backend.js"]
EOF
DOCKER_BUILDKIT=0 docker build --pull=false --force-rm -q -t "$BACKEND_IMAGE" "$WORK/backend" >/dev/null \
    || die "docker build of the backend image failed"

bench_start_caasd 43000-43999
"$CAAS" apps:create "$APP" >/dev/null
say "deploying $BACKEND_IMAGE as $APP"
"$CAAS" push --image "$BACKEND_IMAGE" -a "$APP" >"$WORK/push.log" 2>&1 \
    || { cat "$WORK/push.log" >&2; die "caas push --image failed"; }
HOST_HEADER="Host: $APP.localhost"
curl -fsS --max-time 5 -H "$HOST_HEADER" "http://$GATEWAY/" >/dev/null || die "the gateway does not answer for $APP"

# up_count: instances of the app that are up.
up_count() { "$CAAS" ps -a "$APP" --json | grep -o '"state": *"up"' | wc -l; }
# wait_at_one: until exactly one instance runs and is up; prints the ms it took from $1.
wait_at_one() {
    local t0=$1 deadline=$(( $(now_ms) + RUN_TIMEOUT * 1000 )) n
    while :; do
        n=$("$CAAS" ps -a "$APP" --json | grep -c '"name"' || true)
        [ "$n" = 1 ] && [ "$(up_count)" = 1 ] && { echo $(( $(now_ms) - t0 )); return 0; }
        [ "$(now_ms)" -lt "$deadline" ] || { echo timeout; return 0; }
        sleep 0.2
    done
}
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; else n = -1
        printf "%.2f\n", n }'
}
# step NAME: wrk for DURATION s; sets RPS P50 P99 ERRS and T0 (ms, when wrk started).
step() {
    local out=$WORK/wrk-$1.txt
    T0=$(now_ms)
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$HOST_HEADER" "http://$GATEWAY/" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed"; }
    RPS=$(awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' "$out")
    P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    ERRS=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                /Non-2xx or 3xx responses:/ { n += $5 }
                END { print n + 0 }' "$out")
}
# watch_up FILE: every 250 ms, appends "MS UP" (ms since the epoch, instances up) to FILE.
watch_up() {
    while :; do
        echo "$(now_ms) $(up_count)" >>"$1"
        sleep 0.25
    done
}
# timeline T0 FILE: the ms from T0 to the first scale-up decision (from the app's caas lines), to
# the first and to the last time more instances were up than before (from FILE), and the most up.
timeline() {
    local since
    since=$(date -u -d "@$(( $1 / 1000 - 1 ))" +%Y-%m-%dT%H:%M:%SZ)
    "$CAAS" logs -a "$APP" --since "$since" --source caas --json >"$WORK/timeline.json" 2>"$WORK/timeline.err" \
        || { echo "caas logs for the timeline failed:" >&2; head -n 3 "$WORK/timeline.err" >&2; }
    python3 - "$1" "$WORK/timeline.json" "$2" <<'EOF'
import json, sys, datetime
t0, path, ups = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def ms(ts):
    return int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
decided = None
for line in open(path):
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("type") == "line" and e["tag"] == "autoscale" and e["text"].startswith("Scaled web from 1") and ms(e["ts"]) >= t0:
        decided = ms(e["ts"]) - t0
        break
first = last = None
most = 1
for line in open(ups):
    t, n = (int(x) for x in line.split())
    if t >= t0 and n > most:
        most = n
        first = first if first is not None else t - t0
        last = t - t0
print(decided if decided is not None else "-", first if first is not None else "-", last if last is not None else "-", most)
EOF
}

declare -a A_RPS A_P50 A_P99 A_ERR A_DEC A_FIRST A_LAST A_N A_BACK F_RPS F_P50 F_P99 F_ERR
for run in $(seq 1 "$RUNS"); do
    # With autoscaling.
    sleep 12 # the autoscaler's 10 s window holds nothing of the last step
    "$CAAS" autoscale:set web --min 1 --max "$MAX" --rps "$TARGET" --cooldown "${COOLDOWN}s" -a "$APP" >/dev/null
    [ "$(wait_at_one "$(now_ms)")" != timeout ] || die "the app did not come back to one instance"
    : >"$WORK/ups-$run"
    watch_up "$WORK/ups-$run" &
    WATCH_PID=$!
    step auto
    kill "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=
    A_RPS[$run]=$RPS A_P50[$run]=$P50 A_P99[$run]=$P99 A_ERR[$run]=$ERRS
    end=$(now_ms)
    read -r A_DEC[$run] A_FIRST[$run] A_LAST[$run] A_N[$run] <<<"$(timeline "$T0" "$WORK/ups-$run")"
    A_BACK[$run]=$(wait_at_one "$end")
    { grep -o '"text":"Scaled web[^"]*"' "$WORK/timeline.json" || true; } | head -n 4 >&2
    say "step $run with autoscaling: $RPS req/s, p50 $P50 ms, p99 $P99 ms, errors $ERRS; a second instance up at ${A_FIRST[$run]} ms, the last at ${A_LAST[$run]} ms (${A_N[$run]} up at most); back at 1 instance ${A_BACK[$run]} ms after the load"

    # The peer: the same step against one instance, autoscaling off.
    "$CAAS" autoscale:off web -a "$APP" >/dev/null
    "$CAAS" ps:scale web=1 -a "$APP" >/dev/null
    [ "$(wait_at_one "$(now_ms)")" != timeout ] || die "the app did not come back to one instance"
    step fixed
    F_RPS[$run]=$RPS F_P50[$run]=$P50 F_P99[$run]=$P99 F_ERR[$run]=$ERRS
    say "step $run at one instance: $RPS req/s, p50 $P50 ms, p99 $P99 ms, errors $ERRS"
done

col() { local -n a=$1; median "${a[@]}"; }
echo
echo "autoscale: $RUNS steps of ${DURATION}s, wrk -t2 -c$CONNECTIONS, target $TARGET req/s per instance, 1 to $MAX instances, cool-down ${COOLDOWN}s, $(nproc) cores"
printf '%-6s %-8s %9s %8s %8s %7s %12s %12s %6s %10s\n' step mode "req/s" "p50 ms" "p99 ms" errors "2nd up ms" "last up ms" "max up" "back ms"
for run in $(seq 1 "$RUNS"); do
    printf '%-6s %-8s %9s %8s %8s %7s %12s %12s %6s %10s\n' "$run" auto "${A_RPS[$run]}" "${A_P50[$run]}" \
        "${A_P99[$run]}" "${A_ERR[$run]}" "${A_FIRST[$run]}" "${A_LAST[$run]}" "${A_N[$run]}" "${A_BACK[$run]}"
    printf '%-6s %-8s %9s %8s %8s %7s\n' "$run" fixed-1 "${F_RPS[$run]}" "${F_P50[$run]}" "${F_P99[$run]}" "${F_ERR[$run]}"
done
printf '%-6s %-8s %9s %8s %8s %7s %12s %12s %6s %10s\n' median auto "$(col A_RPS)" "$(col A_P50)" "$(col A_P99)" \
    "$(col A_ERR)" "$(col A_FIRST)" "$(col A_LAST)" "$(col A_N)" "$(col A_BACK)"
printf '%-6s %-8s %9s %8s %8s %7s\n' median fixed-1 "$(col F_RPS)" "$(col F_P50)" "$(col F_P99)" "$(col F_ERR)"
echo "(ms from the start of the load; '2nd up'/'last up': when caas ps first showed more instances up,"
echo " polled every 250 ms (the gateway routes an instance within a scheduler pass of that); 'back':"
echo " from the end of the load until one instance is left, cool-down and drain included)"
