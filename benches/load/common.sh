# Shared by the load benches (sourced): logging, port checks, client JVM runs, and the CPU
# accounting that tells whether other processes disturbed a measurement.
# Needs: ROOT (the repository), WORK (scratch dir), CLIENT_JVM (array).

# Installs Kafka's jars and sets CP (their classpath); builds dlog unless SKIP_BUILD=1 and
# copies it (or $DLOG_BIN if set) to $WORK/dlog (other builds may replace target/); sets
# DLOG_COMMIT (unless already set).
prepare_binaries() {
  "$ROOT/compat/kafka/install.sh" >&2
  CP="$(cat "$ROOT/compat/kafka/lib/classpath.txt")"
  if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$ROOT" && cargo build --release --bin dlog >&2)
  fi
  cp "${DLOG_BIN:-$ROOT/target/release/dlog}" "$WORK/dlog"
  DLOG_COMMIT="${DLOG_COMMIT:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
}

log() { echo "[$(date +%T)] $*" >&2; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

java_tool() { # java_tool TIMEOUT_S MAIN ARGS...
  local limit="$1"; shift
  timeout -k 5 "$limit" java "${CLIENT_JVM[@]}" -cp "$CP" "$@"
}

# Foreign CPU (others + steal) during a run, % of all cores: /proc/stat busy time minus the
# CPU of the given process trees (the script, its reaped clients, the broker).
CLK_TCK="$(getconf CLK_TCK)"; NPROC="$(nproc)"
busy_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
tree_jiffies() {
  local total=0 pid
  for pid in "$@"; do
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || continue
    total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
foreign_pct() { # foreign_pct BUSY_JIFFIES OURS_JIFFIES ELAPSED_NS
  awk -v b="$1" -v o="$2" -v ns="$3" -v hz="$CLK_TCK" -v n="$NPROC" \
    'BEGIN { f = (b - o) / hz / (ns / 1e9 * n) * 100; if (f < 0) f = 0; printf "%.1f", f }'
}

# Before each run, wait (at most QUIET_WAIT_MAX s) for a 5 s window in which other processes
# use under QUIET_FOREIGN_PCT_MAX % of the CPUs; the CPU they take during the run is reported.
QUIET_WAIT_MAX="${QUIET_WAIT_MAX:-600}"
QUIET_FOREIGN_PCT_MAX="${QUIET_FOREIGN_PCT_MAX:-10}"
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT_MAX)) b0 o0 t0 pct
  while :; do
    b0="$(busy_jiffies)"; o0="$(tree_jiffies $$)"; t0="$(date +%s%N)"; sleep 5
    pct="$(foreign_pct $(($(busy_jiffies) - b0)) $(($(tree_jiffies $$) - o0)) $(($(date +%s%N) - t0)))"
    awk -v p="$pct" -v m="$QUIET_FOREIGN_PCT_MAX" 'BEGIN { exit !(p <= m) }' && return 0
    if (( SECONDS >= deadline )); then log "machine still busy ($pct% foreign CPU); measuring anyway"; return 0; fi
    log "waiting for a quiet machine: $pct% of the CPUs used by other processes"
  done
}

# CPU time of every thread of process PID, in ns (schedstat: exact, unlike 10 ms ticks).
cpu_ns() { cat "/proc/$1"/task/*/schedstat 2>/dev/null | awk '{ total += $1 } END { printf "%.0f", total }'; }

# One broker at a time on 127.0.0.1:$PORT ($BOOTSTRAP) with its data in $WORK/data: dlog
# ($WORK/dlog, or the binary after "=") or Kafka (compat/kafka/start.sh). Needs PORT, BOOTSTRAP
# and the directory $WORK/raw (dlog's log goes to $WORK/raw/NAME.log). Sets BROKER (the name),
# BROKER_KIND (dlog|kafka) and BROKER_PID.
BROKER=""; BROKER_PID=""; BROKER_KIND=""
start_broker() { # start_broker NAME[=DLOG_BINARY]
  BROKER="${1%%=*}"
  local binary="$WORK/dlog"
  [[ "$1" == *=* ]] && binary="${1#*=}"
  BROKER_KIND=dlog; [[ "$BROKER" == kafka ]] && BROKER_KIND=kafka
  rm -rf "$WORK/data"; mkdir -p "$WORK/data"
  if port_open "$PORT"; then log "port $PORT busy"; exit 1; fi
  case "$BROKER_KIND" in
    dlog)
      "$binary" --listen "$BOOTSTRAP" --data-dir "$WORK/data/dlog" >"$WORK/raw/$BROKER.log" 2>&1 &
      BROKER_PID=$!
      local deadline=$((SECONDS + 30))
      until port_open "$PORT"; do
        kill -0 "$BROKER_PID" 2>/dev/null || { log "dlog exited:"; tail -n 20 "$WORK/raw/$BROKER.log" >&2; exit 1; }
        (( SECONDS < deadline )) || { log "dlog did not listen in 30 s"; exit 1; }
        sleep 0.2
      done ;;
    kafka)
      "$ROOT/compat/kafka/start.sh" "$PORT" "$WORK/data" >&2
      BROKER_PID="$(cat "$WORK/data/kafka.pid")" ;;
  esac
}
stop_broker() {
  [[ -n "$BROKER_PID" ]] || return 0
  case "$BROKER_KIND" in
    dlog) kill -TERM "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true ;;
    kafka) "$ROOT/compat/kafka/stop.sh" "$WORK/data" >&2 || true ;;
  esac
  BROKER_PID=""
}
