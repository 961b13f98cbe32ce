#!/usr/bin/env bash
# Log throughput: one instance writes numbered lines as fast as it can; a `caas logs --tail`
# reader and a syslog drain (a receiver on loopback) take them. Prints lines/s delivered to each,
# lines lost and repeated, caasd's memory, and the CPU each process spent, to say where the time
# goes.
#
#   bench/logs-throughput.sh [--runs N] [--lines N] [--bin-dir DIR]
#
#   --runs N       bursts (default 3); medians are taken over them
#   --lines N      lines per burst (default 200000)
#   --bin-dir DIR  take caas and caasd from DIR (default: target/release, brought up to date)
#
# Setup: a throwaway caasd (temp data dir, loopback listeners) and an image built locally FROM
# caas/stack:latest: a node http server on $PORT that, on `GET /go?n=N&run=R`, writes N lines
# `bench-line R:I xxxx…` (about 70 bytes each) to its stdout as fast as the pipe takes them, in
# chunks of 1000, and answers when it has. It is deployed with `caas push --image` as app
# logs-PID, one web instance, with a drain `syslog://127.0.0.1:PORT` to a receiver (python3)
# that reads the octet-counted frames and counts the bench lines in them.
#
# Each burst: the reader (`caas logs -a APP --tail -n 0 --source app`, its output to a file) is
# started and given a moment to connect, the clock starts, the burst is triggered through the
# gateway, and the reader's file and the receiver's count are polled every 100 ms until both have
# every line, or nothing new came for 15 s. "lines/s" is the burst's lines over the time until the
# last one arrived (poll granularity 0.1 s). "lost" counts numbers that never arrived, "dup" lines
# that arrived twice. caasd's memory is its resident set after the burst and its peak (VmHWM).
# CPU is user+system time during the burst of: the instance's container (the writer), dockerd and
# containerd (which keep the container's output in their json-file log and serve it to the
# agent's follower), caasd (the agent's follower and shipper, the API, the log hub, the drain),
# the reader (caas), the receiver.
set -euo pipefail

BENCH=logs-throughput
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=3
LINES=200000
BIN_DIR=
STALL=15
STACK=caas/stack:latest
IMAGE=caas-bench-logs:$$

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --lines) [ $# -ge 2 ] || die "--lines needs a value"; LINES=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
for v in RUNS LINES; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--$(echo "$v" | tr '[:upper:]' '[:lower:]') must be a positive integer"
done
command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
command -v python3 >/dev/null 2>&1 || die "python3 is needed"
docker info >/dev/null 2>&1 || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"
docker image inspect "$STACK" >/dev/null 2>&1 || die "no $STACK image: run stack/build.sh first"

bench_binaries
bench_workdir
APP=logs-$$
READER_PID=
RECEIVER_PID=

cleanup() {
    set +e
    [ -n "$READER_PID" ] && kill "$READER_PID" 2>/dev/null
    [ -n "$RECEIVER_PID" ] && kill "$RECEIVER_PID" 2>/dev/null
    bench_cleanup_caasd
    local refs
    refs=$(docker images --format '{{.Repository}}:{{.Tag}}' "caas/$APP" 2>/dev/null)
    # shellcheck disable=SC2086 # a list of refs
    [ -n "$refs" ] && docker image rm $refs >/dev/null 2>&1
    docker image rm "$IMAGE" >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "$BENCH: a command failed at line $LINENO" >&2' ERR

# --- the writer image -------------------------------------------------------------------------
say "building the writer image $IMAGE"
mkdir -p "$WORK/image"
cat >"$WORK/image/writer.js" <<'EOF'
// caas bench: GET /go?n=N&run=R writes N numbered lines to stdout as fast as the pipe takes them.
const http = require("http");
const pad = "x".repeat(48);
http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname !== "/go") { res.end("ok\n"); return; }
  const n = Number(url.searchParams.get("n") || 0), run = url.searchParams.get("run") || "0";
  const t0 = Date.now();
  let i = 0;
  const write = () => {
    while (i < n) {
      let chunk = "";
      for (let k = 0; k < 1000 && i < n; k++) { i++; chunk += `bench-line ${run}:${i} ${pad}\n`; }
      if (!process.stdout.write(chunk)) { process.stdout.once("drain", write); return; }
    }
    res.end(`wrote ${n} lines in ${Date.now() - t0} ms\n`);
  };
  write();
}).listen(Number(process.env.PORT || 5000), () => console.log("log writer listening"));
EOF
cat >"$WORK/image/Dockerfile" <<'EOF'
FROM caas/stack:latest
COPY writer.js /app/writer.js
CMD ["node", "/app/writer.js"]
EOF
DOCKER_BUILDKIT=0 docker build --pull=false --force-rm -q -t "$IMAGE" "$WORK/image" >/dev/null \
    || die "docker build of the writer image failed"

# --- the syslog receiver ----------------------------------------------------------------------
cat >"$WORK/receiver.py" <<'EOF'
# Counts the bench lines in octet-counted syslog frames, over any number of connections; writes
# the running count to COUNT_FILE every 100 ms.
import selectors, socket, sys, time
port, count_file = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(16); srv.setblocking(False)
sel = selectors.DefaultSelector(); sel.register(srv, selectors.EVENT_READ)
count, tail, last = 0, {}, 0.0
while True:
    for key, _ in sel.select(0.1):
        if key.fileobj is srv:
            c, _ = srv.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ); tail[c] = b""
            continue
        c = key.fileobj
        data = c.recv(1 << 20)
        if not data:
            sel.unregister(c); c.close(); tail.pop(c, None); continue
        buf = tail[c] + data
        # Count whole occurrences only: keep the last few bytes for the next read.
        count += buf[:-16].count(b"bench-line ") if len(buf) > 16 else 0
        tail[c] = buf[-16:] if len(buf) > 16 else buf
    now = time.time()
    if now - last >= 0.1:
        with open(count_file + ".tmp", "w") as f: f.write(str(count))
        import os; os.replace(count_file + ".tmp", count_file); last = now
EOF
DRAIN_PORT=$(free_port 46000 46999)
python3 "$WORK/receiver.py" "$DRAIN_PORT" "$WORK/drain-count" &
RECEIVER_PID=$!

# --- caasd and the app ------------------------------------------------------------------------
bench_start_caasd 44000-44999
"$CAAS" apps:create "$APP" >/dev/null
say "deploying $IMAGE as $APP"
"$CAAS" push --image "$IMAGE" -a "$APP" >"$WORK/push.log" 2>&1 \
    || { cat "$WORK/push.log" >&2; die "caas push --image failed"; }
"$CAAS" drains:add "syslog://127.0.0.1:$DRAIN_PORT" -a "$APP" >/dev/null
HOST_HEADER="Host: $APP.localhost"
curl -fsS --max-time 5 -H "$HOST_HEADER" "http://$GATEWAY/" >/dev/null || die "the gateway does not answer for $APP"
CONTAINER=$(docker ps -q --no-trunc --filter "label=caas.cluster=$CLUSTER" --filter "label=caas.app=$APP" | head -n 1)
[ -n "$CONTAINER" ] || die "no container for $APP"

CLK_TCK=$(getconf CLK_TCK)
# ticks PID...: user+system CPU of the processes and their threads, in clock ticks.
ticks() {
    local pid total=0 t
    for pid in "$@"; do
        t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# container_ticks: the writer container's CPU (its cgroup), in clock ticks.
container_ticks() {
    local f
    f=/sys/fs/cgroup/cpuacct/docker/$CONTAINER/cpuacct.usage # cgroup v1: ns
    if [ -r "$f" ]; then
        awk -v hz="$CLK_TCK" '{ printf "%d\n", $1 * hz / 1e9 }' "$f"
        return 0
    fi
    for f in "/sys/fs/cgroup/system.slice/docker-$CONTAINER.scope/cpu.stat" \
             "/sys/fs/cgroup/docker/$CONTAINER/cpu.stat"; do
        if [ -r "$f" ]; then
            awk -v hz="$CLK_TCK" '$1 == "usage_usec" { printf "%d\n", $2 * hz / 1e6 }' "$f"
            return 0
        fi
    done
    echo 0
}
secs() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", t / hz }'; }
DOCKERD=$(pgrep -x dockerd | head -n 1 || true)
CONTAINERD=$(pgrep -x containerd | head -n 1 || true)
SHIM=$(pgrep -f "containerd-shim.*$CONTAINER" | head -n 1 || true)

declare -a R_RATE D_RATE R_LOST D_LOST R_DUP RSS HWM C_WRITER C_DOCKER C_CAASD C_READER C_RECV
for run in $(seq 1 "$RUNS"); do
    out=$WORK/reader-$run.txt
    "$CAAS" logs -a "$APP" --tail -n 0 --source app >"$out" 2>"$WORK/reader-$run.err" &
    READER_PID=$!
    sleep 1
    drain_before=$(cat "$WORK/drain-count" 2>/dev/null || echo 0)
    t_w=$(container_ticks); t_d=$(ticks $DOCKERD $CONTAINERD $SHIM); t_c=$(ticks "$CAASD_PID")
    t_r=$(ticks "$READER_PID"); t_x=$(ticks "$RECEIVER_PID")
    t0=$(now_ms)
    curl -fsS --max-time 600 -H "$HOST_HEADER" "http://$GATEWAY/go?n=$LINES&run=$run" >"$WORK/go-$run.txt" \
        || die "the burst request failed"
    wrote_ms=$(($(now_ms) - t0))
    r_done= d_done= r_last=0 d_last=0 r_prev=-1 d_prev=-1 quiet_since=$(now_ms)
    while :; do
        r=$(grep -c 'bench-line ' "$out" || true)
        d=$(( $(cat "$WORK/drain-count" 2>/dev/null || echo 0) - drain_before ))
        now=$(now_ms)
        if [ "$r" != "$r_prev" ] || [ "$d" != "$d_prev" ]; then quiet_since=$now; fi
        [ "$r" != "$r_prev" ] && r_last=$now
        [ "$d" != "$d_prev" ] && d_last=$now
        r_prev=$r d_prev=$d
        [ -z "$r_done" ] && [ "$r" -ge "$LINES" ] && r_done=$now
        [ -z "$d_done" ] && [ "$d" -ge "$LINES" ] && d_done=$now
        { [ -n "$r_done" ] && [ -n "$d_done" ]; } && break
        [ $((now - quiet_since)) -lt $((STALL * 1000)) ] || break
        sleep 0.1
    done
    C_WRITER[$run]=$(secs $(( $(container_ticks) - t_w )))
    C_DOCKER[$run]=$(secs $(( $(ticks $DOCKERD $CONTAINERD $SHIM) - t_d )))
    C_CAASD[$run]=$(secs $(( $(ticks "$CAASD_PID") - t_c )))
    C_READER[$run]=$(secs $(( $(ticks "$READER_PID") - t_r )))
    C_RECV[$run]=$(secs $(( $(ticks "$RECEIVER_PID") - t_x )))
    kill "$READER_PID" 2>/dev/null || true
    wait "$READER_PID" 2>/dev/null || true
    READER_PID=
    r_end=${r_done:-$r_last} d_end=${d_done:-$d_last}
    R_RATE[$run]=$(awk -v n="$r_prev" -v ms=$((r_end - t0)) 'BEGIN { printf "%.0f\n", (ms > 0) ? n * 1000 / ms : 0 }')
    D_RATE[$run]=$(awk -v n="$d_prev" -v ms=$((d_end - t0)) 'BEGIN { printf "%.0f\n", (ms > 0) ? n * 1000 / ms : 0 }')
    uniq=$(grep -o "bench-line $run:[0-9]*" "$out" | sort -u | wc -l)
    R_LOST[$run]=$((LINES - uniq))
    R_DUP[$run]=$((r_prev - uniq))
    D_LOST[$run]=$((LINES - d_prev))
    missed=$(cat "$out" "$WORK/reader-$run.err" 2>/dev/null | { grep -o 'missed [0-9]* lines' || true; } | awk '{ n += $2 } END { print n + 0 }')
    RSS[$run]=$(awk '/^VmRSS:/ { printf "%.0f\n", $2 / 1024 }' "/proc/$CAASD_PID/status")
    HWM[$run]=$(awk '/^VmHWM:/ { printf "%.0f\n", $2 / 1024 }' "/proc/$CAASD_PID/status")
    say "burst $run: the writer took ${wrote_ms} ms ($(cat "$WORK/go-$run.txt" | tr -d '\n')); reader ${R_RATE[$run]} lines/s, lost ${R_LOST[$run]} (told of $missed missed), dup ${R_DUP[$run]}; drain ${D_RATE[$run]} lines/s, lost ${D_LOST[$run]}; caasd RSS ${RSS[$run]} MiB (peak ${HWM[$run]}); CPU s: writer ${C_WRITER[$run]}, dockerd+containerd ${C_DOCKER[$run]}, caasd ${C_CAASD[$run]}, reader ${C_READER[$run]}, receiver ${C_RECV[$run]}"
done
"$CAAS" drains -a "$APP" >"$WORK/drains.txt" 2>&1 || true
stored=$("$CAAS" logs -a "$APP" -n 100000 --source app 2>/dev/null | grep -c 'bench-line ' || true)

# --- report -----------------------------------------------------------------------------------
col() { local -n a=$1; median "${a[@]}"; }
echo
echo "logs throughput: $RUNS bursts of $LINES lines (~70 bytes) from one instance, $(nproc) cores"
printf '%-6s %12s %8s %6s %12s %8s %9s %9s %8s %8s %8s %8s %8s\n' burst "reader l/s" lost dup "drain l/s" lost "RSS MiB" "peak MiB" writer docker caasd reader recv
for run in $(seq 1 "$RUNS"); do
    printf '%-6s %12s %8s %6s %12s %8s %9s %9s %8s %8s %8s %8s %8s\n' "$run" "${R_RATE[$run]}" "${R_LOST[$run]}" \
        "${R_DUP[$run]}" "${D_RATE[$run]}" "${D_LOST[$run]}" "${RSS[$run]}" "${HWM[$run]}" "${C_WRITER[$run]}" \
        "${C_DOCKER[$run]}" "${C_CAASD[$run]}" "${C_READER[$run]}" "${C_RECV[$run]}"
done
printf '%-6s %12s %8s %6s %12s %8s %9s %9s %8s %8s %8s %8s %8s\n' median "$(col R_RATE)" "$(col R_LOST)" \
    "$(col R_DUP)" "$(col D_RATE)" "$(col D_LOST)" "$(col RSS)" "$(col HWM)" "$(col C_WRITER)" \
    "$(col C_DOCKER)" "$(col C_CAASD)" "$(col C_READER)" "$(col C_RECV)"
echo "(CPU in seconds during each burst: the writer's container, dockerd+containerd+shim, caasd, the caas logs reader, the syslog receiver)"
echo "the drain after the bursts:"
cat "$WORK/drains.txt"
echo "lines kept in the app's log on disk (the last 100000 asked for): $stored"
