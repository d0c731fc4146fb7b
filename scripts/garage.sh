#!/usr/bin/env bash
# Runs a single-node Garage (S3-compatible object store) on loopback for the tests.
#
#   eval "$(scripts/garage.sh start)"   # start (or reuse) it and export PLUGSTORE_TEST_S3_*
#   scripts/garage.sh env               # print the export lines of the running instance
#   scripts/garage.sh stop              # stop it (data is kept for the next start)
#   scripts/garage.sh purge             # stop it and delete its state directory
#
# stdout carries only the `export` line; everything else goes to stderr.
#
# Environment:
#   PLUGSTORE_GARAGE_DIR         state directory (default ~/.cache/plugstore-garage)
#   PLUGSTORE_GARAGE_S3_PORT     S3 API port (default 3900)
#   PLUGSTORE_GARAGE_RPC_PORT    cluster RPC port (default 3901)
#   PLUGSTORE_GARAGE_ADMIN_PORT  admin API port (default 3903)
#   GARAGE                       garage binary to use (default: PATH, then ~/.cargo/bin)
set -euo pipefail

STATE_DIR="${PLUGSTORE_GARAGE_DIR:-$HOME/.cache/plugstore-garage}"
S3_PORT="${PLUGSTORE_GARAGE_S3_PORT:-3900}"
RPC_PORT="${PLUGSTORE_GARAGE_RPC_PORT:-3901}"
ADMIN_PORT="${PLUGSTORE_GARAGE_ADMIN_PORT:-3903}"
CONFIG="$STATE_DIR/garage.toml"
PID_FILE="$STATE_DIR/garage.pid"
LOG_FILE="$STATE_DIR/garage.log"
KEY_NAME=plugstore-test
BUCKET=plugstore-test
REGION=garage
# Where a background `cargo install garage` (started by machine setup) logs its progress.
INSTALL_LOG="${PLUGSTORE_GARAGE_INSTALL_LOG:-/tmp/garage-install.log}"

log() { printf 'garage.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Sets GARAGE to a usable binary, installing Garage with cargo if there is none.
find_garage() {
    if [[ -n "${GARAGE:-}" ]]; then
        [[ -x "$GARAGE" ]] || GARAGE="$(command -v "$GARAGE" || true)"
        [[ -n "$GARAGE" ]] || die "GARAGE is set but not executable"
        return
    fi
    GARAGE="$(command -v garage || true)"
    [[ -n "$GARAGE" ]] && return
    GARAGE="$HOME/.cargo/bin/garage"
    if [[ -x "$GARAGE" ]]; then return; fi

    if pgrep -u "$(id -u)" -f 'cargo install .*garage' >/dev/null 2>&1; then
        log "waiting for the running 'cargo install garage' to finish (log: $INSTALL_LOG)"
        while pgrep -u "$(id -u)" -f 'cargo install .*garage' >/dev/null 2>&1; do
            sleep 10
        done
        [[ -x "$GARAGE" ]] || die "the running 'cargo install garage' did not produce $GARAGE; see $INSTALL_LOG"
        return
    fi
    log "garage not found; running 'cargo install garage --locked' (this takes a while)"
    cargo install garage --locked >&2 || die "cargo install garage failed"
    [[ -x "$GARAGE" ]] || die "cargo install garage did not produce $GARAGE"
}

g() { "$GARAGE" -c "$CONFIG" "$@"; }

# Writes the configuration once; the RPC secret and admin token are generated on first use.
write_config() {
    mkdir -p "$STATE_DIR/meta" "$STATE_DIR/data"
    chmod 700 "$STATE_DIR"
    if [[ ! -s "$STATE_DIR/rpc_secret" ]]; then
        (umask 077 && openssl rand -hex 32 >"$STATE_DIR/rpc_secret")
    fi
    if [[ ! -s "$STATE_DIR/admin_token" ]]; then
        (umask 077 && openssl rand -hex 32 >"$STATE_DIR/admin_token")
    fi
    local rpc_secret admin_token
    rpc_secret="$(cat "$STATE_DIR/rpc_secret")"
    admin_token="$(cat "$STATE_DIR/admin_token")"
    (
        umask 077
        cat >"$CONFIG.new" <<EOF
# Written by scripts/garage.sh; changes are overwritten on the next start.
metadata_dir = "$STATE_DIR/meta"
data_dir = "$STATE_DIR/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$rpc_secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
admin_token = "$admin_token"
EOF
        mv "$CONFIG.new" "$CONFIG"
    )
}

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid that now belongs to something else.
    ps -p "$pid" -o command= 2>/dev/null | grep -q garage || return 1
    echo "$pid"
}

s3_port_answers() {
    # Any HTTP answer (Garage says 403 to an anonymous request) means the S3 API is up.
    curl -s -o /dev/null -m 2 "http://127.0.0.1:$S3_PORT/" 2>/dev/null
}

start_server() {
    if running_pid >/dev/null; then
        log "garage already running (pid $(running_pid))"
        return
    fi
    write_config
    log "starting garage ($("$GARAGE" --version 2>/dev/null || echo unknown version)), log: $LOG_FILE"
    # setsid: the server must outlive the shell that ran `eval "$(garage.sh start)"`.
    RUST_LOG="${RUST_LOG:-garage=info}" setsid "$GARAGE" -c "$CONFIG" server \
        >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"

    local deadline=$((SECONDS + 60))
    until g status >/dev/null 2>&1 && s3_port_answers; do
        if ! running_pid >/dev/null; then
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "garage exited during startup (ports $S3_PORT/$RPC_PORT/$ADMIN_PORT taken?); log: $LOG_FILE"
        fi
        ((SECONDS < deadline)) || die "garage did not become ready within 60 s; log: $LOG_FILE"
        sleep 0.5
    done
}

# Gives the single node a role, once.
ensure_layout() {
    if g layout show 2>/dev/null | grep -qE 'Current cluster layout version: [1-9]'; then
        return
    fi
    local node_id
    node_id="$(g node id -q | cut -d@ -f1)"
    log "assigning the storage layout to node ${node_id:0:16}"
    # The capacity only weighs nodes against each other; Garage does not enforce it.
    g layout assign -z dc1 -c 1GB "$node_id" >/dev/null
    g layout apply --version 1 >/dev/null
}

ensure_key_and_bucket() {
    if ! g key info "$KEY_NAME" >/dev/null 2>&1; then
        log "creating key $KEY_NAME"
        g key create "$KEY_NAME" >/dev/null
    fi
    if ! g bucket info "$BUCKET" >/dev/null 2>&1; then
        log "creating bucket $BUCKET"
        g bucket create "$BUCKET" >/dev/null
    fi
    # Idempotent: granting an existing permission again changes nothing.
    g bucket allow --read --write --owner "$BUCKET" --key "$KEY_NAME" >/dev/null
}

print_exports() {
    local key_id secret
    key_id="$(g key info "$KEY_NAME" --key-id | tr -d '[:space:]')"
    secret="$(g key info "$KEY_NAME" --secret-key | tr -d '[:space:]')"
    [[ -n "$key_id" && -n "$secret" ]] || die "could not read the credentials of key $KEY_NAME"
    echo "export PLUGSTORE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT" \
        "PLUGSTORE_TEST_S3_BUCKET=$BUCKET" \
        "PLUGSTORE_TEST_S3_REGION=$REGION" \
        "PLUGSTORE_TEST_S3_ACCESS_KEY_ID=$key_id" \
        "PLUGSTORE_TEST_S3_SECRET_ACCESS_KEY=$secret"
}

stop_server() {
    local pid
    if ! pid="$(running_pid)"; then
        log "garage is not running"
        rm -f "$PID_FILE"
        return
    fi
    log "stopping garage (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "garage did not stop within 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$PID_FILE"
}

case "${1:-}" in
start)
    find_garage
    start_server
    ensure_layout
    ensure_key_and_bucket
    print_exports
    ;;
env)
    find_garage
    running_pid >/dev/null || die "garage is not running; use: $0 start"
    print_exports
    ;;
stop)
    stop_server
    ;;
purge)
    stop_server
    log "deleting $STATE_DIR"
    rm -rf "$STATE_DIR"
    ;;
*)
    echo "usage: $0 start|env|stop|purge" >&2
    echo '       eval "$('"$0"' start)"' >&2
    exit 2
    ;;
esac
