#!/usr/bin/env bash
# Durable produce (issue 17): fsync before every acknowledgement (topic flush.messages=1, which
# is Kafka's log.flush.interval.messages=1 for one topic), dlog next to Apache Kafka 4.1.1,
# one broker at a time, each on a fresh data directory, with the native load generator
# (benches/load_gen.rs, librdkafka): the Java client would be the bottleneck on 2 cores.
#
# Scenarios, RUNS times each (medians in the table), every run into a fresh topic (1 partition):
#   fixed:   1 KB records, acks=all, linger.ms=0, RATE records/s for MEASURE_SECONDS after WARMUP s,
#            flush.messages=1: delivery latency p50/p99/p99.9 (send -> delivery report).
#   fsync:   1 KB, acks=all, linger.ms=5, as fast as the client goes, flush.messages=1.
#   nofsync: the same without flush.messages (the broker's default: no fsync per write).
# For each: records/s, MB/s and the broker's CPU seconds per GB produced (all its threads'
# schedstat, over the whole client run, warm-up included, divided by every byte sent).
#
# Usage: benches/load/durable.sh [BROKER ...]   BROKER: dlog | kafka | dlog=PATH (another dlog
#   binary, e.g. dlog-before=/tmp/dlog-main: the name before '=' labels it in the table)
#   (default: dlog kafka)
# Environment (defaults in brackets): LOAD_WORK_DIR [/tmp/dlog-durable-bench]  RUNS [3]
#   RATE [10000]  MEASURE_SECONDS [30]  WARMUP [3]  RECORD_BYTES [1024]
#   PORT [32092] (Kafka's controller uses PORT+1)  SKIP_BUILD [0]
#   QUIET_WAIT_MAX [600]  QUIET_FOREIGN_PCT_MAX [10] (see common.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="${LOAD_WORK_DIR:-/tmp/dlog-durable-bench}"
RUNS="${RUNS:-3}"
RATE="${RATE:-10000}"
# Not SECONDS: bash sets that one itself (seconds since the shell started), so it is never unset.
SECONDS_MEASURED="${MEASURE_SECONDS:-30}"
WARMUP="${WARMUP:-3}"
RECORD_BYTES="${RECORD_BYTES:-1024}"
PORT="${PORT:-32092}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BROKERS=("$@"); [[ ${#BROKERS[@]} -gt 0 ]] || BROKERS=(dlog kafka)
CLIENT_JVM=(-Xmx512m "-Dlog4j2.configurationFile=$HERE/log4j2-client.xml")
BOOTSTRAP="127.0.0.1:$PORT"

rm -rf "$WORK"
mkdir -p "$WORK/raw"
RESULTS="$WORK/results.csv" # broker,scenario,run,key=value...,broker_cpu_s,foreign_cpu_pct
: >"$RESULTS"
source "$HERE/common.sh"
prepare_binaries
if [[ "$SKIP_BUILD" != 1 ]]; then
  (cd "$ROOT" && cargo bench --bench load_gen --no-run >&2)
fi
LOAD_GEN="$(cd "$ROOT" && cargo bench --bench load_gen --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*load_gen[^"]*\)".*/\1/p' | tail -n1)"
[[ -x "$LOAD_GEN" ]] || { log "no load_gen executable"; exit 1; }
cp "$LOAD_GEN" "$WORK/load_gen"

trap stop_broker EXIT
trap 'exit 130' INT TERM

load_gen() { # load_gen TOPIC RATE LINGER_MS [--topic-config K=V ...] -> the load_gen line
  local topic="$1" rate="$2" linger="$3"; shift 3
  timeout -k 5 $((SECONDS_MEASURED + WARMUP + 180)) "$WORK/load_gen" produce --bootstrap "$BOOTSTRAP" \
    --topic "$topic" --record-bytes "$RECORD_BYTES" --rate "$rate" --acks all --linger-ms "$linger" \
    --seconds "$SECONDS_MEASURED" --warmup-seconds "$WARMUP" "$@" 2>>"$WORK/raw/load_gen-$BROKER.err" |
    tail -n1
}

measured() { # measured SCENARIO RUN COMMAND... : runs COMMAND (prints the load_gen line), records a row
  local scenario="$1" run="$2" line busy0 ours0 t0 cpu0 foreign cpu
  shift 2
  wait_quiet
  busy0="$(busy_jiffies)"; ours0="$(tree_jiffies $$ "$BROKER_PID")"; t0="$(date +%s%N)"; cpu0="$(cpu_ns "$BROKER_PID")"
  line="$("$@")" || { log "$BROKER $scenario run $run failed"; return 0; }
  [[ -n "$line" ]] || { log "$BROKER $scenario run $run: no result"; return 0; }
  cpu="$(awk -v ns=$(($(cpu_ns "$BROKER_PID") - cpu0)) 'BEGIN { printf "%.4f", ns / 1e9 }')"
  foreign="$(foreign_pct $(($(busy_jiffies) - busy0)) $(($(tree_jiffies $$ "$BROKER_PID") - ours0)) $(($(date +%s%N) - t0)))"
  echo "$BROKER,$scenario,$run,${line// /;},$cpu,$foreign" >>"$RESULTS"
  log "$BROKER $scenario run $run: $line (broker CPU $cpu s, foreign CPU $foreign%)"
}

log "work dir $WORK; brokers ${BROKERS[*]}; runs=$RUNS rate=$RATE seconds=$SECONDS_MEASURED; dlog $DLOG_COMMIT; load $(cut -d' ' -f1-3 /proc/loadavg)"
for broker in "${BROKERS[@]}"; do
  start_broker "$broker"
  # Warm-up: the broker's first topic, page cache and JIT (Kafka).
  load_gen warmup 0 5 --topic-config flush.messages=1 >/dev/null
  for run in $(seq 1 "$RUNS"); do
    measured fixed "$run" load_gen "fixed-$run" "$RATE" 0 --topic-config flush.messages=1
    if (( run % 2 )); then order=(fsync nofsync); else order=(nofsync fsync); fi
    for scenario in "${order[@]}"; do
      configs=(); [[ "$scenario" == fsync ]] && configs=(--topic-config flush.messages=1)
      measured "$scenario" "$run" load_gen "$scenario-$run" 0 5 "${configs[@]}"
    done
  done
  stop_broker
done

python3 - "$RESULTS" "$DLOG_COMMIT" "$RATE" "$SECONDS_MEASURED" "$RECORD_BYTES" <<'PY'
import csv, statistics, sys
results, commit, rate, seconds, record_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
rows = []
for broker, scenario, run, line, cpu, foreign in csv.reader(open(results)):
    values = dict(pair.split("=", 1) for pair in line.split(";") if "=" in pair)
    values = {k: float(v) for k, v in values.items()}
    values["cpu_s_per_gb"] = float(cpu) / (values["sent_total"] * record_bytes / 1e9)
    rows.append((broker, scenario, values, float(foreign)))
brokers = list(dict.fromkeys(r[0] for r in rows))
def med(broker, scenario, key):
    v = [r[2][key] for r in rows if r[0] == broker and r[1] == scenario]
    return statistics.median(v) if v else float("nan")
def foreign(broker, scenario):
    v = [r[3] for r in rows if r[0] == broker and r[1] == scenario]
    return f"{min(v):.0f}–{max(v):.0f}%" if v else "n/a"
def runs(broker, scenario):
    return len([r for r in rows if r[0] == broker and r[1] == scenario])
print(f"dlog {commit}; {record_bytes} B records, acks=all, 1 partition; medians of {max(runs(b, 'fixed') for b in brokers)} runs.")
print()
print(f"Fixed rate {rate:,}/s, linger.ms=0, flush.messages=1, {seconds} s:")
print()
print("| broker | achieved rec/s | p50 ms | p99 ms | p99.9 ms | max ms | broker CPU s/GB | foreign CPU |")
print("|---|---|---|---|---|---|---|---|")
for b in brokers:
    print(f"| {b} | {med(b,'fixed','records_per_s'):,.0f} | {med(b,'fixed','p50_ms'):.2f} | {med(b,'fixed','p99_ms'):.2f} | "
          f"{med(b,'fixed','p999_ms'):.2f} | {med(b,'fixed','max_ms'):.1f} | {med(b,'fixed','cpu_s_per_gb'):.1f} | {foreign(b,'fixed')} |")
print()
print("Unlimited rate, linger.ms=5, with fsync per write (flush.messages=1) and without:")
print()
print("| broker | fsync rec/s | fsync MB/s | no-fsync rec/s | no-fsync MB/s | fsync / no-fsync | CPU s/GB fsync | CPU s/GB no-fsync | p99 ms fsync | foreign CPU |")
print("|---|---|---|---|---|---|---|---|---|---|")
for b in brokers:
    f, n = med(b, "fsync", "records_per_s"), med(b, "nofsync", "records_per_s")
    print(f"| {b} | {f:,.0f} | {med(b,'fsync','mb_per_s'):.1f} | {n:,.0f} | {med(b,'nofsync','mb_per_s'):.1f} | {f / n * 100:.0f}% | "
          f"{med(b,'fsync','cpu_s_per_gb'):.1f} | {med(b,'nofsync','cpu_s_per_gb'):.1f} | {med(b,'fsync','p99_ms'):.1f} | {foreign(b,'fsync')}, {foreign(b,'nofsync')} |")
PY
