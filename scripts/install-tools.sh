#!/usr/bin/env bash
# Installs the command-line tools the tests use when they are missing (Debian packages; root).
set -euo pipefail

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The scanner tests fetch real third-party WebAssembly from the npm registry.
command -v npm >/dev/null 2>&1 || need+=(npm)

if [[ ${#need[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "install-tools.sh: missing ${need[*]}; install them with your package manager" >&2
        exit 1
    fi
    echo "install-tools.sh: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${need[@]}" >&2
fi
