#!/usr/bin/env bash
# A private PostgreSQL cluster for development and tests, without Docker.
#
#   scripts/postgres.sh install   apt-get install Debian's postgresql if initdb/pg_ctl are missing
#   scripts/postgres.sh start     install if needed, initdb once, start, create role + database
#   scripts/postgres.sh stop      pg_ctl stop -m fast; a no-op when not running
#   scripts/postgres.sh status    exit 0 when running, 3 when not (pg_ctl's codes)
#   scripts/postgres.sh reset     stop and delete the cluster
#
# Environment overrides:
#   PG_PORT   TCP port on 127.0.0.1 (default 45432)
#   RUN_DIR   state directory (default <repo>/.run); the cluster lives in $RUN_DIR/postgres/data
#
# The server listens on 127.0.0.1 only; its unix socket is in the data dir. TCP logins
# need a password (scram-sha-256): role unique_numbers / password unique_numbers owns
# database unique_numbers (and may CREATE DATABASE, for template-cloned test databases, and
# CREATE ROLE, for the test that runs a worker under a role of its own).
# TLS is on (ssl = on) with a self-signed certificate made by openssl for 127.0.0.1 and
# localhost; clients choose with sslmode (the worker: DATABASE_SSLMODE). The certificate is
# copied to $RUN_DIR/postgres/root.crt, the sslrootcert for sslmode=verify-full.
# A cluster made before TLS was added gets it on the next `start` (a reload, not a restart).
# fsync and synchronous_commit keep their defaults (on).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"

PG_PORT="${PG_PORT:-45432}"
PG_HOST=127.0.0.1
PG_USER=unique_numbers
PG_PASSWORD=unique_numbers
PG_DB=unique_numbers
OS_USER=postgres # initdb and postgres refuse to run as root

log() { echo "postgres.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------- binaries

find_bindir() {
    local d
    # Debian's layout, newest major version first; then whatever pg_ctl is on PATH.
    # shellcheck disable=SC2012  # the paths are /usr/lib/postgresql/<major>/bin
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn) \
        "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

cmd_install() {
    if find_bindir >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "initdb/pg_ctl not found and there is no apt-get: install PostgreSQL"
    local sudo=()
    is_root || sudo=(sudo)
    log "installing Debian's postgresql with apt-get"
    # Debian's postinst would create and start a 'main' cluster on port 5432; we run our
    # own cluster, so ask postgresql-common not to (kept by --force-confold below).
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        "${sudo[@]}" mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" | "${sudo[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold postgresql >/dev/null
    find_bindir >/dev/null || die "postgresql installed but initdb/pg_ctl still not found"
}

BIN=""
need_bin() {
    cmd_install
    BIN="$(find_bindir)"
}

# ---------------------------------------------------------------- where the cluster lives

# As root, the server runs as the 'postgres' system user, which must be able to reach the
# data dir: every directory above it needs the x bit for that user. $RUN_DIR/postgres is
# normally fine (/work/..., /tmp/x/...), but not under a 0700 home such as /root. In that
# case the cluster goes to /var/tmp/unique-numbers-pg-<hash of $RUN_DIR> instead, and
# $RUN_DIR/postgres/ELSEWHERE says where.
PG_BASE=""
choose_base() {
    local wanted="$RUN_DIR/postgres"
    mkdir -p "$wanted"
    if ! is_root; then
        PG_BASE="$wanted"
        return 0
    fi
    ensure_os_user
    chown "$OS_USER:$OS_USER" "$wanted" 2>/dev/null || true
    if as_pg test -w "$wanted" -a -x "$wanted"; then
        PG_BASE="$wanted"
        rm -f "$wanted/ELSEWHERE"
        return 0
    fi
    local hash
    hash="$(printf '%s' "$RUN_DIR" | sha256sum | cut -c1-12)"
    PG_BASE="/var/tmp/unique-numbers-pg-$hash"
    mkdir -p "$PG_BASE"
    chown "$OS_USER:$OS_USER" "$PG_BASE"
    chmod 0700 "$PG_BASE"
    echo "$PG_BASE" >"$wanted/ELSEWHERE"
}

ensure_os_user() {
    if ! id -u "$OS_USER" >/dev/null 2>&1; then
        log "creating system user $OS_USER"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$OS_USER"
    fi
}

# Run a command as the user that owns the cluster, from a directory it can read.
as_pg() {
    if is_root; then
        (cd / && runuser -u "$OS_USER" -- "$@")
    else
        "$@"
    fi
}

setup_paths() {
    need_bin
    choose_base
    DATA="$PG_BASE/data"
    LOGFILE="$PG_BASE/postgres.log"
}

# ---------------------------------------------------------------- cluster

initdb_if_needed() {
    if [[ -f "$DATA/PG_VERSION" ]]; then
        local have want
        have="$(cat "$DATA/PG_VERSION")"
        want="$("$BIN/pg_ctl" --version | awk '{print $3}' | cut -d. -f1)"
        [[ "$have" == "$want" ]] \
            || die "$DATA was made by PostgreSQL $have but $BIN is $want: 'scripts/postgres.sh reset' to recreate it"
        return 0
    fi
    log "initdb $DATA ($("$BIN/pg_ctl" --version))"
    rm -rf "$DATA"
    as_pg mkdir -p "$DATA"
    as_pg chmod 0700 "$DATA"
    local locale=C.UTF-8
    locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' || locale=C
    # Local (unix socket, in the 0700 data dir: only the owner reaches it) trusts; TCP
    # needs a scram password. The superuser has no password and only the socket.
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --encoding=UTF8 --locale="$locale" \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_BASE/initdb.log" 2>&1 \
        || {
            cat "$PG_BASE/initdb.log" >&2
            die "initdb failed"
        }
    echo "include_if_exists = 'unique_numbers.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
}

# A self-signed certificate for the server (made once per cluster), and its public part
# where clients can read it.
ensure_certificate() {
    if ! as_pg test -s "$DATA/server.crt" || ! as_pg test -s "$DATA/server.key"; then
        command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the server's TLS certificate"
        log "making a self-signed TLS certificate for 127.0.0.1 ($DATA/server.crt)"
        as_pg openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
            -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
            -keyout "$DATA/server.key" -out "$DATA/server.crt" >/dev/null 2>&1 \
            || die "openssl could not make the server certificate"
        as_pg chmod 0600 "$DATA/server.key"
    fi
    as_pg cat "$DATA/server.crt" >"$RUN_DIR/postgres/root.crt.tmp"
    mv "$RUN_DIR/postgres/root.crt.tmp" "$RUN_DIR/postgres/root.crt"
}

write_config() {
    # Regenerated on every start, so PG_PORT changes take effect.
    ensure_certificate
    as_pg tee "$DATA/unique_numbers.conf" >/dev/null <<EOF
# Generated by scripts/postgres.sh; edit the script, not this file.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$DATA'
max_connections = 200
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
# fsync and synchronous_commit stay at their defaults (on): the worker's guarantees
# are tested against a durable server.
log_min_messages = warning
log_connections = off
# TLS for clients that ask for it (sslmode=require, verify-full ...); a plain connection is
# still accepted (sslmode=disable), as pg_hba.conf below does not say hostssl.
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
    as_pg tee "$DATA/pg_hba.conf" >/dev/null <<EOF
# Generated by scripts/postgres.sh.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
EOF
}

# A running cluster gets the configuration of this script (TLS, for one made before it) by a
# reload, which new connections see and open ones do not notice. A setting that needs a
# restart (the port) waits for the next start.
refresh_config() {
    local before after
    before="$(as_pg cat "$DATA/unique_numbers.conf" "$DATA/pg_hba.conf" 2>/dev/null | sha256sum)"
    write_config
    after="$(as_pg cat "$DATA/unique_numbers.conf" "$DATA/pg_hba.conf" | sha256sum)"
    if [[ "$before" != "$after" ]]; then
        log "configuration changed: reloading the running server"
        as_pg "$BIN/pg_ctl" reload -D "$DATA" -s
    fi
}

running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_pg "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

port_open() {
    (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null
}

psql_super() {
    as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DATA" -p "$PG_PORT" -U postgres -d postgres
}

ensure_role_and_db() {
    psql_super <<EOF
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
        CREATE ROLE $PG_USER LOGIN;
    END IF;
END
\$\$;
ALTER ROLE $PG_USER WITH LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
EOF
    # The real path a client takes: TCP with the password.
    PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 "$BIN/psql" -X -q -At \
        "postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB" -c 'select 1' >/dev/null \
        || die "cannot log in as $PG_USER over TCP on $PG_HOST:$PG_PORT"
}

# ---------------------------------------------------------------- commands

cmd_start() {
    setup_paths
    if running; then
        refresh_config
        ensure_role_and_db
        log "already running on $PG_HOST:$PG_PORT ($DATA)"
        return 0
    fi
    if port_open; then
        die "$PG_HOST:$PG_PORT is already in use by another process (not this cluster). Stop it or set PG_PORT."
    fi
    initdb_if_needed
    write_config
    log "starting PostgreSQL on $PG_HOST:$PG_PORT, data $DATA, log $LOGFILE"
    if ! as_pg "$BIN/pg_ctl" start -D "$DATA" -l "$LOGFILE" -w -t 60 -s; then
        log "---- last lines of $LOGFILE ----"
        tail -n 30 "$LOGFILE" >&2 || true
        die "PostgreSQL did not start"
    fi
    ensure_role_and_db
    log "ready: postgresql://$PG_USER:***@$PG_HOST:$PG_PORT/$PG_DB"
}

cmd_stop() {
    if ! find_bindir >/dev/null; then
        return 0 # never installed, so nothing runs
    fi
    setup_paths
    if ! running; then
        return 0
    fi
    log "stopping PostgreSQL ($DATA)"
    as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 60 -s
    log "stopped"
}

cmd_status() {
    if ! find_bindir >/dev/null; then
        echo "postgres not installed"
        return 3
    fi
    setup_paths
    if running; then
        echo "postgres running on $PG_HOST:$PG_PORT ($DATA)"
        return 0
    fi
    echo "postgres not running"
    return 3
}

cmd_reset() {
    cmd_stop
    setup_paths
    log "deleting $DATA"
    rm -rf "$DATA"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    *)
        echo "usage: $0 install|start|stop|status|reset" >&2
        exit 2
        ;;
esac
