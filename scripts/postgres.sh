#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on loopback for the tests, and prints its URL.
#
#   url="$(scripts/postgres.sh)"
#
# Order of attempts: the URL in PLUGSTORE_TEST_POSTGRES_URL (or the default below) already
# works; a Debian cluster exists and only needs starting; PostgreSQL is installed from Debian's
# packages (root only) and its cluster started. The `postgres` role gets a known password so the
# URL works whether the server trusts loopback or asks for a password.
# stdout carries only the URL; diagnostics go to stderr. Exits non-zero when nothing works.
set -euo pipefail

PASSWORD=plugstore
URL="${PLUGSTORE_TEST_POSTGRES_URL:-postgres://postgres:$PASSWORD@127.0.0.1:5432/postgres}"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

reachable() {
    command -v psql >/dev/null 2>&1 && psql "$URL" -qtAc 'SELECT 1' >/dev/null 2>&1
}

start_debian_clusters() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 1
    local found=1
    while read -r version name _; do
        [[ -n "$version" ]] || continue
        found=0
        log "starting cluster $version/$name"
        pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2 2>&1 || true
    done < <(pg_lsclusters --no-header 2>/dev/null)
    return $found
}

set_password() {
    # Peer authentication over the socket as the postgres OS user needs no password.
    if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
        su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD '$PASSWORD'\"" >&2 2>&1 || true
    fi
}

wait_until_reachable() {
    for _ in $(seq 1 30); do
        reachable && return 0
        sleep 1
    done
    return 1
}

if reachable; then
    echo "$URL"
    exit 0
fi

if start_debian_clusters; then
    set_password
    if wait_until_reachable; then
        echo "$URL"
        exit 0
    fi
fi

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL not reachable at $URL; installing it from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql postgresql-client >&2
    start_debian_clusters || log "no cluster was created by the package"
    set_password
    if wait_until_reachable; then
        echo "$URL"
        exit 0
    fi
fi

log "cannot reach or provision PostgreSQL at $URL; set PLUGSTORE_TEST_POSTGRES_URL to a server the tests may create databases on"
exit 1
