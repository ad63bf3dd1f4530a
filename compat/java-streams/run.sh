#!/usr/bin/env bash
# A real Kafka Streams 4.1.1 application (issue 16): word count with a state store (changelog and
# repartition topics), processing.guarantee=exactly_once_v2, classic group protocol, two instances
# (StreamsWordCount.java says what is checked).
#   BOOTSTRAP=host:port compat/java-streams/run.sh
# Scenarios ("RESULT <name> PASS|FAIL|SKIP <detail>" lines; exits 1 if any FAIL):
#   streams-build                  compiles the app (kafka-streams from pom.xml)
#   streams-internal-topics        the changelog/repartition topics Streams created, with their configs
#   streams-instance-restart       against BOOTSTRAP: one instance closed mid-way, its state wiped and
#                                  restored from the changelog, restarted; exact counts (EOS)
#   streams-instance-kill9         against BOOTSTRAP: the other instance, a JVM of its own, killed with
#                                  SIGKILL mid-transaction and started again; exact counts
#   streams-group-protocol-streams against BOOTSTRAP: group.protocol=streams (KIP-1071) runs or fails
#                                  with a clear error within 60 s (the detail says which)
#   streams-broker-kill9           on a broker of its own (CRASH_BROKER): killed with SIGKILL and
#                                  restarted on the same data while the application runs; exact counts
# Env:
#   BOOTSTRAP          required
#   CRASH_BROKER=dlog|kafka  the broker streams-broker-kill9 starts, kills -9 and restarts (dlog:
#                      DLOG_BIN, default target/release/dlog; kafka: compat/kafka/start.sh); unset: SKIP
#   CRASH_PORT         its port (default: a free one; Kafka also takes CRASH_PORT+1 for its controller)
#   LINES_PER_BATCH    lines per batch, 4 batches (default 500)
#   GUARANTEE          processing.guarantee (default exactly_once_v2; at_least_once must FAIL: the negative control)
#   WORK_DIR           outputs (default: a fresh temp dir, removed unless a scenario failed)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }
# A killed dlog stays a zombie until this script reaps it (kill -0 still succeeds): not alive.
alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)"; [[ -n "$s" && "$s" != Z* ]]; }

# ---------------------------------------------------------------- crash broker (own data dir)
# Also the restart command StreamsWordCount runs mid-way: run.sh --restart-broker.
crash_start() {
  case "$CRASH_BROKER" in
    dlog) nohup "${DLOG_BIN:-$ROOT/target/release/dlog}" --listen "127.0.0.1:$CRASH_PORT" \
            --data-dir "$CRASH_DIR/data" >>"$CRASH_DIR/broker.log" 2>&1 </dev/null &
          echo $! >"$CRASH_DIR/broker.pid" ;;
    kafka) "$ROOT/compat/kafka/start.sh" "$CRASH_PORT" "$CRASH_DIR" >>"$CRASH_DIR/start.log" 2>&1 || return 1
           cp "$CRASH_DIR/kafka.pid" "$CRASH_DIR/broker.pid" ;;
  esac
  for _ in $(seq 1 300); do port_open "127.0.0.1:$CRASH_PORT" && return 0; sleep 0.1; done
  return 1
}
crash_kill9() {
  local pid; pid="$(cat "$CRASH_DIR/broker.pid")"
  kill -KILL "$pid" 2>/dev/null
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  rm -f "$CRASH_DIR/kafka.pid"
}
crash_stop() {
  case "$CRASH_BROKER" in
    dlog) local pid; pid="$(cat "$CRASH_DIR/broker.pid" 2>/dev/null)"
          [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null
          for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done ;;
    kafka) "$ROOT/compat/kafka/stop.sh" "$CRASH_DIR" >>"$CRASH_DIR/start.log" 2>&1 ;;
  esac
}
if [[ "${1:-}" == --restart-broker ]]; then
  echo "$(date -u +%T) kill -9 $CRASH_BROKER pid $(cat "$CRASH_DIR/broker.pid")" >>"$CRASH_DIR/restarts.log"
  crash_kill9
  sleep 1
  crash_start || { echo "restart failed" >>"$CRASH_DIR/restarts.log"; exit 1; }
  echo "$(date -u +%T) restarted pid $(cat "$CRASH_DIR/broker.pid")" >>"$CRASH_DIR/restarts.log"
  exit 0
fi

: "${BOOTSTRAP:?set BOOTSTRAP=host:port}"
own_work=0; [[ -z "${WORK_DIR:-}" ]] && own_work=1
WORK_DIR="${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/java-streams.XXXXXX")}"
mkdir -p "$WORK_DIR"
export RUN_ID="$(date +%s)-$$"
FAILED=0
result() { echo "RESULT $1 $2 ${3:-}"; [[ "$2" == FAIL ]] && FAILED=1; return 0; }
tail_detail() { tail -n "${2:-5}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-500; }

if ! port_open "$BOOTSTRAP"; then
  result streams-bootstrap FAIL "nothing accepts connections at $BOOTSTRAP"
  exit 1
fi

# Build once (offline first, online as the fallback), as compat/java/run.sh does.
cpf="$HERE/target/classpath.txt"
goals=(-B -q -f "$HERE/pom.xml" compile dependency:build-classpath "-Dmdep.outputFile=$cpf")
if ! { timeout 300 mvn -o "${goals[@]}" >"$WORK_DIR/build.log" 2>&1 \
       || timeout 900 mvn "${goals[@]}" >>"$WORK_DIR/build.log" 2>&1; }; then
  result streams-build FAIL "$(grep -m4 -E 'ERROR|error:' "$WORK_DIR/build.log" | tr '\n' ' ' | cut -c1-500)"
  exit 1
fi
result streams-build PASS "kafka-streams $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
JAVA=(java -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.showDateTime=true
      -Dorg.slf4j.simpleLogger.logFile=System.err -cp "$HERE/target/classes:$(cat "$cpf")" dlog.compat.StreamsWordCount)

run_mode() { # mode bootstrap -> RESULT lines of StreamsWordCount; FAIL if it died without one
  local mode="$1" rc
  BOOTSTRAP="$2" STATE_DIR="$WORK_DIR/state-$mode" timeout 600 "${JAVA[@]}" "$mode" \
    >"$WORK_DIR/$mode.out" 2>"$WORK_DIR/$mode.err"
  rc=$?
  grep '^RESULT ' "$WORK_DIR/$mode.out"
  grep -q '^RESULT .* FAIL' "$WORK_DIR/$mode.out" && FAILED=1
  if [[ $rc -ne 0 ]] && ! grep -q '^RESULT .* FAIL' "$WORK_DIR/$mode.out"; then
    result "streams-$mode" FAIL "exit $rc: $(grep -m3 -E 'Exception|ERROR' "$WORK_DIR/$mode.err" | tr '\n' ' ' | cut -c1-400)"
  fi
}

run_mode instance-restart "$BOOTSTRAP"
run_mode instance-kill9 "$BOOTSTRAP"
run_mode streams-protocol "$BOOTSTRAP"

if [[ -n "${CRASH_BROKER:-}" ]]; then
  export CRASH_BROKER CRASH_DIR="$WORK_DIR/crash"
  export CRASH_PORT="${CRASH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
  mkdir -p "$CRASH_DIR"
  if crash_start; then
    BROKER_RESTART="$HERE/run.sh --restart-broker" run_mode broker-kill9 "127.0.0.1:$CRASH_PORT"
    crash_stop
    [[ $FAILED -eq 0 ]] && rm -rf "$CRASH_DIR/data" "$CRASH_DIR/kraft-logs"
  else
    result streams-broker-kill9 FAIL "$CRASH_BROKER did not start on $CRASH_PORT: $(tail_detail "$CRASH_DIR/broker.log" 3)$(tail_detail "$CRASH_DIR/start.log" 3)"
  fi
else
  result streams-broker-kill9 SKIP "CRASH_BROKER unset (compat/run.sh sets it)"
fi

if [[ $FAILED -eq 0 && $own_work -eq 1 ]]; then rm -rf "$WORK_DIR"; else echo "java-streams outputs in $WORK_DIR"; fi
exit "$FAILED"
