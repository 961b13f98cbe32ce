#!/usr/bin/env bash
# Build latency: from `caas push DIR` of the Node.js fixture (examples/apps/nodejs) to the first
# HTTP 200 of the new release through the gateway, first build and rebuild, side by side with an
# equivalent Dockerfile built by `docker build` and started with `docker run -p`.
#
#   bench/build-to-first-200.sh [--runs N] [--bin-dir DIR] [--timeout SECONDS]
#
#   --runs N         runs of each (default 3)
#   --bin-dir DIR    take caas and caasd from DIR (default: target/release, built if missing)
#   --timeout S      give up on one measurement after S seconds (default 300)
#   --logs DIR       keep the build outputs (caas push, docker build) and caasd's log in DIR
#
# It starts a throwaway caasd (temp data dir, loopback listeners on free ports, this repo's
# buildpacks). Run i works on a temp copy of the fixture whose server.js answers with a marker
# (`nodejs app works [bench first-i]`, later `[bench rebuild-i]`), so the poll can tell which
# release answers:
#   caas first     new app bnode-PID-i (empty build cache volume); the clock starts, `caas push
#                  COPY -a APP --no-wait` runs, the gateway is polled with `Host: APP.localhost`
#                  every 20 ms until it answers 200 with the marker;
#   caas rebuild   server.js changed (new marker, a comment appended), pushed again to the same
#                  app (npm cache warm in the app's cache volume), until the new marker answers;
#   docker first   `docker build --no-cache` of an equivalent Dockerfile FROM caas/stack:latest
#                  (COPY package*.json, RUN npm ci --omit=dev, COPY ., USER caas, CMD node
#                  server.js), then `docker run -d -p 127.0.0.1:PORT:5000 -e PORT=5000` until 200
#                  with the marker;
#   docker rebuild the same server.js change, `docker build` with the layer cache (npm ci cached),
#                  a new `docker run`, until the new marker answers.
# No --pull anywhere (there is no registry). It prints each run, the medians, the ratios
# caas/docker (medians) and the image sizes, and removes everything it created (the caasd, its
# containers and cache volumes, the caas/APP image tags of its apps, the docker-run containers
# and peer images, the temp dir).
set -euo pipefail

BENCH=build-to-first-200
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=3
BIN_DIR=
RUN_TIMEOUT=300
LOGS=
FIXTURE=$ROOT/examples/apps/nodejs
STACK=caas/stack:latest
PEER_REPO=caas-bench-peer-node-$$

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; BIN_DIR=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; RUN_TIMEOUT=$2; shift 2 ;;
        --logs) [ $# -ge 2 ] || die "--logs needs a value"; LOGS=$2; shift 2 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer"

command -v curl >/dev/null 2>&1 || die "curl is needed (apt-get install curl)"
docker info >/dev/null 2>&1 || die "Docker Engine is not running: start dockerd (./install.sh --deps-only does it)"
docker image inspect "$STACK" >/dev/null 2>&1 || die "no $STACK image: run stack/build.sh first"
grep -q 'nodejs app works' "$FIXTURE/server.js" || die "$FIXTURE/server.js no longer says 'nodejs app works'"

bench_binaries
bench_workdir
APPS=()
PEER_CONTAINERS=()

cleanup() {
    set +e
    if [ -n "$LOGS" ] && [ -d "${WORK:-}" ]; then
        mkdir -p "$LOGS" && cp "$WORK"/*.log "$LOGS"/ 2>/dev/null
    fi
    bench_cleanup_caasd
    [ ${#PEER_CONTAINERS[@]} -gt 0 ] && docker rm -f "${PEER_CONTAINERS[@]}" >/dev/null 2>&1
    # The apps' images were built by this run (caas/APP:vN, and :build-N if a build was cut
    # short), as were the peer images; removing their tags removes them and their layers.
    local app refs
    for app in "${APPS[@]}"; do
        refs=$(docker images --format '{{.Repository}}:{{.Tag}}' "caas/$app" 2>/dev/null)
        # shellcheck disable=SC2086 # a list of refs
        [ -n "$refs" ] && docker image rm $refs >/dev/null 2>&1
    done
    refs=$(docker images --format '{{.Repository}}:{{.Tag}}' "$PEER_REPO" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -n "$refs" ] && docker image rm $refs >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_start_caasd 44000-44999

# mark_source DIR MARK [COMMENT]: the fixture's answer carries MARK; COMMENT is appended.
mark_source() {
    local dir=$1 mark=$2 comment=${3:-}
    sed -i "s/nodejs app works[^:]*:/nodejs app works [$mark]:/" "$dir/server.js"
    grep -qF "[$mark]" "$dir/server.js" || die "could not mark $dir/server.js"
    [ -z "$comment" ] || echo "// $comment" >>"$dir/server.js"
}

# The peer's Dockerfile: what the nodejs buildpack does, as a Dockerfile. npm's settings are the
# buildpack's (no audit, fund or update-notifier requests), and npm's download cache stays out of
# the image as it does with caas (the layer cache plays the cache volume's part on a rebuild).
write_dockerfile() {
    cat >"$1/Dockerfile" <<'EOF'
FROM caas/stack:latest
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
WORKDIR /app
COPY --chown=caas:caas package.json package-lock.json ./
RUN npm ci --omit=dev --cache /tmp/npm-cache && rm -rf /tmp/npm-cache
COPY --chown=caas:caas . .
USER caas
CMD ["node", "server.js"]
EOF
    printf 'Dockerfile\n.dockerignore\nnode_modules\n' >"$1/.dockerignore"
}

# stamp T0: prefixes each line of stdin with the ms since T0 (bash's clock: no fork per line).
stamp() {
    local line t
    while IFS= read -r line; do
        t=${EPOCHREALTIME/[.,]/}
        printf '%6d ms | %s\n' $((t / 1000 - $1)) "$line"
    done
}

# caas_push APP DIR MARK: pushes with --no-wait and polls until MARK answers; sets PUSH_T (ms the
# push command took, i.e. upload + build + release) and READY_T (ms until the marked 200).
caas_push() {
    local app=$1 dir=$2 mark=$3 t0
    t0=$(now_ms)
    "$CAAS" push "$dir" -a "$app" --no-wait 2>&1 | stamp "$t0" >"$WORK/push.log" \
        || { tail -n 30 "$WORK/push.log" >&2; die "caas push of $app failed"; }
    PUSH_T=$(($(now_ms) - t0))
    READY_T=$(until_200 "$t0" "http://$GATEWAY/" "[$mark]" -H "Host: $app.localhost")
    { echo "== caas push $app ($mark): push returned at $PUSH_T ms, 200 at $READY_T ms"
      cat "$WORK/push.log"; } >>"$WORK/push-all.log"
}

# peer_build DIR TAG MARK [--no-cache]: docker build, docker run, until MARK answers; sets
# PUSH_T (ms of docker build) and READY_T (ms until the marked 200). The container keeps running
# (PEER_CTR) until the caller removes it.
peer_build() {
    local dir=$1 tag=$2 mark=$3 t0 port
    shift 3
    port=$(free_port 46000 46999)
    PEER_CTR=caas-bench-peer-$$-${tag//[^a-z0-9]/-}
    t0=$(now_ms)
    DOCKER_BUILDKIT=0 docker build --pull=false --force-rm "$@" -t "$PEER_REPO:$tag" "$dir" 2>&1 \
        | stamp "$t0" >"$WORK/docker-build.log" \
        || { tail -n 30 "$WORK/docker-build.log" >&2; die "docker build of $tag failed"; }
    PUSH_T=$(($(now_ms) - t0))
    PEER_CONTAINERS+=("$PEER_CTR")
    docker run -d --name "$PEER_CTR" -p "127.0.0.1:$port:5000" -e PORT=5000 "$PEER_REPO:$tag" >/dev/null
    READY_T=$(until_200 "$t0" "http://127.0.0.1:$port/" "[$mark]")
    { echo "== docker build $tag: built at $PUSH_T ms, 200 at $READY_T ms"
      cat "$WORK/docker-build.log"; } >>"$WORK/docker-build-all.log"
}

CF=() CFB=() CR=() CRB=() DF=() DFB=() DR=() DRB=()
CAAS_SIZE=
for run in $(seq 1 "$RUNS"); do
    app=bnode-$$-$run
    src=$WORK/caas-src-$run
    peer=$WORK/peer-src-$run
    cp -R "$FIXTURE" "$src"
    rm -rf "$src/node_modules"
    cp -R "$src" "$peer"
    write_dockerfile "$peer"

    # caas: first build on a new app, then a rebuild of a changed server.js.
    "$CAAS" apps:create "$app" >/dev/null
    APPS+=("$app")
    mark_source "$src" "bench first-$run"
    caas_push "$app" "$src" "bench first-$run"
    CF+=("$READY_T") CFB+=("$PUSH_T")
    mark_source "$src" "bench rebuild-$run" "bench rebuild $run"
    caas_push "$app" "$src" "bench rebuild-$run"
    CR+=("$READY_T") CRB+=("$PUSH_T")
    if [ -z "$CAAS_SIZE" ]; then
        "$CAAS" builds -a "$app" --json >"$WORK/builds.json"
        CAAS_SIZE=$(json_field "$WORK/builds.json" image_size)
    fi
    # Out of the way before the peer runs: its instance, its image tags stay until cleanup.
    "$CAAS" apps:destroy -a "$app" --confirm "$app" >/dev/null 2>&1 || say "apps:destroy $app failed"

    # docker: the same two steps.
    mark_source "$peer" "bench first-$run"
    peer_build "$peer" "first-$run" "bench first-$run" --no-cache
    DF+=("$READY_T") DFB+=("$PUSH_T")
    docker rm -f "$PEER_CTR" >/dev/null 2>&1 || true
    mark_source "$peer" "bench rebuild-$run" "bench rebuild $run"
    peer_build "$peer" "rebuild-$run" "bench rebuild-$run"
    DR+=("$READY_T") DRB+=("$PUSH_T")
    docker rm -f "$PEER_CTR" >/dev/null 2>&1 || true
    PEER_SIZE=$(docker image inspect --format '{{.Size}}' "$PEER_REPO:rebuild-$run")

    say "run $run: caas first ${CF[-1]} ms (build ${CFB[-1]}), rebuild ${CR[-1]} ms (build ${CRB[-1]});" \
        "docker first ${DF[-1]} ms (build ${DFB[-1]}), rebuild ${DR[-1]} ms (build ${DRB[-1]})"
done

mb() { awk -v b="$1" 'BEGIN { if (b ~ /^[0-9]+$/) printf "%.1f MB", b / 1e6; else print "n/a" }'; }
# over SIZE BASE: how much SIZE adds to BASE, in kB.
over() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) printf "+%.0f kB", (a - b) / 1e3; else print "n/a" }'; }
STACK_SIZE=$(docker image inspect --format '{{.Size}}' "$STACK")

echo
echo "build to first 200 (ms), $RUNS runs, fixture examples/apps/nodejs, $(nproc) cores"
echo "(in brackets: how long the build took, i.e. the caas push --no-wait command / docker build)"
row() { printf '%-7s %18s %18s %18s %18s\n' "$@"; }
row run "caas first" "caas rebuild" "docker first" "docker rebuild"
for i in $(seq 0 $((RUNS - 1))); do
    row "$((i + 1))" "${CF[$i]} (${CFB[$i]})" "${CR[$i]} (${CRB[$i]})" \
        "${DF[$i]} (${DFB[$i]})" "${DR[$i]} (${DRB[$i]})"
done
mcf=$(median "${CF[@]}") mcr=$(median "${CR[@]}") mdf=$(median "${DF[@]}") mdr=$(median "${DR[@]}")
row median "$mcf ($(median "${CFB[@]}"))" "$mcr ($(median "${CRB[@]}"))" \
    "$mdf ($(median "${DFB[@]}"))" "$mdr ($(median "${DRB[@]}"))"
echo "ratio caas/docker (medians): first $(ratio "$mcf" "$mdf"), rebuild $(ratio "$mcr" "$mdr")"
echo "image size: caas $(mb "$CAAS_SIZE") ($CAAS_SIZE bytes as caas reports it; its push line says" \
    "$(awk -v b="$CAAS_SIZE" 'BEGIN { printf "%.1f", b / 1048576 }') MB, in MiB)," \
    "docker $(mb "$PEER_SIZE") ($PEER_SIZE bytes)"
echo "over the stack image ($STACK_SIZE bytes): caas $(over "$CAAS_SIZE" "$STACK_SIZE")," \
    "docker $(over "$PEER_SIZE" "$STACK_SIZE")"
