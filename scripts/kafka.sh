#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller in one JVM) without Docker.
#
#   scripts/kafka.sh fetch    fetch the broker jars from Maven Central into .run/kafka/libs
#   scripts/kafka.sh start    fetch if needed, format the data dir once, start, wait until ready
#   scripts/kafka.sh stop     SIGTERM, wait, then SIGKILL; a no-op when not running
#   scripts/kafka.sh status   exit 0 when running (and print where), 1 when not
#   scripts/kafka.sh reset    stop and delete the data dir (topics, offsets, everything)
#
# Environment overrides:
#   KAFKA_VERSION          org.apache.kafka:kafka_2.13 version (default 4.1.1)
#   KAFKA_PORT             client listener on 127.0.0.1 (default 39092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1 (default 39093)
#   RUN_DIR                state directory (default <repo>/.run)
#   KAFKA_LIBS_DIR         where the broker jars are (default $RUN_DIR/kafka/libs); point a
#                          second broker (another RUN_DIR and ports) at the first one's jars
#                          to skip the download
#   KAFKA_HEAP_OPTS        JVM heap options (default -Xms256m -Xmx768m)
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 120)
#
# Layout under $RUN_DIR/kafka: libs/ (jars), data/ (log.dirs, KRaft metadata),
# logs/ (server.log via log4j2, kafka.out = JVM stdout/stderr), server.properties,
# log4j2.properties, tools-log4j2.properties, kafka.pid.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-39092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-39093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
HOST=127.0.0.1

KAFKA_DIR="$RUN_DIR/kafka"
LIBS="${KAFKA_LIBS_DIR:-$KAFKA_DIR/libs}"
DATA="$KAFKA_DIR/data"
LOGS="$KAFKA_DIR/logs"
CONFIG="$KAFKA_DIR/server.properties"
LOG4J="$KAFKA_DIR/log4j2.properties"
TOOLS_LOG4J="$KAFKA_DIR/tools-log4j2.properties"
PIDFILE="$KAFKA_DIR/kafka.pid"
POM="$ROOT/scripts/kafka/pom.xml"

# Largest record the broker accepts. The project's records go up to 16 MiB (16777216 bytes)
# of value; a record batch adds a 61-byte header plus per-record key/headers/varints, so
# leave 1 MiB of room: 17 MiB.
MAX_MESSAGE_BYTES=17825792

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites

ensure_java() {
    local need_java=0 need_mvn=0
    if command -v java >/dev/null 2>&1; then
        local major
        major="$(java -XshowSettings:properties -version 2>&1 \
            | awk -F'= ' '/java.specification.version/ {print $2}' | cut -d. -f1)"
        if [[ -z "$major" || "$major" -lt 17 ]]; then
            log "java ${major:-?} found, Kafka 4.x needs 17+"
            need_java=1
        fi
    else
        need_java=1
    fi
    if [[ "${1:-}" == "mvn" ]] && ! command -v mvn >/dev/null 2>&1; then
        need_mvn=1
    fi
    if ((need_java || need_mvn)); then
        local pkgs=()
        ((need_java)) && pkgs+=(openjdk-17-jre-headless)
        ((need_mvn)) && pkgs+=(maven)
        command -v apt-get >/dev/null 2>&1 || die "need ${pkgs[*]} and there is no apt-get"
        log "installing ${pkgs[*]} with apt-get"
        local sudo=()
        [[ "$(id -u)" -ne 0 ]] && sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
            "${pkgs[@]}" >/dev/null
        # Debian's update-alternatives may still point java at an older JDK.
        if [[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]] && ((need_java)); then
            export PATH="/usr/lib/jvm/java-17-openjdk-amd64/bin:$PATH"
        fi
    fi
}

# ---------------------------------------------------------------- fetch

libs_present() {
    [[ -f "$LIBS/.complete-$KAFKA_VERSION" && -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

cmd_fetch() {
    if libs_present; then
        return 0
    fi
    ensure_java mvn
    log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies (Maven Central, cached in ~/.m2)"
    mkdir -p "$KAFKA_DIR"
    local tmp
    mkdir -p "$(dirname "$LIBS")"
    tmp="$(mktemp -d "$LIBS.tmp.XXXXXX")"
    # -B: no colours/progress; dependency:copy-dependencies copies the runtime closure.
    if ! mvn -B -q -f "$POM" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
        cat "$tmp.log" >&2
        rm -rf "$tmp" "$tmp.log"
        die "maven could not fetch Kafka $KAFKA_VERSION"
    fi
    rm -f "$tmp.log"
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
    touch "$tmp/.complete-$KAFKA_VERSION"
    # Swap in atomically so an interrupted fetch never leaves a half-filled libs/.
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    log "$(find "$LIBS" -name '*.jar' | wc -l) jars in $LIBS"
}

# ---------------------------------------------------------------- config

write_config() {
    mkdir -p "$DATA" "$LOGS"
    cat >"$CONFIG" <<EOF
# Generated by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA

num.partitions=4
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0

# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer partitions for the internal topics than the defaults (50) make the first
# consumer group / transaction on a fresh node ready sooner.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4

# Records of up to 16 MiB: see MAX_MESSAGE_BYTES in scripts/kafka.sh.
message.max.bytes=$MAX_MESSAGE_BYTES
replica.fetch.max.bytes=$MAX_MESSAGE_BYTES
# A produce request may carry several such records; 100 MiB is Kafka's default.
socket.request.max.bytes=104857600

num.network.threads=3
num.io.threads=8
num.recovery.threads.per.data.dir=1
log.retention.hours=168
EOF

    cat >"$LOG4J" <<EOF
# Broker logging (log4j2): to $LOGS/server.log, never the terminal.
status = warn
name = kafka-dev
# Kafka's own shutdown hook logs the shutdown; log4j's would stop logging midway.
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $LOGS/server.log
appender.file.filePattern = $LOGS/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
EOF

    cat >"$TOOLS_LOG4J" <<EOF
# Logging of StorageTool / TopicCommand run by scripts/kafka.sh: warnings to stderr.
status = warn
name = kafka-tools
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
}

run_tool() {
    java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
        -cp "$LIBS/*" "$@"
}

format_if_needed() {
    if [[ -f "$DATA/meta.properties" ]]; then
        local formatted
        formatted="$(cat "$DATA/.formatted-by" 2>/dev/null || true)"
        if [[ -n "$formatted" && "$formatted" != "$KAFKA_VERSION controller=$KAFKA_CONTROLLER_PORT" ]]; then
            log "warning: $DATA was formatted by '$formatted', now running '$KAFKA_VERSION controller=$KAFKA_CONTROLLER_PORT';"
            log "         if the broker fails to start, run 'scripts/kafka.sh reset' (deletes all topics)"
        fi
        return 0
    fi
    local cluster_id
    cluster_id="$(run_tool kafka.tools.StorageTool random-uuid)"
    log "formatting $DATA (cluster id $cluster_id)"
    run_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$CONFIG" >"$LOGS/format.log" 2>&1 \
        || { cat "$LOGS/format.log" >&2; die "StorageTool format failed"; }
    echo "$KAFKA_VERSION controller=$KAFKA_CONTROLLER_PORT" >"$DATA/.formatted-by"
}

# ---------------------------------------------------------------- process helpers

read_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # Only our broker: the pid must be alive and still be a kafka.Kafka JVM on our config
    # (a stale pid file may name a pid since reused by something else).
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $CONFIG" || return 1
    echo "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

broker_ready() {
    # A real round trip through the admin API: the broker is registered, unfenced and
    # serves metadata. Short timeouts so one call never hangs for a minute.
    local cfg="$KAFKA_DIR/admin-probe.properties"
    printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=8000\n' >"$cfg"
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
        --command-config "$cfg" --list >/dev/null 2>"$LOGS/ready-probe.err"
}

log_tail() {
    log "---- last lines of $LOGS/server.log ----"
    tail -n 40 "$LOGS/server.log" >&2 2>/dev/null || true
    if [[ -s "$LOGS/kafka.out" ]]; then
        log "---- last lines of $LOGS/kafka.out ----"
        tail -n 20 "$LOGS/kafka.out" >&2 || true
    fi
}

# ---------------------------------------------------------------- commands

cmd_status() {
    local pid
    if pid="$(read_pid)"; then
        if port_open "$KAFKA_PORT"; then
            echo "kafka $KAFKA_VERSION running (pid $pid) on $HOST:$KAFKA_PORT"
        else
            echo "kafka process running (pid $pid) but $HOST:$KAFKA_PORT not accepting connections"
        fi
        return 0
    fi
    echo "kafka not running"
    return 1
}

cmd_start() {
    local pid
    if pid="$(read_pid)"; then
        if port_open "$KAFKA_PORT" && broker_ready; then
            log "already running (pid $pid) on $HOST:$KAFKA_PORT"
            return 0
        fi
        log "process $pid exists but the broker is not ready yet; waiting"
    else
        rm -f "$PIDFILE"
        for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
            if port_open "$p"; then
                die "$HOST:$p is already in use by another process (not this repo's broker: no live pid in $PIDFILE). Stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT."
            fi
        done
        ensure_java
        cmd_fetch
        write_config
        format_if_needed
        log "starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT), logs in $LOGS"
        # setsid: its own session and process group, so a Ctrl-C in the terminal that ran
        # `make run` reaches the worker, not the broker. The child writes its own pid
        # and then execs the JVM, so the pid file names the java process itself.
        rm -f "$PIDFILE"
        # shellcheck disable=SC2016,SC2086  # $$/"$@" expand in the child; KAFKA_HEAP_OPTS is a flag list
        setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
            java $KAFKA_HEAP_OPTS \
            -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
            -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$LOGS" \
            -cp "$LIBS/*" kafka.Kafka "$CONFIG" \
            >"$LOGS/kafka.out" 2>&1 </dev/null &
        local i
        for ((i = 0; i < 50; i++)); do
            [[ -s "$PIDFILE" ]] && break
            sleep 0.1
        done
        pid="$(cat "$PIDFILE" 2>/dev/null || true)"
        [[ "$pid" =~ ^[0-9]+$ ]] || die "could not start java (see $LOGS/kafka.out)"
    fi

    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail
            rm -f "$PIDFILE"
            die "Kafka exited during startup (see $LOGS)"
        fi
        if port_open "$KAFKA_PORT" && broker_ready; then
            log "ready on $HOST:$KAFKA_PORT (pid $pid)"
            return 0
        fi
        sleep 0.5
    done
    log_tail
    [[ -s "$LOGS/ready-probe.err" ]] && { log "---- last readiness probe ----"; tail -n 5 "$LOGS/ready-probe.err" >&2; }
    die "Kafka not ready on $HOST:$KAFKA_PORT after ${KAFKA_START_TIMEOUT}s (still running as pid $pid; 'scripts/kafka.sh stop' to end it)"
}

cmd_stop() {
    local pid
    if ! pid="$(read_pid)"; then
        rm -f "$PIDFILE"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 600; i++)); do # up to 60 s for a controlled shutdown
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still running after 60s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$PIDFILE"
    log "stopped"
}

cmd_reset() {
    cmd_stop
    log "deleting $DATA"
    rm -rf "$DATA"
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    *)
        echo "usage: $0 fetch|start|stop|status|reset" >&2
        exit 2
        ;;
esac
