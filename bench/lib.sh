# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): messages, the release binaries, a throwaway
# caasd, polling until 200, medians and ratios. The sourcing script sets BENCH (its name, for
# messages) before sourcing, and calls bench_cleanup_caasd from its own EXIT trap.
#
# Variables it sets: ROOT, BIN_DIR, CAAS, CAASD (bench_binaries); WORK (bench_workdir);
# CAASD_ARGS, CAASD_PID, GATEWAY_PID, CAAS_SERVER, CAAS_TOKEN, GATEWAY, HTTPS, CLUSTER
# (bench_start_caasd; CAASD_PID and CAAS_SERVER again with bench_launch_caasd).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POLL_INTERVAL=${POLL_INTERVAL:-0.02}

die() { echo "$BENCH: error: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Finds the release binaries: BIN_DIR (may be preset by --bin-dir), CAAS, CAASD. Without
# --bin-dir they are brought up to date with the tree first (cargo build --release, quick when
# nothing changed), so the figures belong to the commit they are recorded with.
bench_binaries() {
    if [ -z "${BIN_DIR:-}" ]; then
        BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
        command -v cargo >/dev/null 2>&1 || PATH="$HOME/.cargo/bin:$PATH"
        if command -v cargo >/dev/null 2>&1; then
            say "cargo build --release --workspace --bins"
            (cd "$ROOT" && cargo build --release --workspace --bins --quiet) \
                || die "cargo build --release failed"
        elif [ ! -x "$BIN_DIR/caas" ] || [ ! -x "$BIN_DIR/caasd" ]; then
            die "cargo not found: cannot build the release binaries"
        fi
    fi
    CAAS=$BIN_DIR/caas
    CAASD=$BIN_DIR/caasd
    if [ ! -x "$CAAS" ] || [ ! -x "$CAASD" ]; then die "no caas/caasd in $BIN_DIR"; fi
}

# A temp dir for everything the benchmark writes (removed by bench_cleanup_caasd).
bench_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/caas-bench.XXXXXX")
}

# Prints the value of "KEY": VALUE (string or number) from a JSON file; the first occurrence.
json_field() {
    sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\"\\{0,1\\}\\([^\",}]*\\)\"\\{0,1\\}.*/\\1/p" "$1" | head -n 1
}

# Starts a throwaway caasd on $WORK/data with loopback listeners on free ports and the given
# instance port range (e.g. 44000-44999), this repo's buildpacks, any further caasd arguments,
# and the CLI pointed at it (HOME, CAAS_CONFIG, CAAS_SERVER, CAAS_TOKEN exported). caasd starts
# its gateway, a process of its own (GATEWAY_PID) that outlives it (bench_cleanup_caasd stops it).
bench_start_caasd() {
    local port_range=$1
    shift
    export HOME=$WORK/home CAAS_CONFIG=$WORK/home/config.json
    mkdir -p "$HOME"
    say "starting a throwaway caasd ($WORK/data)"
    CAASD_ARGS=(--data-dir "$WORK/data" --api 127.0.0.1:0 --gateway 127.0.0.1:0 --domain localhost
        --port-range "$port_range" --buildpacks "$ROOT/buildpacks" "$@")
    bench_launch_caasd
    GATEWAY=$(json_field "$WORK/data/caasd.json" gateway)
    HTTPS=$(json_field "$WORK/data/caasd.json" https)
    GATEWAY_PID=$(bench_gateway_pid)
    [[ "$GATEWAY_PID" =~ ^[0-9]+$ ]] || die "no gateway pid in $WORK/data/gateway/gateway.json"
    CLUSTER=$(json_field "$WORK/data/caasd.json" cluster_id)
    CAAS_TOKEN=$(cat "$WORK/data/admin-token")
    export CAAS_TOKEN
    say "caasd $CAASD_PID: API $CAAS_SERVER, gateway $GATEWAY, cluster $CLUSTER"
}

# Runs caasd with CAASD_ARGS (again) and waits for the caasd.json it writes once it serves; sets
# CAASD_PID and CAAS_SERVER (the API port is new at every start; the gateway's stays).
bench_launch_caasd() {
    rm -f "$WORK/data/caasd.json"
    "$CAASD" "${CAASD_ARGS[@]}" >>"$WORK/caasd.log" 2>&1 </dev/null &
    CAASD_PID=$!
    local i
    for i in $(seq 1 300); do
        [ -s "$WORK/data/caasd.json" ] && break
        kill -0 "$CAASD_PID" 2>/dev/null || { tail -n 20 "$WORK/caasd.log" >&2; die "caasd exited at start"; }
        [ "$i" -eq 300 ] && { tail -n 20 "$WORK/caasd.log" >&2; die "caasd did not write caasd.json in 60 s"; }
        sleep 0.2
    done
    CAAS_SERVER=$(json_field "$WORK/data/caasd.json" api)
    export CAAS_SERVER
}

# The pid of the gateway process of $WORK/data (from its run file, and only while that process is
# still a gateway of this data dir); nothing when none runs.
bench_gateway_pid() {
    local run=$WORK/data/gateway/gateway.json pid cmdline
    [ -s "$run" ] || return 0
    pid=$(json_field "$run" pid)
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    cmdline=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
    grep -qxF "$WORK/data/gateway" <<<"$cmdline" && echo "$pid"
    return 0
}

# Stops the caasd this script started and its gateway, removes every container and build-cache
# volume of its cluster, and the temp dir. Images are the caller's business (it knows which ones
# it made).
# Safe under set -e (a trap may call it before the script's own set +e).
bench_cleanup_caasd() {
    if [ -n "${CAASD_PID:-}" ] && kill -0 "$CAASD_PID" 2>/dev/null; then
        kill -TERM "$CAASD_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$CAASD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CAASD_PID" 2>/dev/null || true
    fi
    local gw
    gw=$(bench_gateway_pid)
    if [ -n "$gw" ]; then
        kill -TERM "$gw" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$gw" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$gw" 2>/dev/null || true
    fi
    if [ -n "${CLUSTER:-}" ]; then
        local ids vols
        ids=$(docker ps -aq --filter "label=caas.cluster=$CLUSTER" || true)
        # shellcheck disable=SC2086 # a list of ids
        [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
        vols=$(docker volume ls -q --filter "name=caas-cache-$CLUSTER-" || true)
        # shellcheck disable=SC2086 # a list of names
        [ -z "$vols" ] || docker volume rm -f $vols >/dev/null 2>&1 || true
    fi
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
    return 0
}

# until_200 T0 URL [MARK] [CURL_ARGS...]: polls URL every $POLL_INTERVAL until it answers 200
# (and, when MARK is not empty, a body containing MARK); prints the ms since T0, or "timeout"
# after $RUN_TIMEOUT seconds.
until_200() {
    local t0=$1 url=$2 mark=$3
    shift 3
    local deadline=$((t0 + RUN_TIMEOUT * 1000)) code body=$WORK/poll-body
    while :; do
        code=$(curl -s -o "$body" -w '%{http_code}' --max-time 2 "$@" "$url" || true)
        if [ "$code" = 200 ] && { [ -z "$mark" ] || grep -qF -- "$mark" "$body"; }; then
            echo $(($(now_ms) - t0))
            return 0
        fi
        [ "$(now_ms)" -lt "$deadline" ] || { echo timeout; return 0; }
        sleep "$POLL_INTERVAL"
    done
}

# Picks a port in FROM-TO that nothing on 127.0.0.1 accepts on.
free_port() {
    local port
    for port in $(seq "$1" "$2"); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port in $1-$2"
}

# Median of the numeric arguments (integers or decimals), with as many decimals as the most
# precise argument (one more for the mean of two integers that is not whole); "n/a" when there
# are none.
median() {
    printf '%s\n' "$@" | { grep -E '^[0-9]+(\.[0-9]+)?$' || true; } | sort -g | awk '
        { v[NR] = $1; d = index($1, ".") ? length($1) - index($1, ".") : 0; if (d > dec) dec = d }
        END {
            if (NR == 0) { print "n/a"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            if (dec == 0 && m != int(m)) dec = 1
            printf "%.*f\n", dec, m
        }'
}

# ratio A B: A/B with two decimals, "n/a" unless both are positive numbers.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9]+(\.[0-9]+)?$/ && b ~ /^[0-9]+(\.[0-9]+)?$/ && b > 0) printf "%.2f\n", a / b
        else print "n/a" }'
}
