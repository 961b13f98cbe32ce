#!/usr/bin/env bash
# Gateway throughput and latency: wrk through caas's gateway, and through nginx as a reverse proxy
# in front of the same app instance, on the same machine in the same run; the instance hit
# directly at the address caas routes to is the ceiling.
#
#   bench/gateway-vs-nginx.sh [--runs N] [--duration S] [--connections C] [--threads T] [--pin]
#                             [--bin-dir DIR] [--perf DIR]
#
#   --runs N          rounds over the targets (default 3); medians are taken over the rounds
#   --duration S      seconds of load per target and round (default 10)
#   --connections C   wrk connections (default 64)
#   --threads T       wrk threads (default 2)
#   --pin             wrk on CPU 0, the proxy (caasd, or nginx's master and workers) on CPU 1;
#                     the app instance and Docker's port proxy stay unpinned (default: nothing
#                     pinned, the scheduler shares the cores between everything)
#   --bin-dir DIR     take caas and caasd from DIR (default: target/release, brought up to date)
#   --perf DIR        profile caas's gateway with perf during the first round of caas, caas-tls and
#                     caas-h2 (perf record -F 499 -g); DIR gets perf-TARGET.data and the report
#                     perf-TARGET.txt (self time by DSO and symbol), whose top lines are printed
#
# Setup: a throwaway caasd (temp data dir, loopback listeners), and a backend image built locally
# FROM caas/stack:latest: node's http server answering every request with a 29-byte text body,
# keep-alive (timeout 120 s). It is deployed with `caas push --image` as app gw-PID with one web
# instance. caasd routes instances on its own machine to their container address (IP:5000), not
# through Docker's published port, so nginx's upstream is that same address. nginx (Debian's, run
# as nobody in the foreground with a
# temp config, worker_processes auto) proxies with upstream keepalive 64, HTTP/1.1,
# `Connection: ""`, and sets Host, X-Forwarded-For/Proto/Host and X-Request-Id as caas does.
#
# Both proxies also terminate TLS with the same certificate (an ECDSA P-256 one for *.localhost
# the script makes with openssl; caasd gets it as --tls-cert/--tls-key, nginx as
# ssl_certificate), and speak HTTP/2 to clients over TLS (ALPN h2); to the instance both speak
# HTTP/1.1 over keep-alive connections.
#
# Each round runs `wrk -tT -cC -dSs --latency -H 'Host: APP.localhost'` against, in this order:
#   instance-ip  the container's own address, which caas and nginx route to (the ceiling: node
#                alone);
#   direct       the instance's published address (`caas ps`): for scale, what Docker's userland
#                port proxy costs;
#   caas         caas's gateway (one router log line per request into its log hub);
#   nginx        nginx with access_log off;
#   nginx+log    nginx writing one access-log line per request to a file (format close to caas's
#                router line): the fairer peer, since caas logs every request.
#   caas-tls     caas's gateway over HTTPS (HTTP/1.1; wrk sends no SNI: the platform's certificate)
#   nginx-tls    nginx over HTTPS, writing its access log
# and `h2load -tT -cC -m1 -DS -H ':authority: APP.localhost'` (HTTP/2 over TLS, one stream per
# connection at a time like wrk; p50/p99 from its per-request log) against:
#   caas-h2      caas's gateway
#   nginx-h2     nginx, writing its access log
# One unmeasured 3-second warm-up per target comes first. It prints every round, the medians of
# requests/s and of p50/p99 latency, and the ratios caas/nginx, and removes everything it created
# (the caasd, its containers, the backend image and its caas/APP tags, nginx, the temp dirs).
#
# wrk, the proxy, the instance and Docker's port proxy share the machine's cores: the figures
# compare the proxies under the same contention, they are not any one part's peak.
set -euo pipefail

BENCH=gateway-vs-nginx
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=3
DURATION=10
CONNECTIONS=64
THREADS=2
PIN=0
BIN_DIR=
PERF_DIR=
RUN_TIMEOUT=120
WARMUP=3
STACK=caas/stack:latest
BACKEND_IMAGE=caas-bench-backend:$$

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --duration) [ $# -ge 2 ] || die "--duration needs a value"; DURATION=$2; shift 2 ;;
        --connections) [ $# -ge 2 ] || die "--connections needs a value"; CONNECTIONS=$2; shift 2 ;;
        --threads) [ $# -ge 2 ] || die "--threads needs a value"; THREADS=$2; shift 2 ;;
        --pin) PIN=1; shift ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        --perf) [ $# -ge 2 ] || die "--perf needs a value"; PERF_DIR=$2; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
for v in RUNS DURATION CONNECTIONS THREADS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "--$(echo "$v" | tr '[:upper:]' '[:lower:]') must be a positive integer"
done

command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
command -v wrk >/dev/null 2>&1 || die "wrk is needed (apt-get install wrk)"
command -v h2load >/dev/null 2>&1 || die "h2load is needed (apt-get install nghttp2-client)"
command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the benchmark's certificate (apt-get install openssl)"
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
[ -n "$NGINX" ] || die "nginx is needed (apt-get install nginx)"
command -v setpriv >/dev/null 2>&1 || die "setpriv is needed (util-linux)"
docker info >/dev/null 2>&1 || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"
docker image inspect "$STACK" >/dev/null 2>&1 || die "no $STACK image: run stack/build.sh first"
if [ -n "$PERF_DIR" ]; then
    command -v perf >/dev/null 2>&1 || die "--perf needs perf (apt-get install linux-perf)"
    mkdir -p "$PERF_DIR" || die "cannot create $PERF_DIR"
    PERF_DIR=$(cd "$PERF_DIR" && pwd)
fi
if [ "$PIN" = 1 ]; then
    command -v taskset >/dev/null 2>&1 || die "--pin needs taskset (util-linux)"
    [ "$(nproc)" -ge 2 ] || die "--pin needs 2 CPUs"
fi

bench_binaries
bench_workdir
NGDIR=
NGINX_PID=
APP=gw-$$

stop_nginx() {
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    NGINX_PID=
}

cleanup() {
    set +e
    [ -z "${PERF_PID:-}" ] || kill -INT "$PERF_PID" 2>/dev/null
    stop_nginx
    bench_cleanup_caasd
    [ -n "$NGDIR" ] && rm -rf "$NGDIR"
    local refs
    refs=$(docker images --format '{{.Repository}}:{{.Tag}}' "caas/$APP" 2>/dev/null)
    # shellcheck disable=SC2086 # a list of refs
    [ -n "$refs" ] && docker image rm $refs >/dev/null 2>&1
    docker image rm "$BACKEND_IMAGE" >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the backend image ------------------------------------------------------------------------
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
const port = Number(process.env.PORT || 5000);
server.listen(port, () => console.log(`bench backend listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
EOF
cat >"$WORK/backend/Dockerfile" <<'EOF'
FROM caas/stack:latest
COPY server.js /app/bench-backend.js
CMD ["node", "/app/bench-backend.js"]
EOF
DOCKER_BUILDKIT=0 docker build --pull=false --force-rm -q -t "$BACKEND_IMAGE" "$WORK/backend" >/dev/null \
    || die "docker build of the backend image failed"

# --- the certificate both proxies serve -------------------------------------------------------
mkdir -p "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=*.localhost" -addext "subjectAltName=DNS:*.localhost,DNS:localhost" \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" >/dev/null 2>&1 \
    || die "openssl could not make the benchmark's certificate"

# --- caasd and the app ------------------------------------------------------------------------
bench_start_caasd 45000-45999 --https 127.0.0.1:0 \
    --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem"
[[ "$HTTPS" =~ ^[0-9.]+:[0-9]+$ ]] || die "caasd serves no HTTPS"
"$CAAS" apps:create "$APP" >/dev/null
say "deploying $BACKEND_IMAGE as $APP"
"$CAAS" push --image "$BACKEND_IMAGE" -a "$APP" >"$WORK/push.log" 2>&1 \
    || { cat "$WORK/push.log" >&2; die "caas push --image failed"; }
"$CAAS" ps -a "$APP" --json >"$WORK/ps.json"
BACKEND=$(json_field "$WORK/ps.json" address)
[[ "$BACKEND" =~ ^[0-9.]+:[0-9]+$ ]] || { cat "$WORK/ps.json" >&2; die "no address for $APP's instance"; }
ctr=$(docker ps -q --filter "label=caas.cluster=$CLUSTER" --filter "label=caas.app=$APP" | head -n 1)
INSTANCE_IP=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$ctr" | awk '{ print $1 }')
[[ "$INSTANCE_IP" =~ ^[0-9.]+$ ]] || die "no container address for $APP's instance"
say "instance published at $BACKEND, container address $INSTANCE_IP:5000"
HOST_HEADER="Host: $APP.localhost"
curl -fsS --max-time 5 -H "$HOST_HEADER" "http://$GATEWAY/" >/dev/null || die "the gateway does not answer for $APP"

# --- nginx ------------------------------------------------------------------------------------
NGDIR=$(mktemp -d "${TMPDIR:-/tmp}/caas-bench-nginx.XXXXXX")
mkdir -p "$NGDIR/temp"
NGINX_PORT=$(free_port 47000 47499)
NGINX_TLS_PORT=$(free_port 47500 47999)
# write_nginx_conf off|file
write_nginx_conf() {
    local access
    if [ "$1" = off ]; then access="access_log off;"; else access="access_log $NGDIR/access.log router;"; fi
    cat >"$NGDIR/nginx.conf" <<EOF
# caas bench: nginx as the reverse proxy in front of the app instance $INSTANCE_IP:5000.
worker_processes auto;
pid $NGDIR/nginx.pid;
error_log $NGDIR/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    # One line per request, with what caas's router line says.
    log_format router '\$time_iso8601 at=info method=\$request_method path="\$request_uri" '
                      'host=\$host request_id=\$request_id fwd="\$remote_addr" '
                      'dyno=\$upstream_addr connect=\$upstream_connect_time '
                      'service=\$request_time status=\$status bytes=\$body_bytes_sent';
    $access
    client_body_temp_path $NGDIR/temp/body;
    proxy_temp_path $NGDIR/temp/proxy;
    fastcgi_temp_path $NGDIR/temp/fastcgi;
    uwsgi_temp_path $NGDIR/temp/uwsgi;
    scgi_temp_path $NGDIR/temp/scgi;
    keepalive_requests 1000000;
    upstream app {
        server $INSTANCE_IP:5000;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
    server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
        ssl_certificate $NGDIR/cert.pem;
        ssl_certificate_key $NGDIR/key.pem;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
EOF
    cp "$WORK/tls/cert.pem" "$WORK/tls/key.pem" "$NGDIR/"
}
# start_nginx off|file
start_nginx() {
    stop_nginx
    write_nginx_conf "$1"
    rm -f "$NGDIR/access.log"
    chown -R nobody:nogroup "$NGDIR"
    local pin=()
    [ "$PIN" = 0 ] || pin=(taskset -c 1)
    "${pin[@]}" setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$NGINX" -p "$NGDIR" -c "$NGDIR/nginx.conf" -e "$NGDIR/error.log" \
        >>"$NGDIR/stdout.log" 2>&1 </dev/null &
    NGINX_PID=$!
    local i
    for i in $(seq 1 100); do
        curl -fsS --max-time 1 -o /dev/null -H "$HOST_HEADER" "http://127.0.0.1:$NGINX_PORT/" 2>/dev/null && return 0
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$NGDIR/error.log" "$NGDIR/stdout.log" >&2 2>/dev/null
    die "nginx did not start"
}

if [ "$PIN" = 1 ]; then
    taskset -a -p -c 1 "$GATEWAY_PID" >/dev/null
    WRK=(taskset -c 0 wrk)
    H2LOAD=(taskset -c 0 h2load)
    say "pinned: wrk and h2load on CPU 0, caas's gateway and nginx on CPU 1; the instance, caasd and docker-proxy unpinned"
else
    WRK=(wrk)
    H2LOAD=(h2load)
fi

# --- load -------------------------------------------------------------------------------------
# to_ms VALUE: wrk's "1.23ms" / "456.78us" / "1.02s" in ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; else n = -1
        printf "%.2f\n", n }'
}
CLK_TCK=$(getconf CLK_TCK)
# proxy_pids NAME: the processes of the proxy in front of target NAME (none without a proxy).
proxy_pids() {
    case "$1" in
        caas*) echo "$GATEWAY_PID" ;;
        nginx*) echo "$NGINX_PID"; pgrep -P "$NGINX_PID" || true ;;
    esac
}
# cpu_ticks PID...: user + system CPU time of the processes (all their threads), in clock ticks.
cpu_ticks() {
    local pid total=0 t
    for pid in "$@"; do
        t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# load NAME URL SECONDS: runs wrk; sets RPS, P50, P99, ERRS (socket errors + non-2xx/3xx) and
# CPU (the proxy's CPU time per request in microseconds, "-" without a proxy).
load() {
    local name=$1 url=$2 secs=$3 out=$WORK/wrk-$1.txt pids before after n
    pids=$(proxy_pids "$name")
    # shellcheck disable=SC2086 # a list of pids
    before=$(cpu_ticks $pids)
    if [[ "$name" == *-h2 ]]; then
        h2 "$url" "$secs" "$out"
        # shellcheck disable=SC2086
        after=$(cpu_ticks $pids)
        n=$H2N
    else
        "${WRK[@]}" -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency -H "$HOST_HEADER" "$url" >"$out" 2>&1 \
            || { cat "$out" >&2; die "wrk against $name failed"; }
        # shellcheck disable=SC2086
        after=$(cpu_ticks $pids)
        n=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$out")
    fi
    CPU=-
    if [ -n "$pids" ] && [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ]; then
        CPU=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f\n", d * 1e6 / hz / n }')
    fi
    cat "$out" >>"$WORK/wrk-all.txt"
    [[ "$name" != *-h2 ]] || return 0
    RPS=$(awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' "$out")
    P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    ERRS=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                /Non-2xx or 3xx responses:/ { n += $5 }
                END { print n + 0 }' "$out")
}

# h2 URL SECONDS OUT: h2load over TLS (ALPN h2); sets RPS, P50, P99, ERRS and H2N (requests
# done). Latencies come from h2load's per-request log (microseconds to the end of each answer).
h2() {
    local url=$1 secs=$2 out=$3 log=$3.log
    rm -f "$log"
    "${H2LOAD[@]}" -t"$THREADS" -c"$CONNECTIONS" -m1 -D"$secs" --log-file="$log" \
        -H ":authority: $APP.localhost" "$url" >"$out" 2>&1 \
        || { cat "$out" >&2; die "h2load against $url failed"; }
    grep -q "Application protocol: h2" "$out" || { cat "$out" >&2; die "h2load did not speak HTTP/2 to $url"; }
    RPS=$(awk '/^finished in/ { gsub(/,/, ""); printf "%.0f\n", $4 }' "$out")
    H2N=$(awk '/^requests:/ { print $8 }' "$out")
    ERRS=$(awk '/^requests:/ { n += $10 + $12 } /^status codes:/ { n += $7 + $9 } END { print n + 0 }' "$out")
    P50=$(percentile 0.50 "$log")
    P99=$(percentile 0.99 "$log")
}
# percentile P LOG: the P-th latency (ms) of h2load's per-request log (third column, us).
percentile() {
    cut -f3 "$2" | sort -n | awk -v p="$1" '{ v[NR] = $1 }
        END { if (NR) printf "%.2f\n", v[int((NR - 1) * p) + 1] / 1000; else print "n/a" }'
}

TARGETS=(instance-ip direct caas nginx nginx+log caas-tls nginx-tls caas-h2 nginx-h2)
url_of() {
    case "$1" in
        instance-ip) echo "http://$INSTANCE_IP:5000/" ;;
        direct) echo "http://$BACKEND/" ;;
        caas) echo "http://$GATEWAY/" ;;
        nginx|nginx+log) echo "http://127.0.0.1:$NGINX_PORT/" ;;
        caas-tls|caas-h2) echo "https://$HTTPS/" ;;
        nginx-tls|nginx-h2) echo "https://127.0.0.1:$NGINX_TLS_PORT/" ;;
    esac
}
prepare() {
    case "$1" in
        nginx) start_nginx off ;;
        nginx+log|nginx-tls|nginx-h2) start_nginx file ;;
        *) stop_nginx ;;
    esac
}

declare -A R50 R99 RR RE RC
say "warm-up: ${WARMUP} s per target"
for t in "${TARGETS[@]}"; do
    prepare "$t"
    load "$t" "$(url_of "$t")" "$WARMUP"
done
PERF_PID=
for run in $(seq 1 "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        prepare "$t"
        if [ -n "$PERF_DIR" ] && [ "$run" = 1 ] && [[ "$t" == caas* ]]; then
            perf record -F 499 -g -p "$GATEWAY_PID" -o "$PERF_DIR/perf-$t.data" -- sleep "$DURATION" \
                >"$PERF_DIR/perf-$t.log" 2>&1 &
            PERF_PID=$!
        fi
        load "$t" "$(url_of "$t")" "$DURATION"
        if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; PERF_PID=; fi
        RR[$t]+="$RPS " R50[$t]+="$P50 " R99[$t]+="$P99 " RE[$t]+="$ERRS " RC[$t]+="$CPU "
        say "round $run, $t: $RPS req/s, p50 $P50 ms, p99 $P99 ms, errors $ERRS, proxy CPU $CPU us/request"
        [ "$t" != nginx+log ] || say "  nginx access log: $(wc -l <"$NGDIR/access.log") lines"
    done
done
stop_nginx

# --- report -----------------------------------------------------------------------------------
nth() { echo "$1" | awk -v i="$2" '{ print $i }'; }
echo
echo "gateway vs nginx: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $RUNS rounds," \
    "$(nproc) cores, $([ "$PIN" = 1 ] && echo "wrk on CPU 0 and the proxy on CPU 1" || echo "nothing pinned")"
echo "backend: node http server in one caas instance at $INSTANCE_IP:5000 (its container address; published at $BACKEND)"
echo "proxy CPU: user+system time of caas's gateway process / nginx's processes during the load, per request (us)"
printf '%-6s %-12s %12s %10s %10s %12s %8s\n' round target "req/s" "p50 ms" "p99 ms" "proxy us/req" errors
for run in $(seq 1 "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        printf '%-6s %-12s %12s %10s %10s %12s %8s\n' "$run" "$t" "$(nth "${RR[$t]}" "$run")" \
            "$(nth "${R50[$t]}" "$run")" "$(nth "${R99[$t]}" "$run")" "$(nth "${RC[$t]}" "$run")" \
            "$(nth "${RE[$t]}" "$run")"
    done
done
echo
echo "medians"
printf '%-12s %12s %10s %10s %12s %12s\n' target "req/s" "p50 ms" "p99 ms" "proxy us/req" "req/s/direct"
declare -A M50 M99 MR MC
for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2086 # lists of numbers
    MR[$t]=$(median ${RR[$t]}) M50[$t]=$(median ${R50[$t]}) M99[$t]=$(median ${R99[$t]})
    # shellcheck disable=SC2086
    MC[$t]=$(median ${RC[$t]})
    case "$t" in instance-ip|direct) MC[$t]=- ;; esac
done
for t in "${TARGETS[@]}"; do
    printf '%-12s %12s %10s %10s %12s %12s\n' "$t" "${MR[$t]}" "${M50[$t]}" "${M99[$t]}" \
        "${MC[$t]}" "$(ratio "${MR[$t]}" "${MR[direct]}")"
done
for pair in caas:nginx+log caas:nginx caas-tls:nginx-tls caas-h2:nginx-h2; do
    c=${pair%%:*} peer=${pair#*:}
    echo "$c/$peer (medians): req/s $(ratio "${MR[$c]}" "${MR[$peer]}")," \
        "p50 $(ratio "${M50[$c]}" "${M50[$peer]}"), p99 $(ratio "${M99[$c]}" "${M99[$peer]}")," \
        "proxy CPU/request $(ratio "${MC[$c]}" "${MC[$peer]}")"
done
if [ -n "$PERF_DIR" ]; then
    for t in caas caas-tls caas-h2; do
        [ -s "$PERF_DIR/perf-$t.data" ] || continue
        perf report -i "$PERF_DIR/perf-$t.data" --stdio --no-children --sort dso,symbol \
            --percent-limit 0.5 >"$PERF_DIR/perf-$t.txt" 2>/dev/null || true
        echo
        echo "perf, $t: self time by DSO and symbol (top lines of $PERF_DIR/perf-$t.txt)"
        grep -E '^ +[0-9.]+%' "$PERF_DIR/perf-$t.txt" | head -n 25 | sed 's/[ -]*$//' | cut -c1-110
    done
fi
total_errs=0
for t in "${TARGETS[@]}"; do for e in ${RE[$t]}; do total_errs=$((total_errs + e)); done; done
[ "$total_errs" = 0 ] || echo "WARNING: $total_errs socket errors or non-2xx/3xx answers (see the rounds above)"
