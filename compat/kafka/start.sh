#!/usr/bin/env bash
# Usage: compat/kafka/start.sh PORT DATA_DIR
# Starts a real single-node Apache Kafka (KRaft, broker+controller, node.id=1) in the background:
#   client listener PLAINTEXT://127.0.0.1:PORT, controller listener 127.0.0.1:PORT+1.
# Files in DATA_DIR: server.properties, cluster.id, kraft-logs/, kafka.log, kafka.pid.
# Waits (bounded by START_TIMEOUT, default 60 s) until PORT answers; else prints the log tail, exits 1.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ne 2 ]]; then echo "usage: $0 PORT DATA_DIR" >&2; exit 2; fi
PORT="$1"
CPORT=$((PORT + 1))
mkdir -p "$2"
DATA_DIR="$(cd "$2" && pwd)"
PIDFILE="$DATA_DIR/kafka.pid"
LOG="$DATA_DIR/kafka.log"
TIMEOUT="${START_TIMEOUT:-60}"

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  if port_open "$PORT"; then
    echo "kafka already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    exit 0
  fi
  echo "start.sh: pid $(cat "$PIDFILE") from $PIDFILE is alive but port $PORT does not answer; run stop.sh first" >&2
  exit 1
fi
for p in "$PORT" "$CPORT"; do
  if port_open "$p"; then echo "start.sh: 127.0.0.1:$p is already in use" >&2; exit 1; fi
done

"$HERE/install.sh" >/dev/null
# KAFKA_VERSION (env): a release installed by install.sh next to the pinned one.
PINNED="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
if [[ "${KAFKA_VERSION:-$PINNED}" == "$PINNED" ]]; then LIB="$HERE/lib"; else LIB="$HERE/lib-$KAFKA_VERSION"; fi
CP="$(cat "$LIB/classpath.txt")"
JAVA_OPTS=(-Xmx1g -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$HERE/log4j2.xml")
# KAFKA_JAVA_OPTS_EXTRA (env): more JVM options, space-separated (e.g. a -D system property).
if [[ -n "${KAFKA_JAVA_OPTS_EXTRA:-}" ]]; then read -r -a extra_opts <<<"$KAFKA_JAVA_OPTS_EXTRA"; JAVA_OPTS+=("${extra_opts[@]}"); fi

cat > "$DATA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR/kraft-logs
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
PROPS
# KAFKA_EXTRA_PROPS (env): more server properties, one per line (e.g. group.share.* settings).
if [[ -n "${KAFKA_EXTRA_PROPS:-}" ]]; then printf '%s\n' "$KAFKA_EXTRA_PROPS" >> "$DATA_DIR/server.properties"; fi

# Format storage once (the cluster id is kept so a restart reuses the data).
if [[ ! -f "$DATA_DIR/cluster.id" ]]; then
  timeout 60 java -Xmx256m -cp "$CP" "-Dlog4j2.configurationFile=$HERE/log4j2.xml" \
    kafka.tools.StorageTool random-uuid 2>>"$LOG" | tail -n1 > "$DATA_DIR/cluster.id.tmp"
  [[ -s "$DATA_DIR/cluster.id.tmp" ]] || { echo "start.sh: could not generate a cluster id" >&2; exit 1; }
  mv "$DATA_DIR/cluster.id.tmp" "$DATA_DIR/cluster.id"
fi
if ! timeout 60 java -Xmx256m -cp "$CP" "-Dlog4j2.configurationFile=$HERE/log4j2.xml" \
    kafka.tools.StorageTool format --ignore-formatted -t "$(cat "$DATA_DIR/cluster.id")" \
    -c "$DATA_DIR/server.properties" ${KAFKA_FORMAT_ARGS:-} >>"$LOG" 2>&1; then
  echo "start.sh: storage format failed; log tail:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi

echo "=== starting kafka on 127.0.0.1:$PORT (controller $CPORT) at $(date -u +%FT%TZ)" >>"$LOG"
nohup java "${JAVA_OPTS[@]}" -cp "$CP" kafka.Kafka "$DATA_DIR/server.properties" \
  >>"$LOG" 2>&1 </dev/null &
PID=$!
echo "$PID" > "$PIDFILE"

deadline=$((SECONDS + TIMEOUT))
while (( SECONDS < deadline )); do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "start.sh: kafka (pid $PID) exited during startup; log tail:" >&2
    tail -n 60 "$LOG" >&2
    rm -f "$PIDFILE"
    exit 1
  fi
  if port_open "$PORT"; then
    echo "kafka started (pid $PID) on 127.0.0.1:$PORT, data in $DATA_DIR"
    exit 0
  fi
  sleep 0.5
done
echo "start.sh: kafka did not answer on 127.0.0.1:$PORT within ${TIMEOUT}s; log tail:" >&2
tail -n 60 "$LOG" >&2
kill "$PID" 2>/dev/null || true
exit 1
