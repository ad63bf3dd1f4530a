#!/usr/bin/env bash
# Share groups (KIP-932) with the Java KafkaShareConsumer (kafka-clients 4.4.0): two consumers
# share a topic exactly once, release, acquisition-lock timeout, reject and the delivery-count
# limit (ShareGroups.java).
#   compat/java-share/run.sh                 starts a dlog of its own (DLOG_BIN, default
#                                            target/release/dlog) with the settings below
#   BOOTSTRAP=host:port compat/java-share/run.sh   against a broker already running with
#                                            group.share.record.lock.duration.ms=$LOCK_MS and
#                                            group.share.delivery.count.limit=$DELIVERY_LIMIT
#                                            (e.g. a Kafka 4.4: KAFKA_VERSION=4.4.0 compat/kafka/start.sh)
# Prints one "RESULT <scenario> PASS|FAIL <detail>" line per scenario; exits 1 if any FAIL.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export LOCK_MS="${LOCK_MS:-3000}" DELIVERY_LIMIT="${DELIVERY_LIMIT:-3}"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/java-share.XXXXXX")"
broker_pid=""
cleanup() {
  [[ -n "$broker_pid" ]] && { kill -TERM "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null; }
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }
if [[ -z "${BOOTSTRAP:-}" ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export BOOTSTRAP="127.0.0.1:$port"
  "${DLOG_BIN:-$ROOT/target/release/dlog}" --listen "$BOOTSTRAP" --data-dir "$WORK_DIR/data" \
    --set "group.share.record.lock.duration.ms=$LOCK_MS" \
    --set "group.share.delivery.count.limit=$DELIVERY_LIMIT" >"$WORK_DIR/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 100); do port_open "$BOOTSTRAP" && break; sleep 0.1; done
fi
if ! port_open "$BOOTSTRAP"; then
  echo "RESULT java-share-bootstrap FAIL nothing accepts connections at $BOOTSTRAP"
  exit 1
fi

# Build once (offline first, online as the fallback), as compat/java/run.sh does.
cpf="$HERE/target/classpath.txt"
goals=(-B -q -f "$HERE/pom.xml" compile dependency:build-classpath "-Dmdep.outputFile=$cpf")
if ! { timeout 300 mvn -o "${goals[@]}" >"$WORK_DIR/build.log" 2>&1 \
       || timeout 900 mvn "${goals[@]}" >>"$WORK_DIR/build.log" 2>&1; }; then
  echo "RESULT java-share-build FAIL $(grep -m4 -E 'ERROR|error:' "$WORK_DIR/build.log" | tr '\n' ' ' | cut -c1-500)"
  exit 1
fi
echo "RESULT java-share-build PASS kafka-clients $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
timeout 600 java -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -Dorg.slf4j.simpleLogger.logFile=System.err -cp "$HERE/target/classes:$(cat "$cpf")" \
  dlog.compat.ShareGroups >"$WORK_DIR/share.out" 2>"$WORK_DIR/share.err"
rc=$?
grep '^RESULT ' "$WORK_DIR/share.out"
if [[ $rc -ne 0 ]] && ! grep -q '^RESULT .* FAIL' "$WORK_DIR/share.out"; then
  echo "RESULT java-share-run FAIL exit $rc: $(tail -n 5 "$WORK_DIR/share.err" | tr '\n' ' ' | cut -c1-500)"
fi
[[ $rc -eq 0 ]] || { [[ -n "$broker_pid" ]] && tail -n 20 "$WORK_DIR/broker.log"; exit 1; }
exit 0
