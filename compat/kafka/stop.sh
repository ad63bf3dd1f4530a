#!/usr/bin/env bash
# Usage: compat/kafka/stop.sh DATA_DIR
# Stops the Kafka started by start.sh with this DATA_DIR (pid in DATA_DIR/kafka.pid):
# SIGTERM, wait up to STOP_TIMEOUT (default 30 s) for a clean shutdown, then SIGKILL.
set -euo pipefail
if [[ $# -ne 1 ]]; then echo "usage: $0 DATA_DIR" >&2; exit 2; fi
PIDFILE="$1/kafka.pid"
TIMEOUT="${STOP_TIMEOUT:-30}"
if [[ ! -f "$PIDFILE" ]]; then echo "no $PIDFILE: kafka not running"; exit 0; fi
PID="$(cat "$PIDFILE")"
if ! kill -0 "$PID" 2>/dev/null; then
  echo "kafka (pid $PID) not running"; rm -f "$PIDFILE"; exit 0
fi
kill -TERM "$PID" 2>/dev/null || true
deadline=$((SECONDS + TIMEOUT))
while kill -0 "$PID" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
if kill -0 "$PID" 2>/dev/null; then
  echo "kafka (pid $PID) did not stop in ${TIMEOUT}s; killing"
  kill -KILL "$PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$PIDFILE"
echo "kafka (pid $PID) stopped"
