#!/usr/bin/env bash
# Scale (issue 17): 10,000 partitions and 10,000 idle connections, dlog next to Apache Kafka
# 4.1.1, one broker at a time on a fresh data directory, the same clients for both.
#
# Per broker, in order (RUNS times the measured steps; medians in the table):
#   connections: CONNECTIONS TCP connections that each send one ApiVersions and stay idle
#                (benches/load/scale_probe.py): the broker's added RSS, and the accept rate
#                (connections opened per second, at most 200 connects in flight).
#   baseline:    the native load generator (benches/load_gen.rs) into one topic of 3
#                partitions, RECORD_BYTES records, acks=all, linger.ms=5, as fast as it goes.
#   create:      TOPICS topics × PARTITIONS partitions created 100 topics per request; seconds
#                until answered and until every partition has a leader; RSS after.
#   metadata:    a full Metadata request (every topic) from librdkafka, median of 5.
#   spread:      the load generator round robin over all TOPICS topics (random partition):
#                records/s, and its ratio to the 3-partition baseline.
#   restart:     clean shutdown (SIGTERM) and start on the same data: seconds until every
#                partition has a leader again; then kill -9 and the same. RSS after.
#
# Usage: benches/load/scale.sh [BROKER ...]   BROKER: dlog | kafka | dlog=PATH (default: dlog kafka)
# Environment (defaults in brackets): LOAD_WORK_DIR [/tmp/dlog-scale-bench]  RUNS [3]
#   TOPICS [1000]  PARTITIONS [10]  CONNECTIONS [10000]  MEASURE_SECONDS [20]  WARMUP [3]
#   RECORD_BYTES [1024]  PORT [31092] (Kafka's controller uses PORT+1)  SKIP_BUILD [0]
#   LOAD_GEN_BIN [built with cargo bench --no-run]
#   QUIET_WAIT_MAX [600]  QUIET_FOREIGN_PCT_MAX [10] (see common.sh)
# Needs file descriptors: 10,000 partitions keep ~2 per partition open in either broker, so the
# script raises its limit (root can; otherwise set `ulimit -n` ≥ 40000 yourself).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="${LOAD_WORK_DIR:-/tmp/dlog-scale-bench}"
RUNS="${RUNS:-3}"
TOPICS="${TOPICS:-1000}"
PARTITIONS="${PARTITIONS:-10}"
CONNECTIONS="${CONNECTIONS:-10000}"
# Not SECONDS: bash sets that one itself (seconds since the shell started), so it is never unset.
SECONDS_MEASURED="${MEASURE_SECONDS:-20}"
WARMUP="${WARMUP:-3}"
RECORD_BYTES="${RECORD_BYTES:-1024}"
PORT="${PORT:-31092}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BROKERS=("$@"); [[ ${#BROKERS[@]} -gt 0 ]] || BROKERS=(dlog kafka)
CLIENT_JVM=(-Xmx512m "-Dlog4j2.configurationFile=$HERE/log4j2-client.xml")
BOOTSTRAP="127.0.0.1:$PORT"
PROBE=(python3 "$HERE/scale_probe.py")
export STOP_TIMEOUT=600 START_TIMEOUT=600

ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) >= 4 * TOPICS * PARTITIONS )) || echo "warning: ulimit -n is $(ulimit -n)" >&2

rm -rf "$WORK"
mkdir -p "$WORK/raw"
RESULTS="$WORK/results.csv" # broker,step,run,key=value;...,foreign_cpu_pct
: >"$RESULTS"
source "$HERE/common.sh"
prepare_binaries
if [[ "$SKIP_BUILD" != 1 ]]; then
  (cd "$ROOT" && cargo bench --bench load_gen --no-run >&2)
fi
LOAD_GEN="${LOAD_GEN_BIN:-$(cd "$ROOT" && cargo bench --bench load_gen --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*load_gen[^"]*\)".*/\1/p' | tail -n1)}"
[[ -x "$LOAD_GEN" ]] || { log "no load_gen executable"; exit 1; }
cp "$LOAD_GEN" "$WORK/load_gen"

trap stop_broker EXIT
trap 'exit 130' INT TERM

rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$BROKER_PID/status"; }

record() { # record STEP RUN "key=value ..." FOREIGN_PCT
  echo "$BROKER,$1,$2,${3// /;},$4" >>"$RESULTS"
  log "$BROKER $1 run $2: $3 (foreign CPU $4%)"
}

# timed STEP RUN COMMAND...: runs COMMAND (it prints key=value pairs) and records them with the
# foreign CPU of the interval.
timed() {
  local step="$1" run="$2" line busy0 ours0 t0
  shift 2
  busy0="$(busy_jiffies)"; ours0="$(tree_jiffies $$ "$BROKER_PID")"; t0="$(date +%s%N)"
  line="$("$@" 2>>"$WORK/raw/probe-$BROKER.err" | tail -n1)" || { log "$BROKER $step run $run failed"; return 1; }
  record "$step" "$run" "$line" \
    "$(foreign_pct $(($(busy_jiffies) - busy0)) $(($(tree_jiffies $$ "$BROKER_PID") - ours0)) $(($(date +%s%N) - t0)))"
}

load_gen() { # load_gen TOPIC [ARGS...]
  local topic="$1"; shift
  timeout -k 5 $((SECONDS_MEASURED + WARMUP + 600)) "$WORK/load_gen" produce --bootstrap "$BOOTSTRAP" \
    --topic "$topic" --record-bytes "$RECORD_BYTES" --rate 0 --acks all --linger-ms 5 \
    --seconds "$SECONDS_MEASURED" --warmup-seconds "$WARMUP" "$@" 2>>"$WORK/raw/load_gen-$BROKER.err"
}

connections() { # connections RUN: opens CONNECTIONS idle connections, records accept rate and RSS
  local run="$1" before fifo line
  before="$(rss_mb)"
  fifo="$WORK/hold-$run"; rm -f "$fifo"; mkfifo "$fifo"
  "${PROBE[@]}" connections 127.0.0.1 "$PORT" "$CONNECTIONS" <"$fifo" >"$WORK/raw/conn-$BROKER-$run.out" 2>&1 &
  local probe=$!
  exec 7>"$fifo"
  until line="$(grep -m1 '^open_s=' "$WORK/raw/conn-$BROKER-$run.out")"; do
    kill -0 "$probe" 2>/dev/null || { log "connection probe failed"; cat "$WORK/raw/conn-$BROKER-$run.out" >&2; exec 7>&-; return 1; }
    sleep 0.5
  done
  sleep 3 # let the broker settle with every connection idle
  local after; after="$(rss_mb)"
  exec 7>&-
  wait "$probe" || true
  record connections "$run" "$line rss_before_mb=$before rss_after_mb=$after added_mb=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", a - b }')" 0
  sleep 2
}

restart_broker() { # restart_broker MODE(clean|kill9): same data directory
  local mode="$1"
  if [[ "$mode" == clean ]]; then
    local t0; t0="$(date +%s%N)"
    stop_broker
    record shutdown "$run" "shutdown_s=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }')" 0
  else
    kill -9 "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true
    while kill -0 "$BROKER_PID" 2>/dev/null; do sleep 0.1; done
    [[ "$BROKER_KIND" == kafka ]] && rm -f "$WORK/data/kafka.pid"
    BROKER_PID=""
  fi
  local t0; t0="$(date +%s%N)"
  case "$BROKER_KIND" in
    dlog)
      "$WORK/dlog" --listen "$BOOTSTRAP" --data-dir "$WORK/data/dlog" >>"$WORK/raw/$BROKER.log" 2>&1 &
      BROKER_PID=$! ;;
    kafka)
      "$ROOT/compat/kafka/start.sh" "$PORT" "$WORK/data" >&2
      BROKER_PID="$(cat "$WORK/data/kafka.pid")" ;;
  esac
  "${PROBE[@]}" ready "$BOOTSTRAP" $((TOPICS * PARTITIONS)) 900 >/dev/null 2>>"$WORK/raw/probe-$BROKER.err" ||
    { log "$BROKER not ready after restart"; return 1; }
  record "restart-$mode" "$run" "ready_s=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }') rss_mb=$(rss_mb)" 0
}

log "work dir $WORK; brokers ${BROKERS[*]}; runs=$RUNS topics=$TOPICS×$PARTITIONS connections=$CONNECTIONS; dlog $DLOG_COMMIT; load $(cut -d' ' -f1-3 /proc/loadavg)"
for broker in "${BROKERS[@]}"; do
  for run in $(seq 1 "$RUNS"); do
    wait_quiet
    start_broker "$broker"
    sleep 2
    record idle "$run" "rss_mb=$(rss_mb)" 0
    connections "$run"
    timed baseline "$run" load_gen "base" --partitions 3
    timed create "$run" "${PROBE[@]}" create "$BOOTSTRAP" scale "$TOPICS" "$PARTITIONS"
    record created "$run" "rss_mb=$(rss_mb)" 0
    timed metadata "$run" "${PROBE[@]}" metadata "$BOOTSTRAP" 5
    timed spread "$run" load_gen scale --topics "$TOPICS" --partitions "$PARTITIONS"
    restart_broker clean
    restart_broker kill9
    stop_broker
  done
done

python3 - "$RESULTS" "$DLOG_COMMIT" "$TOPICS" "$PARTITIONS" "$CONNECTIONS" "$RECORD_BYTES" <<'PY'
import csv, statistics, sys
results, commit, topics, partitions, connections, record_bytes = sys.argv[1:7]
rows = []
for broker, step, run, line, foreign in csv.reader(open(results)):
    values = {k: float(v) for k, v in (p.split("=", 1) for p in line.split(";") if "=" in p)}
    rows.append((broker, step, values, float(foreign)))
brokers = list(dict.fromkeys(r[0] for r in rows))
def med(broker, step, key):
    v = [r[2][key] for r in rows if r[0] == broker and r[1] == step and key in r[2]]
    return statistics.median(v) if v else float("nan")
def n(broker, step):
    return len([r for r in rows if r[0] == broker and r[1] == step])
def foreign(broker):
    v = [r[3] for r in rows if r[0] == broker and r[3] > 0]
    return f"{min(v):.0f}–{max(v):.0f}%" if v else "n/a"
print(f"dlog {commit}; medians of {max(n(b, 'create') for b in brokers)} runs; {topics} topics × {partitions} partitions, "
      f"{record_bytes} B records acks=all linger.ms=5; {connections} idle connections.")
print()
print("| broker | idle RSS MB | +conns MB | KB/conn | accept/s | create s | ready s | RSS MB after create | Metadata ms | 3-part rec/s | spread rec/s | spread/3-part | shutdown s | restart s (clean) | restart s (kill -9) | RSS MB after restart | foreign CPU |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for b in brokers:
    base, spread = med(b, "baseline", "records_per_s"), med(b, "spread", "records_per_s")
    added = med(b, "connections", "added_mb")
    opened = med(b, "connections", "opened")
    print(f"| {b} | {med(b,'idle','rss_mb'):.0f} | {added:.0f} | {added * 1024 / opened:.1f} | {med(b,'connections','accept_per_s'):,.0f} | "
          f"{med(b,'create','create_s'):.1f} | {med(b,'create','ready_s'):.1f} | {med(b,'created','rss_mb'):.0f} | "
          f"{med(b,'metadata','metadata_ms_median'):.0f} | {base:,.0f} | {spread:,.0f} | {spread / base * 100:.0f}% | "
          f"{med(b,'shutdown','shutdown_s'):.1f} | {med(b,'restart-clean','ready_s'):.1f} | {med(b,'restart-kill9','ready_s'):.1f} | "
          f"{med(b,'restart-kill9','rss_mb'):.0f} | {foreign(b)} |")
PY
