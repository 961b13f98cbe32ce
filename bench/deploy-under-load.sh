#!/usr/bin/env bash
# Requests lost to deploys and to control-plane crashes: a constant load on an app with two web
# instances while it is redeployed, and while caasd is killed with SIGKILL and started again,
# against the same load with nothing happening, in the same run.
#
#   bench/deploy-under-load.sh [--deploys N] [--kills K] [--clients C] [--pause MS]
#                              [--steady S] [--bin-dir DIR]
#
#   --deploys N     config deploys and image deploys, N of each, alternating (default 10: 20
#                   deploys, `caas config:set` then `caas push --image`)
#   --kills K       `kill -9` + restart cycles of caasd (default 5)
#   --clients C     wrk connections, each sending its next request --pause after an answer
#                   (default 4)
#   --pause MS      ms between an answer and a client's next request (default 50: at most
#                   ~20 requests/s per client)
#   --steady S      seconds of load with nothing happening (default 30)
#   --bin-dir DIR   take caas and caasd from DIR (default: target/release, brought up to date)
#
# Setup: a throwaway caasd (temp data dir, loopback listeners), two images of the demo app
# (examples/demo/build-image.sh, greetings "dul one" and "dul two", tagged caas-bench-dul-PID-one
# and -two), app dul-PID with `web=2`, caasd's defaults (drain 30 s, min-up 2 s, max-surge 5).
# The load is `wrk -t1 -cC --latency --timeout 10s` through caas's gateway with
# `Host: APP.localhost`, paced by a Lua `delay()`; one wrk run per phase:
#   steady   nothing happens for S seconds;
#   deploys  deploy i of N: `caas config:set BENCH_DEPLOY=i` (waits for the rollout), then
#            `caas push --image` of the other image (waits too); the next one starts at once;
#   kill -9  K times: 3 s of load, `kill -9` of caasd (its embedded agent goes with it; the
#            gateway process and the app containers stay), 2 s with no control plane, caasd
#            started again on the same data dir, until `caas ps` shows both instances up.
# A request fails when wrk gets no answer (connect, read, write errors; no answer within 10 s) or
# an answer that is not 2xx/3xx. It prints, per phase, the requests answered, failed (and how),
# p50/p99/max latency, and how long the deploys and the restarts took; then removes everything it
# created (the caasd and its gateway, its containers, the two images and the caas/APP tags, the
# temp dir).
#
# wrk, the gateway, caasd, dockerd and the instances share the machine's cores: a deploy or a
# restart costs CPU, so latency during them says what a user sees on a machine this size.
set -euo pipefail

BENCH=deploy-under-load
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEPLOYS=10
KILLS=5
CLIENTS=4
PAUSE=50
STEADY=30
BIN_DIR=
RUN_TIMEOUT=120
APP=dul-$$
IMAGES=("caas-bench-dul-$$-one" "caas-bench-dul-$$-two")
GREETINGS=("dul one" "dul two")

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --deploys) [ $# -ge 2 ] || die "--deploys needs a value"; DEPLOYS=$2; shift 2 ;;
        --kills) [ $# -ge 2 ] || die "--kills needs a value"; KILLS=$2; shift 2 ;;
        --clients) [ $# -ge 2 ] || die "--clients needs a value"; CLIENTS=$2; shift 2 ;;
        --pause) [ $# -ge 2 ] || die "--pause needs a value"; PAUSE=$2; shift 2 ;;
        --steady) [ $# -ge 2 ] || die "--steady needs a value"; STEADY=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
for v in DEPLOYS KILLS PAUSE; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "--$(echo "$v" | tr '[:upper:]' '[:lower:]') must be a number"
done
for v in CLIENTS STEADY; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--$(echo "$v" | tr '[:upper:]' '[:lower:]') must be a positive integer"
done

command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
command -v wrk >/dev/null 2>&1 || die "wrk is needed (apt-get install wrk)"
docker info >/dev/null 2>&1 || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"

bench_binaries
bench_workdir
WRK_PID=

cleanup() {
    set +e
    if [ -n "$WRK_PID" ]; then kill -KILL "$WRK_PID" 2>/dev/null; wait "$WRK_PID" 2>/dev/null; fi
    bench_cleanup_caasd
    local refs
    refs=$(docker images --format '{{.Repository}}:{{.Tag}}' "caas/$APP" 2>/dev/null)
    # shellcheck disable=SC2086 # a list of refs
    [ -n "$refs" ] && docker image rm $refs >/dev/null 2>&1
    docker image rm "${IMAGES[@]}" >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- images, caasd, the app -------------------------------------------------------------------
for i in 0 1; do
    say "building ${IMAGES[$i]} (the demo app, greeting \"${GREETINGS[$i]}\")"
    "$ROOT/examples/demo/build-image.sh" --greeting "${GREETINGS[$i]}" "${IMAGES[$i]}" >/dev/null
done
bench_start_caasd 46000-46999
HOST_HEADER="Host: $APP.localhost"

# up_count: how many of the app's instances `caas ps` shows up (0 when the API does not answer).
up_count() {
    { "$CAAS" ps -a "$APP" --json 2>/dev/null || true; } | { grep -cE '"state": *"up"' || true; }
}
# wait_up: until both instances are up; prints how long it took, in ms.
wait_up() {
    local t0 deadline
    t0=$(now_ms)
    deadline=$((t0 + RUN_TIMEOUT * 1000))
    until [ "$(up_count)" -ge 2 ]; do
        [ "$(now_ms)" -lt "$deadline" ] || { tail -n 20 "$WORK/caasd.log" >&2; die "$APP not up within ${RUN_TIMEOUT}s"; }
        sleep 0.2
    done
    echo $(($(now_ms) - t0))
}

"$CAAS" apps:create "$APP" >/dev/null
say "deploying ${IMAGES[0]} as $APP, web=2"
"$CAAS" push --image "${IMAGES[0]}" -a "$APP" >"$WORK/push.log" 2>&1 \
    || { cat "$WORK/push.log" >&2; die "caas push --image failed"; }
"$CAAS" ps:scale web=2 -a "$APP" >/dev/null
wait_up >/dev/null
[ "$(until_200 "$(now_ms)" "http://$GATEWAY/" "${GREETINGS[0]}" -H "$HOST_HEADER")" != timeout ] \
    || die "the gateway does not answer for $APP"

# --- load -------------------------------------------------------------------------------------
cat >"$WORK/pace.lua" <<'EOF'
-- Each connection sends its next request `pause` ms after an answer; an answer that is not
-- 2xx/3xx is printed with the first line of its body.
local pause = 50
function init(args) if args[1] then pause = tonumber(args[1]) end end
function delay() return pause end
function response(status, headers, body)
  if status >= 400 then
    io.write(string.format("failed answer: %d %s\n", status, (body or ""):match("[^\n]*")))
  end
end
EOF
# load_start NAME: wrk in the background until load_stop (SIGINT: it stops and prints its summary).
load_start() {
    LOAD_OUT=$WORK/wrk-$1.txt
    LOAD_T0=$(now_ms)
    wrk -t1 -c"$CLIENTS" -d1h --latency --timeout 10s -s "$WORK/pace.lua" -H "$HOST_HEADER" \
        "http://$GATEWAY/" -- "$PAUSE" >"$LOAD_OUT" 2>&1 &
    WRK_PID=$!
}
# to_ms VALUE: wrk's "1.23ms" / "456.78us" / "1.02s" / "1.50m" in ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000
        else if (v ~ /s$/) n *= 1000; else { print "n/a"; exit }
        printf "%.2f\n", n }'
}
# load_stop NAME: stops wrk and records the phase: S_NAME (seconds), OK_NAME (answers), FAIL_NAME,
# HOW_NAME (what failed), P50_NAME, P99_NAME, MAX_NAME (ms).
declare -A SECS ANSWERED FAILED HOW P50 P99 MAXL
load_stop() {
    local name=$1 out=$LOAD_OUT
    # wrk sets its SIGINT handler a moment after it starts (until then, as a background job, it
    # ignores the signal): repeat until it is gone.
    local i
    for i in $(seq 1 50); do
        kill -INT "$WRK_PID" 2>/dev/null || break
        sleep 0.2
        kill -0 "$WRK_PID" 2>/dev/null || break
    done
    wait "$WRK_PID" || { cat "$out" >&2; die "wrk failed"; }
    WRK_PID=
    SECS[$name]=$(awk -v ms=$(($(now_ms) - LOAD_T0)) 'BEGIN { printf "%.1f\n", ms / 1000 }')
    grep -q 'requests in' "$out" || { cat "$out" >&2; die "wrk printed no summary"; }
    local n status sock
    n=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$out")
    status=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' "$out")
    # "Socket errors: connect 0, read 2, write 0, timeout 0"
    sock=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4, $6, $8, $10 }' "$out")
    read -r c r w t <<<"${sock:-0 0 0 0}"
    status=${status:-0}
    # wrk counts answers that are not 2xx/3xx among its requests.
    ANSWERED[$name]=$((n - status))
    FAILED[$name]=$((status + c + r + w + t))
    HOW[$name]="non-2xx/3xx $status, connect $c, read $r, write $w, timeout $t"
    P50[$name]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    P99[$name]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    MAXL[$name]=$(to_ms "$(awk '$1 == "Latency" && NF >= 4 { print $4 }' "$out")")
    say "$name: ${SECS[$name]} s, ${ANSWERED[$name]} answered, ${FAILED[$name]} failed (${HOW[$name]}), p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, max ${MAXL[$name]} ms"
}

# --- steady -----------------------------------------------------------------------------------
say "steady: ${STEADY} s of load, nothing happening"
load_start steady
sleep "$STEADY"
load_stop steady

# --- deploys ----------------------------------------------------------------------------------
say "deploys: $DEPLOYS config:set and $DEPLOYS push --image, alternating, under load"
CONFIG_MS=()
IMAGE_MS=()
DEPLOY_ERRORS=0
current=0
load_start deploys
for i in $(seq 1 "$DEPLOYS"); do
    t0=$(now_ms)
    if "$CAAS" config:set "BENCH_DEPLOY=$i" -a "$APP" >"$WORK/deploy.log" 2>&1; then
        config_ms=$(($(now_ms) - t0))
        CONFIG_MS+=("$config_ms")
    else
        config_ms=failed DEPLOY_ERRORS=$((DEPLOY_ERRORS + 1))
        say "config:set $i failed: $(tail -n 1 "$WORK/deploy.log")"
    fi
    current=$((1 - current))
    t0=$(now_ms)
    if "$CAAS" push --image "${IMAGES[$current]}" -a "$APP" >"$WORK/deploy.log" 2>&1; then
        image_ms=$(($(now_ms) - t0))
        IMAGE_MS+=("$image_ms")
    else
        image_ms=failed DEPLOY_ERRORS=$((DEPLOY_ERRORS + 1))
        say "push --image $i failed: $(tail -n 1 "$WORK/deploy.log")"
    fi
    say "deploy $i of $DEPLOYS: config:set $config_ms ms, push --image $image_ms ms"
done
load_stop deploys
SERVES=$(curl -s --max-time 5 -H "$HOST_HEADER" "http://$GATEWAY/" || true)
case "$SERVES" in
    "${GREETINGS[$current]}:"*) SERVES_OK=yes ;;
    *) SERVES_OK="no: $SERVES" ;;
esac

# --- kill -9 ----------------------------------------------------------------------------------
say "kill -9: $KILLS kill -9 + restart cycles of caasd, under load"
GATEWAY_BEFORE=$(bench_gateway_pid)
BACK_MS=()
load_start kills
for k in $(seq 1 "$KILLS"); do
    sleep 3
    kill -KILL "$CAASD_PID"
    wait "$CAASD_PID" 2>/dev/null || true
    sleep 2
    t0=$(now_ms)
    bench_launch_caasd
    wait_up >/dev/null
    BACK_MS+=($(($(now_ms) - t0)))
    say "kill $k of $KILLS: caasd $CAASD_PID back, both instances up after ${BACK_MS[-1]} ms"
done
sleep 3
load_stop kills
GATEWAY_AFTER=$(bench_gateway_pid)

# --- report -----------------------------------------------------------------------------------
echo
echo "deploy under load: wrk -t1 -c$CLIENTS, each client's next request ${PAUSE} ms after an" \
    "answer, app $APP web=2 (demo image, busybox httpd), $(nproc) cores"
printf '%-8s %8s %9s %7s %8s %8s %9s  %s\n' phase seconds answered failed "p50 ms" "p99 ms" "max ms" \
    "what happened"
row() {
    printf '%-8s %8s %9s %7s %8s %8s %9s  %s\n' "$1" "${SECS[$1]}" "${ANSWERED[$1]}" "${FAILED[$1]}" \
        "${P50[$1]}" "${P99[$1]}" "${MAXL[$1]}" "$2"
}
row steady "nothing"
row deploys "$DEPLOYS config:set + $DEPLOYS push --image ($DEPLOY_ERRORS failed)"
row kills "$KILLS kill -9 + restart of caasd"
echo
for p in steady deploys kills; do
    echo "failed in $p: ${HOW[$p]}"
    # The answers that were not 2xx/3xx, by status and first line (at most 5 kinds).
    grep -h '^failed answer: ' "$WORK/wrk-$p.txt" | sed 's/^failed answer: //' | sort | uniq -c \
        | sort -rn | head -n 5 | sed -E 's/^ *([0-9]+) /  \1 x /' || true
done
echo "deploy time (ms, median): config:set $(median "${CONFIG_MS[@]}"), push --image $(median "${IMAGE_MS[@]}")"
echo "after the deploys the last image answers: $SERVES_OK"
echo "restart to both instances up (ms, median of $KILLS): $(median "${BACK_MS[@]}")"
if [ -n "$GATEWAY_BEFORE" ] && [ "$GATEWAY_BEFORE" = "$GATEWAY_AFTER" ]; then
    echo "gateway process: $GATEWAY_BEFORE throughout (caasd's restarts left it running)"
else
    echo "gateway process: ${GATEWAY_BEFORE:-none} before the kills, ${GATEWAY_AFTER:-none} after"
fi
