#!/usr/bin/env bash
# The servers the worker and its tests need: Kafka and PostgreSQL.
#
#   scripts/services.sh up     start both (in parallel), write $RUN_DIR/env
#   scripts/services.sh down   stop both
#   scripts/services.sh env    print the environment (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL)
#   scripts/services.sh status
#
# `. .run/env` after `up` gives a shell the two variables.
#
# Which servers:
# - If KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL are both set and both reachable, they are
#   used as they are and nothing is started (your own servers).
# - Else, with SERVICES_BACKEND=docker, or =auto (the default) and a Docker engine that
#   answers `docker info`: `docker compose up -d --wait kafka postgres` (docker-compose.yml).
# - Else (the usual case, and CI's): local processes, scripts/kafka.sh and scripts/postgres.sh.
#
# Environment overrides: RUN_DIR, KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_VERSION, PG_PORT,
# SERVICES_BACKEND=auto|local|docker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
export RUN_DIR

KAFKA_PORT="${KAFKA_PORT:-39092}"
PG_PORT="${PG_PORT:-45432}"
SERVICES_BACKEND="${SERVICES_BACKEND:-auto}"
ENV_FILE="$RUN_DIR/env"
BACKEND_FILE="$RUN_DIR/services-backend"

LOCAL_KAFKA="127.0.0.1:$KAFKA_PORT"
LOCAL_DB="postgresql://unique_numbers:unique_numbers@127.0.0.1:$PG_PORT/unique_numbers"

log() { echo "services.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

tcp_open() { # host port
    timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# host and port of the first server in a Kafka bootstrap list, e.g. "h1:9092,h2:9092".
kafka_reachable() {
    local first="${1%%,*}"
    first="${first#*://}"
    local host="${first%:*}" port="${first##*:}"
    [[ -n "$host" && "$port" =~ ^[0-9]+$ ]] && tcp_open "$host" "$port"
}

db_reachable() {
    local hostport
    hostport="$(python3 -c '
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or 5432)
' "$1" 2>/dev/null)" || return 1
    # shellcheck disable=SC2086  # "host port"
    tcp_open $hostport
}

write_env() { # bootstrap database_url
    local tmp="$ENV_FILE.tmp.$$"
    {
        echo "# Written by scripts/services.sh up; source it: . .run/env"
        echo "export KAFKA_BOOTSTRAP_SERVERS=$1"
        echo "export DATABASE_URL=$2"
    } >"$tmp"
    mv "$tmp" "$ENV_FILE"
}

docker_ok() {
    command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1 \
        && docker compose version >/dev/null 2>&1
}

pick_backend() {
    case "$SERVICES_BACKEND" in
        local | docker) echo "$SERVICES_BACKEND" ;;
        auto) if docker_ok; then echo docker; else echo local; fi ;;
        *) die "SERVICES_BACKEND must be auto, local or docker (not '$SERVICES_BACKEND')" ;;
    esac
}

up_local() {
    local kafka_pid pg_pid rc=0
    # In parallel: Kafka's first start is a Maven fetch plus a JVM; PostgreSQL may need an
    # apt-get install. Each script prefixes its own messages.
    bash "$ROOT/scripts/kafka.sh" start &
    kafka_pid=$!
    bash "$ROOT/scripts/postgres.sh" start &
    pg_pid=$!
    wait "$kafka_pid" || {
        rc=$?
        log "kafka failed to start (exit $rc)"
    }
    wait "$pg_pid" || {
        rc=$?
        log "postgres failed to start (exit $rc)"
    }
    return "$rc"
}

up_docker() {
    log "Docker engine found: docker compose up -d --wait kafka postgres"
    (cd "$ROOT" && docker compose up -d --wait kafka postgres)
}

cmd_up() {
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" && -n "${DATABASE_URL:-}" ]]; then
        if kafka_reachable "$KAFKA_BOOTSTRAP_SERVERS" && db_reachable "$DATABASE_URL"; then
            log "using the servers already set in the environment; starting nothing"
            write_env "$KAFKA_BOOTSTRAP_SERVERS" "$DATABASE_URL"
            echo external >"$BACKEND_FILE"
            return 0
        fi
        log "KAFKA_BOOTSTRAP_SERVERS/DATABASE_URL are set but not both reachable; starting local servers"
    fi
    local backend start=$SECONDS
    backend="$(pick_backend)"
    if [[ "$backend" == docker ]]; then
        up_docker
    else
        up_local
    fi
    echo "$backend" >"$BACKEND_FILE"
    write_env "$LOCAL_KAFKA" "$LOCAL_DB"
    log "up ($backend) in $((SECONDS - start))s; environment in $ENV_FILE"
}

cmd_down() {
    local backend
    backend="$(cat "$BACKEND_FILE" 2>/dev/null || echo local)"
    if [[ "$backend" == docker ]]; then
        (cd "$ROOT" && docker compose stop kafka postgres)
    fi
    # Local servers are stopped whatever the last `up` chose: both scripts only ever stop
    # this repo's own processes and are no-ops when those are not running. Servers named
    # by your environment (backend "external") are never touched.
    local kafka_pid pg_pid rc=0
    bash "$ROOT/scripts/kafka.sh" stop &
    kafka_pid=$!
    bash "$ROOT/scripts/postgres.sh" stop &
    pg_pid=$!
    wait "$kafka_pid" || rc=$?
    wait "$pg_pid" || rc=$?
    return "$rc"
}

cmd_env() {
    if [[ -f "$ENV_FILE" ]]; then
        grep '^export ' "$ENV_FILE"
    else
        echo "export KAFKA_BOOTSTRAP_SERVERS=$LOCAL_KAFKA"
        echo "export DATABASE_URL=$LOCAL_DB"
    fi
}

cmd_status() {
    local rc=0
    bash "$ROOT/scripts/kafka.sh" status || rc=1
    bash "$ROOT/scripts/postgres.sh" status || rc=1
    return "$rc"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|env|status" >&2
        exit 2
        ;;
esac
