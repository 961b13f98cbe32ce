#!/usr/bin/env bash
# install.sh — set up caas on this machine (Debian 12, as root), from this checkout.
#
#   ./install.sh [--data-dir DIR] [--api ADDR] [--gateway ADDR] [--domain DOMAIN] [--https ADDR]
#                [--tls-cert FILE --tls-key FILE]
#   ./install.sh --no-start        build and install the binaries, start nothing
#   ./install.sh --deps-only       only the dependencies: packages, Docker running, the stack image,
#                                  and what the tests use (git, python3, a JDK)
#   ./install.sh --etcd [...]     as a plain install, with the records in etcd instead of the
#                                  embedded store: Debian's etcd-server, a local member on
#                                  127.0.0.1:2379 (data in DATA_DIR/etcd), caasd --store etcd://...;
#                                  more caasd servers can then share it (docs/guide.md)
#   ./install.sh --uninstall       stop caasd and its gateway, stop the app containers and remove
#                                  the firewall rules, remove the service and binaries (data and the
#                                  stopped containers are kept)
#   ./install.sh --agent URL --server-fingerprint sha256:HEX --join-token TOKEN --address IP
#                [--name NAME] [--port-range A-B]
#                                  make this machine an extra host of the control plane at URL:
#                                  Docker, the binaries, and `caasd agent` as a service (`caas
#                                  hosts:add NAME` on the control plane prints this whole command:
#                                  an https:// URL, the fingerprint of the control plane's
#                                  certificate, which the agent pins, and the join token; IP is this
#                                  host's address the gateway can reach; data in /var/lib/caas-agent)
#
# What it does, step by step (each step is skipped when already done, so re-running it is safe
# and upgrades: the new binaries are built while the old caasd runs, then caasd is restarted):
#   1. apt-get installs what is missing: git, curl, ca-certificates, build-essential, pkg-config,
#      libssl-dev (caasd clones repositories over HTTPS), busybox-static, debootstrap (for the
#      stack image), and docker.io when there is no dockerd.
#   2. starts Docker Engine if `docker info` fails: systemctl where systemd is PID 1, else
#      `dockerd` in the background (log /var/log/dockerd.log); waits until it answers.
#   3. builds the stack image caas/stack (stack/build.sh: debootstrap + Debian packages + docker
#      import; skipped when the image of the current recipe exists).
#   4. finds cargo (PATH or ~/.cargo/bin) and runs `cargo build --release --workspace --bins`.
#   5. installs caas and caasd to /usr/local/bin, the buildpacks to /usr/local/share/caas, and
#      caas's shell completions (bash, zsh, fish) and man pages (/usr/local/share/man/man1).
#   6. starts caasd: the systemd unit caasd.service where systemd is PID 1, else a background
#      process with DATA_DIR/caasd.pid and DATA_DIR/caasd.log; waits for DATA_DIR/caasd.json.
#      caasd starts the gateway as a process of its own (DATA_DIR/gateway/), which keeps serving
#      the apps while caasd restarts or upgrades; net.ipv4.tcp_migrate_req is turned on so a new
#      gateway takes over without resetting a connection.
#   7. logs the CLI in with the admin token, builds the demo image (examples/demo).
#
# Options:
#   --data-dir DIR   caasd's data directory (default /var/lib/caas)
#   --api ADDR       API listen address (caasd's default: 127.0.0.1:7080)
#   --gateway ADDR   gateway listen address (caasd's default: 0.0.0.0:8080)
#   --domain DOMAIN  apps are served at http://APP.DOMAIN (caasd's default: localhost)
#   --https ADDR     the gateway also serves HTTPS there (e.g. 0.0.0.0:443); certificates are
#                    picked by SNI (caas certs:add), else the platform's (below)
#   --tls-cert FILE, --tls-key FILE
#                    the platform's certificate and key (PEM), normally a wildcard for *.DOMAIN;
#                    without them caasd serves a self-signed one and says so
#   --bin-dir DIR    where to install caas and caasd (default /usr/local/bin)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA_DIR=/var/lib/caas
BIN_DIR=/usr/local/bin
UNIT=/etc/systemd/system/caasd.service
DOCKERD_LOG=/var/log/dockerd.log
API_ADDR=
GATEWAY_ADDR=
DOMAIN=
HTTPS_ADDR=
TLS_CERT=
TLS_KEY=
MODE=full
AGENT_SERVER=
JOIN_TOKEN=
SERVER_FINGERPRINT=
AGENT_ADDRESS=
AGENT_NAME=
PORT_RANGE=
AGENT_UNIT=/etc/systemd/system/caas-agent.service
DATA_DIR_SET=
ETCD=

step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help) usage; exit 0 ;;
            --data-dir|--api|--gateway|--domain|--bin-dir|--https|--tls-cert|--tls-key)
                if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi
                case "$1" in
                    --data-dir) DATA_DIR=$2; DATA_DIR_SET=1 ;;
                    --api) API_ADDR=$2 ;;
                    --gateway) GATEWAY_ADDR=$2 ;;
                    --domain) DOMAIN=$2 ;;
                    --https) HTTPS_ADDR=$2 ;;
                    --tls-cert) TLS_CERT=$2 ;;
                    --tls-key) TLS_KEY=$2 ;;
                    --bin-dir) BIN_DIR=$2 ;;
                esac
                shift 2 ;;
            --data-dir=*) DATA_DIR=${1#*=}; DATA_DIR_SET=1; shift ;;
            --api=*) API_ADDR=${1#*=}; shift ;;
            --gateway=*) GATEWAY_ADDR=${1#*=}; shift ;;
            --domain=*) DOMAIN=${1#*=}; shift ;;
            --https=*) HTTPS_ADDR=${1#*=}; shift ;;
            --tls-cert=*) TLS_CERT=${1#*=}; shift ;;
            --tls-key=*) TLS_KEY=${1#*=}; shift ;;
            --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
            --agent|--join-token|--address|--name|--port-range|--server-fingerprint)
                if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi
                case "$1" in
                    --agent) MODE=agent; AGENT_SERVER=$2 ;;
                    --join-token) JOIN_TOKEN=$2 ;;
                    --server-fingerprint) SERVER_FINGERPRINT=$2 ;;
                    --address) AGENT_ADDRESS=$2 ;;
                    --name) AGENT_NAME=$2 ;;
                    --port-range) PORT_RANGE=$2 ;;
                esac
                shift 2 ;;
            --etcd) ETCD=1; shift ;;
            --no-start) MODE=no-start; shift ;;
            --deps-only) MODE=deps-only; shift ;;
            --uninstall) MODE=uninstall; shift ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
    if [ -n "$TLS_CERT" ] || [ -n "$TLS_KEY" ]; then
        [ -n "$TLS_CERT" ] && [ -n "$TLS_KEY" ] || die "--tls-cert and --tls-key go together"
        case "$TLS_CERT" in /*) ;; *) TLS_CERT="$(pwd)/$TLS_CERT" ;; esac
        case "$TLS_KEY" in /*) ;; *) TLS_KEY="$(pwd)/$TLS_KEY" ;; esac
    fi
    if [ "$MODE" = agent ]; then
        [ -n "$JOIN_TOKEN" ] || die "--agent needs --join-token TOKEN: run caas hosts:add NAME on the control plane"
        [ -n "$AGENT_ADDRESS" ] || die "--agent needs --address IP: this host's address, reachable from the control plane"
        [ -n "$AGENT_NAME" ] || AGENT_NAME=$(hostname | tr '[:upper:]' '[:lower:]')
        [ -n "$DATA_DIR_SET" ] || DATA_DIR=/var/lib/caas-agent
    fi
    case "$DATA_DIR" in
        /*) ;;
        *) DATA_DIR="$(pwd)/$DATA_DIR" ;;
    esac
}

systemd_is_pid1() {
    [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]
}

# --- 1. packages ------------------------------------------------------------------------------

apt_missing() {
    local pkg missing=()
    for pkg in "$@"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
            missing+=("$pkg")
        fi
    done
    echo "${missing[*]}"
}

install_packages() {
    local wanted=(git curl ca-certificates build-essential pkg-config libssl-dev busybox-static debootstrap)
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        wanted+=(docker.io)
    fi
    local missing
    missing=$(apt_missing "${wanted[@]}")
    if [ -z "$missing" ]; then
        step "Packages: all there (${wanted[*]})"
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian; install: $missing"
    [ "$(id -u)" -eq 0 ] || die "run as root to install: $missing"
    case " $missing " in
        *" docker.io "*) step "Installing Docker Engine (docker.io) and: $missing" ;;
        *) step "Installing packages: $missing" ;;
    esac
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # $missing is a list of package names
    apt-get install -y -q --no-install-recommends $missing
}

# What the end-to-end tests use beyond the platform itself: git (pushes), python3 (hostile test
# archives), a JDK (the .jar and .war fixtures are compiled in the tests), pebble (the ACME
# server the certs:auto tests obtain certificates from), and Chromium with its WebDriver (the
# dashboard is tested in a real headless browser). Only for --deps-only and CI; a plain install
# does not need them.
install_test_packages() {
    local wanted=(git python3 pebble chromium chromium-driver etcd-server)
    command -v javac >/dev/null 2>&1 && command -v jar >/dev/null 2>&1 || wanted+=(default-jdk-headless)
    local missing
    missing=$(apt_missing "${wanted[@]}")
    # A python3 or JDK from elsewhere (pyenv, a tarball) on PATH is as good as Debian's.
    if command -v python3 >/dev/null 2>&1; then missing=$(echo " $missing " | sed 's/ python3 / /'); fi
    missing=$(echo "$missing" | xargs)
    if [ -z "$missing" ]; then
        step "Test tools: all there (git, python3, javac, jar, pebble, chromium, chromedriver, etcd)"
        return
    fi
    step "Installing what the tests use: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # $missing is a list of package names
    apt-get install -y -q --no-install-recommends $missing
}

# --- 2. Docker Engine -------------------------------------------------------------------------

docker_answers() { docker info >/dev/null 2>&1; }

# Is a process called NAME running? (/proc, as pgrep is not on every fresh machine)
process_running() {
    local comm
    for comm in /proc/[0-9]*/comm; do
        [ "$(cat "$comm" 2>/dev/null)" = "$1" ] && return 0
    done
    return 1
}

start_docker() {
    if docker_answers; then
        step "Docker Engine is running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
        return
    fi
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found (install docker.io)"
    [ "$(id -u)" -eq 0 ] || die "Docker Engine is not running and starting it needs root"
    if systemd_is_pid1; then
        step "Starting Docker Engine (systemctl enable --now docker)"
        systemctl enable --now docker.service
    else
        step "Starting Docker Engine in the background (no systemd; log $DOCKERD_LOG)"
        # A dockerd that is running but not answering yet must not get a twin.
        if ! process_running dockerd; then
            setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
        fi
    fi
    local i
    for i in $(seq 1 120); do
        docker_answers && break
        sleep 0.5
        if [ "$i" -eq 120 ]; then
            tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "Docker Engine did not answer within 60 s (see $DOCKERD_LOG or journalctl -u docker)"
        fi
    done
    info "Docker Engine $(docker info --format '{{.ServerVersion}}') answers"
}

# --- 3. cargo ---------------------------------------------------------------------------------

find_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        local dir
        for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" "$HOME/.cargo/bin" /root/.cargo/bin; do
            if [ -x "$dir/cargo" ]; then
                PATH="$dir:$PATH"
                export PATH
                break
            fi
        done
    fi
    command -v cargo >/dev/null 2>&1 \
        || die "cargo not found (looked in PATH and ~/.cargo/bin): install a Rust toolchain with rustup, then re-run"
    step "Rust toolchain: $(cargo --version)"
}

build() {
    local locked=()
    [ -f "$ROOT/Cargo.lock" ] && locked=(--locked)
    step "Building caas and caasd (cargo build --release --workspace --bins ${locked[*]})"
    (cd "$ROOT" && cargo build --release --workspace --bins "${locked[@]}")
}

# --- stack image -------------------------------------------------------------------------------

stack_image() {
    step "Stack image (stack/build.sh; built once per recipe, a few minutes the first time)"
    local tag
    tag=$("$ROOT/stack/build.sh" | tail -n 1) || die "building the stack image failed (see above)"
    info "$tag"
}

# --- 4. install --------------------------------------------------------------------------------

BUILDPACKS_DIR=/usr/local/share/caas/buildpacks

install_buildpacks() {
    step "Installing the buildpacks to $BUILDPACKS_DIR"
    mkdir -p "$(dirname "$BUILDPACKS_DIR")"
    rm -rf "$BUILDPACKS_DIR.new"
    cp -a "$ROOT/buildpacks" "$BUILDPACKS_DIR.new"
    rm -rf "$BUILDPACKS_DIR"
    mv "$BUILDPACKS_DIR.new" "$BUILDPACKS_DIR"
}

install_binaries() {
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac
    step "Installing caas and caasd to $BIN_DIR"
    mkdir -p "$BIN_DIR"
    local bin
    for bin in caas caasd; do
        [ -f "$target/release/$bin" ] || die "$target/release/$bin was not built"
        # Copy next to the destination, then rename: replacing a running binary this way is safe.
        install -m 0755 "$target/release/$bin" "$BIN_DIR/.$bin.new"
        mv -f "$BIN_DIR/.$bin.new" "$BIN_DIR/$bin"
    done
    info "$("$BIN_DIR/caas" --version 2>/dev/null || echo "caas installed")"
    install_shell_files
}

# Completions (bash, zsh, fish) and man pages, generated by the installed caas from its own
# command definitions, so they match it.
COMPLETION_FILES=(/usr/share/bash-completion/completions/caas /usr/local/share/zsh/site-functions/_caas
    /usr/share/fish/vendor_completions.d/caas.fish)
MAN_DIR=/usr/local/share/man/man1

install_shell_files() {
    step "Installing shell completions and man pages"
    local shell file i=0
    for shell in bash zsh fish; do
        file=${COMPLETION_FILES[$i]}
        i=$((i + 1))
        mkdir -p "$(dirname "$file")"
        "$BIN_DIR/caas" completions "$shell" >"$file.new" && mv -f "$file.new" "$file"
    done
    mkdir -p "$MAN_DIR"
    rm -f "$MAN_DIR"/caas.1 "$MAN_DIR"/caas-*.1
    "$BIN_DIR/caas" man "$MAN_DIR" >/dev/null
    if command -v mandb >/dev/null 2>&1; then mandb -q >/dev/null 2>&1 || true; fi
    info "man caas, man caas-ps:scale; completions for bash, zsh and fish"
}

# --- 5. caasd ----------------------------------------------------------------------------------

caasd_args() {
    CAASD_ARGS=(--data-dir "$DATA_DIR")
    [ -n "$API_ADDR" ] && CAASD_ARGS+=(--api "$API_ADDR")
    [ -n "$GATEWAY_ADDR" ] && CAASD_ARGS+=(--gateway "$GATEWAY_ADDR")
    [ -n "$DOMAIN" ] && CAASD_ARGS+=(--domain "$DOMAIN")
    [ -n "$HTTPS_ADDR" ] && CAASD_ARGS+=(--https "$HTTPS_ADDR")
    [ -n "$TLS_CERT" ] && CAASD_ARGS+=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
    [ -n "$ETCD" ] && CAASD_ARGS+=(--store etcd://127.0.0.1:2379)
    return 0
}

# --etcd: a local etcd member on loopback (Debian's etcd-server), unless one answers already.
# Under systemd, Debian's own unit (etcd.service, data in /var/lib/etcd); else a background
# process with its data in DATA_DIR/etcd and its log in DATA_DIR/etcd.log.
start_etcd() {
    if [ "$(apt_missing etcd-server)" != "" ]; then
        step "Installing etcd (etcd-server)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends etcd-server
    fi
    if curl -fsS -X POST -d '{}' http://127.0.0.1:2379/v3/maintenance/status >/dev/null 2>&1; then
        step "etcd: answering on 127.0.0.1:2379"
        return
    fi
    step "Starting a local etcd member on 127.0.0.1:2379"
    if systemd_is_pid1; then
        systemctl enable --now etcd
    else
        mkdir -p "$DATA_DIR"
        setsid nohup etcd --name caas --data-dir "$DATA_DIR/etcd" \
            --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
            --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
            --initial-cluster caas=http://127.0.0.1:2380 >>"$DATA_DIR/etcd.log" 2>&1 </dev/null &
    fi
    local i
    for i in $(seq 1 60); do
        if curl -fsS -X POST -d '{}' http://127.0.0.1:2379/v3/maintenance/status >/dev/null 2>&1; then
            info "etcd answers"
            return
        fi
        sleep 0.5
    done
    die "etcd did not answer on 127.0.0.1:2379 within 30s (see $DATA_DIR/etcd.log or journalctl -u etcd)"
}

# A string from caasd.json: json_field FILE KEY
json_field() {
    sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\"\\{0,1\\}\\([^\",}]*\\)\"\\{0,1\\}.*/\\1/p" "$1" | head -n 1
}

# Is PID a running caasd?
is_caasd() {
    [ -n "$1" ] && [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm")" = caasd ]
}

stop_background_caasd() {
    local pid pids=() f
    for f in "$DATA_DIR/caasd.pid" "$DATA_DIR/caasd.json"; do
        [ -f "$f" ] || continue
        if [ "${f##*.}" = pid ]; then pid=$(tr -dc 0-9 <"$f"); else pid=$(json_field "$f" pid); fi
        if is_caasd "$pid"; then
            case " ${pids[*]} " in *" $pid "*) ;; *) pids+=("$pid") ;; esac
        fi
    done
    if [ ${#pids[@]} -gt 0 ]; then
        step "Stopping the running caasd (pid ${pids[*]})"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        local i
        for i in $(seq 1 150); do
            local alive=0
            for pid in "${pids[@]}"; do is_caasd "$pid" && alive=1; done
            [ "$alive" = 0 ] && break
            if [ "$i" -eq 150 ]; then
                info "caasd did not stop within 30 s of SIGTERM: killing it"
                kill -KILL "${pids[@]}" 2>/dev/null || true
                sleep 0.5
            fi
            sleep 0.2
        done
    fi
    rm -f "$DATA_DIR/caasd.pid"
}

quote_systemd() {
    # systemd's ExecStart splits on spaces and honours double quotes; % and $ are its own.
    local out=() a
    for a in "$@"; do
        a=${a//\\/\\\\}
        a=${a//\"/\\\"}
        a=${a//%/%%}
        a=${a//\$/\$\$}
        out+=("\"$a\"")
    done
    echo "${out[*]}"
}

# The systemd unit for caasd (CAASD_ARGS set by caasd_args).
caasd_unit() {
    cat <<EOF
[Unit]
Description=caas control plane (caasd)
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
ExecStart=$(quote_systemd "$BIN_DIR/caasd" "${CAASD_ARGS[@]}")
Restart=on-failure
RestartSec=2
# SIGTERM caasd only: app containers belong to Docker and keep running across restarts.
KillMode=process
TimeoutStopSec=30
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
}

start_caasd() {
    caasd_args
    [ "$(id -u)" -eq 0 ] || [ -w "$(dirname "$DATA_DIR")" ] || die "run as root (caasd's data dir is $DATA_DIR)"
    mkdir -p "$DATA_DIR"
    chmod 0700 "$DATA_DIR"
    local json="$DATA_DIR/caasd.json"
    if systemd_is_pid1; then
        step "Starting caasd with systemd ($UNIT)"
        local unit_text
        unit_text=$(caasd_unit)
        if [ ! -f "$UNIT" ] || [ "$(cat "$UNIT")" != "$unit_text" ]; then
            printf '%s\n' "$unit_text" >"$UNIT"
            systemctl daemon-reload
        fi
        systemctl enable caasd.service >/dev/null 2>&1
        # Stop first, so the caasd.json waited for below is the new one's.
        systemctl stop caasd.service || true
        rm -f "$json"
        systemctl start caasd.service
    else
        stop_background_caasd
        step "Starting caasd in the background (log $DATA_DIR/caasd.log, pid file $DATA_DIR/caasd.pid)"
        rm -f "$json"
        setsid nohup "$BIN_DIR/caasd" "${CAASD_ARGS[@]}" >>"$DATA_DIR/caasd.log" 2>&1 </dev/null &
        echo $! >"$DATA_DIR/caasd.pid"
    fi
    local i pid
    for i in $(seq 1 300); do
        [ -s "$json" ] && json_field "$json" api | grep -q . && break
        if ! systemd_is_pid1; then
            pid=$(cat "$DATA_DIR/caasd.pid")
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 30 "$DATA_DIR/caasd.log" >&2 || true
                die "caasd exited at start (log: $DATA_DIR/caasd.log)"
            fi
        fi
        if [ "$i" -eq 300 ]; then
            if systemd_is_pid1; then
                journalctl -u caasd.service -n 30 --no-pager >&2 || true
            else
                tail -n 30 "$DATA_DIR/caasd.log" >&2 || true
            fi
            die "caasd did not write $json within 60 s"
        fi
        sleep 0.2
    done
    pid=$(json_field "$json" pid)
    if ! systemd_is_pid1 && [ -n "$pid" ]; then
        echo "$pid" >"$DATA_DIR/caasd.pid"
    fi
    API_URL=$(json_field "$json" api)
    GATEWAY=$(json_field "$json" gateway)
    info "caasd (pid $pid) API $API_URL, gateway $GATEWAY"
}

# --- agent mode ----------------------------------------------------------------------------------

agent_args() {
    AGENT_ARGS=(agent --server "$AGENT_SERVER" --join-token-file "$DATA_DIR/join-token"
        --data-dir "$DATA_DIR" --address "$AGENT_ADDRESS" --name "$AGENT_NAME")
    [ -n "$PORT_RANGE" ] && AGENT_ARGS+=(--port-range "$PORT_RANGE")
    [ -n "$SERVER_FINGERPRINT" ] && AGENT_ARGS+=(--server-fingerprint "$SERVER_FINGERPRINT")
    return 0
}

agent_unit() {
    cat <<EOF
[Unit]
Description=caas agent (caasd agent)
After=network-online.target docker.service
Wants=network-online.target docker.service

[Service]
ExecStart=$(quote_systemd "$BIN_DIR/caasd" "${AGENT_ARGS[@]}")
Restart=always
RestartSec=2
# SIGTERM the agent only: app containers belong to Docker and keep running across restarts.
KillMode=process
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
EOF
}

start_agent() {
    mkdir -p "$DATA_DIR"
    chmod 0700 "$DATA_DIR"
    # The token goes to a file (0600), not onto a command line other users can read.
    (umask 077 && printf '%s\n' "$JOIN_TOKEN" >"$DATA_DIR/join-token")
    agent_args
    if systemd_is_pid1; then
        step "Starting caasd agent with systemd ($AGENT_UNIT)"
        agent_unit >"$AGENT_UNIT"
        systemctl daemon-reload
        systemctl enable caas-agent.service >/dev/null 2>&1
        systemctl restart caas-agent.service
    else
        local pid=
        [ -f "$DATA_DIR/agent.pid" ] && pid=$(tr -dc 0-9 <"$DATA_DIR/agent.pid")
        if [ -n "$pid" ] && is_caasd "$pid"; then
            step "Stopping the running agent (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 150); do is_caasd "$pid" || break; sleep 0.2; done
        fi
        step "Starting caasd agent in the background (log $DATA_DIR/agent.log, pid file $DATA_DIR/agent.pid)"
        setsid nohup "$BIN_DIR/caasd" "${AGENT_ARGS[@]}" >>"$DATA_DIR/agent.log" 2>&1 </dev/null &
        echo $! >"$DATA_DIR/agent.pid"
    fi
    # Registered once the agent has its identity.
    local i
    for i in $(seq 1 150); do
        [ -s "$DATA_DIR/identity.json" ] && break
        # An agent that refused the control plane (a certificate not the pinned one, a spent
        # token) exits at once: say why instead of waiting.
        if ! systemd_is_pid1 && ! kill -0 "$(tr -dc 0-9 <"$DATA_DIR/agent.pid")" 2>/dev/null; then
            die "the agent stopped: $(grep 'error' "$DATA_DIR/agent.log" | tail -n 1)"
        fi
        [ "$i" -eq 150 ] && die "the agent did not register within 30 s (log: $DATA_DIR/agent.log)"
        sleep 0.2
    done
    step "This host ($AGENT_NAME, $AGENT_ADDRESS) joined $AGENT_SERVER; check with: caas hosts"
}

login() {
    local token_file="$DATA_DIR/admin-token"
    [ -r "$token_file" ] || die "$token_file is missing: caasd writes it on its first start"
    step "Logging the CLI in to $API_URL (as $(id -un))"
    "$BIN_DIR/caas" login --server "$API_URL" --token "$(cat "$token_file")"
}

demo_image() {
    step "Building the demo image (examples/demo/build-image.sh)"
    "$ROOT/examples/demo/build-image.sh" caas-demo:latest >/dev/null
}

next_steps() {
    local port=${GATEWAY##*:} domain=${DOMAIN:-localhost}
    local url="http://demo.$domain"
    [ "$port" = 80 ] || url="$url:$port"
    cat <<EOF

caas is running. Next:

    caas apps:create demo
    caas push --image caas-demo:latest -a demo
    curl $url

EOF
    if systemd_is_pid1; then
        info "caasd's log: journalctl -u caasd -f; stop it: systemctl stop caasd"
    else
        info "caasd's log: $DATA_DIR/caasd.log; stop it: kill \$(cat $DATA_DIR/caasd.pid);"
        info "re-run ./install.sh to upgrade and restart it"
    fi
}

# The gateway (`caasd gateway`) is a process of its own that caasd starts and that outlives it,
# so apps are served while caasd restarts or upgrades. When caasd starts it with other options or
# a new binary, the new gateway listens beside the old one (SO_REUSEPORT) and the old one stops.
# Linux can move the connections queued on the old listener to the new one instead of resetting
# them (net.ipv4.tcp_migrate_req, kernel 5.14 and later): turn that on.
tune_kernel() {
    local knob=/proc/sys/net/ipv4/tcp_migrate_req
    if [ -w "$knob" ] && [ "$(cat "$knob")" = 0 ]; then
        step "Letting a new gateway take over queued connections (net.ipv4.tcp_migrate_req=1)"
        echo 1 >"$knob"
        if [ -d /etc/sysctl.d ]; then
            echo "net.ipv4.tcp_migrate_req = 1" >/etc/sysctl.d/60-caas.conf
        fi
    fi
}

stop_gateway() {
    local run="$DATA_DIR/gateway/gateway.json" pid
    [ -f "$run" ] || return 0
    pid=$(json_field "$run" pid)
    if is_caasd "$pid"; then
        step "Stopping the gateway (pid $pid); it finishes the requests in flight"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 200); do is_caasd "$pid" || break; sleep 0.2; done
    fi
}

# --- uninstall ---------------------------------------------------------------------------------

uninstall_agent() {
    local dir=/var/lib/caas-agent pid=
    [ -n "$DATA_DIR_SET" ] && dir=$DATA_DIR
    if systemd_is_pid1 && [ -f "$AGENT_UNIT" ]; then
        step "Stopping and removing caas-agent.service"
        systemctl disable --now caas-agent.service || true
        rm -f "$AGENT_UNIT"
        systemctl daemon-reload
    fi
    [ -f "$dir/agent.pid" ] && pid=$(tr -dc 0-9 <"$dir/agent.pid")
    if [ -n "$pid" ] && is_caasd "$pid"; then
        step "Stopping the agent (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do is_caasd "$pid" || break; sleep 0.2; done
    fi
    rm -f "$dir/agent.pid"
    # An agent host's data dir (the control plane's own agent keeps DIR/agent/, done below once
    # caasd has stopped).
    if [ -f "$dir/identity.json" ]; then remove_containers_and_rules "$dir"; fi
}

# With caasd (or the agent) stopped, nothing serves the installation's containers: stop them
# (kept for a reinstall) and remove the firewall chains that confined them (CAAS-<cluster>-IN and
# -FWD, which stay while caasd merely stops, because its containers keep running then).
remove_containers_and_rules() {
    [ -d "$1" ] && [ -x "$BIN_DIR/caasd" ] || return 0
    step "Stopping the containers of $1's installation and removing its firewall rules"
    "$BIN_DIR/caasd" uninstall --data-dir "$1" || info "could not remove them all (see above)"
}

uninstall() {
    uninstall_agent
    if systemd_is_pid1 && [ -f "$UNIT" ]; then
        step "Stopping and removing caasd.service"
        systemctl disable --now caasd.service || true
        rm -f "$UNIT"
        systemctl daemon-reload
    fi
    local cluster=
    [ -f "$DATA_DIR/caasd.json" ] && cluster=$(json_field "$DATA_DIR/caasd.json" cluster_id)
    stop_background_caasd
    stop_gateway
    remove_containers_and_rules "$DATA_DIR"
    rm -f "$DATA_DIR/caasd.json"
    step "Removing $BIN_DIR/caas and $BIN_DIR/caasd, their completions and man pages"
    rm -f "$BIN_DIR/caas" "$BIN_DIR/caasd" "${COMPLETION_FILES[@]}" "$MAN_DIR"/caas.1 "$MAN_DIR"/caas-*.1
    info "Kept the data in $DATA_DIR and the app containers (stopped); remove them with:"
    info "  docker rm -f \$(docker ps -aq --filter label=caas.cluster${cluster:+=$cluster}); rm -rf $DATA_DIR"
}

main() {
    parse_args "$@"
    if [ "$MODE" = uninstall ]; then
        uninstall
        return
    fi
    install_packages
    start_docker
    if [ "$MODE" = agent ]; then
        # Agents build nothing and fetch their images from the control plane: no stack image.
        find_cargo
        build
        install_binaries
        start_agent
        return
    fi
    stack_image
    find_cargo
    if [ "$MODE" = deps-only ]; then
        install_test_packages
        step "Dependencies are ready"
        return
    fi
    build
    install_binaries
    install_buildpacks
    [ -n "$ETCD" ] && start_etcd
    [ "$MODE" = no-start ] && { step "Installed; not starting caasd (--no-start)"; return; }
    tune_kernel
    start_caasd
    login
    demo_image
    next_steps
}

# Sourcing this file (e.g. from .ci/run) only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
