#!/usr/bin/env bash
# Metrics overhead on produce throughput: the same ProducerPerformance run against dlog
#   off:      no metrics listener (the recorder is not installed; every metrics call is a no-op)
#   scraped:  --metrics-listen with /metrics scraped every second for the whole run
# Runs alternate (off, scraped, scraped, off, …) on a fresh broker and data directory each, after
# a warm-up produce; the table gives medians and the overhead of `scraped` relative to `off`.
#
# Usage: benches/load/metrics_overhead.sh
# Environment (defaults in brackets):
#   LOAD_WORK_DIR [/tmp/dlog-metrics-overhead]  RUNS [5] runs per mode
#   RECORDS [2000000] 100-byte records per run  PARTITIONS [3]  SKIP_BUILD [0]
#   DLOG_PORT [19192]  METRICS_PORT [19644]  SCRAPE_INTERVAL [1] s
#   QUIET_WAIT_MAX [600] s to wait before a run for other processes' CPU use to drop to
#   QUIET_FOREIGN_PCT_MAX [10] % of all cores
# Requirements as for benches/load/run.sh: a JDK and compat/kafka/install.sh's jars, curl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="${LOAD_WORK_DIR:-/tmp/dlog-metrics-overhead}"
RUNS="${RUNS:-5}"
RECORDS="${RECORDS:-2000000}"
PARTITIONS="${PARTITIONS:-3}"
SKIP_BUILD="${SKIP_BUILD:-0}"
DLOG_PORT="${DLOG_PORT:-19192}"
METRICS_PORT="${METRICS_PORT:-19644}"
SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-1}"
PRODUCER_PROPS=(acks=1 linger.ms=5 batch.size=16384 compression.type=none enable.idempotence=false)
CLIENT_JVM=(-Xmx512m "-Dlog4j2.configurationFile=$HERE/log4j2-client.xml")
BOOTSTRAP="127.0.0.1:$DLOG_PORT"

rm -rf "$WORK"
mkdir -p "$WORK/raw"
RESULTS="$WORK/results.csv" # mode,run,rec_s,mb_s,scrapes,foreign_cpu_pct,broker_cpu_s
: >"$RESULTS"

source "$HERE/common.sh"
prepare_binaries

BROKER_PID=""
SCRAPER_PID=""
cleanup() {
  [[ -n "$SCRAPER_PID" ]] && kill "$SCRAPER_PID" 2>/dev/null
  if [[ -n "$BROKER_PID" ]]; then kill -TERM "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null; fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_broker() { # start_broker MODE
  local extra=()
  [[ "$1" == scraped ]] && extra=(--metrics-listen "127.0.0.1:$METRICS_PORT")
  rm -rf "$WORK/data"
  if port_open "$DLOG_PORT"; then log "port $DLOG_PORT busy"; exit 1; fi
  "$WORK/dlog" --listen "$BOOTSTRAP" --data-dir "$WORK/data" "${extra[@]}" >"$WORK/dlog.log" 2>&1 &
  BROKER_PID=$!
  local deadline=$((SECONDS + 30))
  until port_open "$DLOG_PORT"; do
    kill -0 "$BROKER_PID" 2>/dev/null || { log "dlog exited:"; tail -n 20 "$WORK/dlog.log" >&2; exit 1; }
    (( SECONDS < deadline )) || { log "dlog did not listen in 30 s"; exit 1; }
    sleep 0.2
  done
}

stop_broker() {
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

# Scrapes /metrics every SCRAPE_INTERVAL seconds; counts successes in $WORK/scrapes.
start_scraper() {
  : >"$WORK/scrapes"
  ( while :; do
      curl -sf -o "$WORK/last-scrape.txt" "http://127.0.0.1:$METRICS_PORT/metrics" && echo ok >>"$WORK/scrapes"
      sleep "$SCRAPE_INTERVAL"
    done ) &
  SCRAPER_PID=$!
}
stop_scraper() {
  if [[ -n "$SCRAPER_PID" ]]; then kill "$SCRAPER_PID" 2>/dev/null || true; wait "$SCRAPER_PID" 2>/dev/null || true; fi
  SCRAPER_PID=""
}

produce() { # produce TOPIC RECORDS -> "rec_s mb_s"
  local out="$WORK/raw/produce-$1.txt"
  java_tool 300 org.apache.kafka.tools.ProducerPerformance --topic "$1" --num-records "$2" \
    --record-size 100 --throughput -1 --producer-props bootstrap.servers="$BOOTSTRAP" "${PRODUCER_PROPS[@]}" >"$out" 2>&1 \
    || { log "ProducerPerformance failed:"; tail -n 5 "$out" >&2; return 1; }
  sed -n 's/^\([0-9]*\) records sent, \([0-9.]*\) records\/sec (\([0-9.]*\) MB\/sec).*/\1 \2 \3/p' "$out" | tail -n1 |
    awk -v want="$2" '$1 != want { exit 1 } { print $2, $3 }'
}

create_topic() {
  java_tool 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
    --topic "$1" --partitions "$PARTITIONS" --replication-factor 1 >>"$WORK/raw/topics.log" 2>&1
}

measure() { # measure MODE RUN
  local mode="$1" run="$2" line busy0 ours0 t0 busy1 ours1 t1 foreign scrapes broker0 broker1 broker_cpu
  start_broker "$mode"
  create_topic warmup; create_topic "measured"
  produce warmup $((RECORDS / 4)) >/dev/null
  wait_quiet
  [[ "$mode" == scraped ]] && start_scraper
  busy0="$(busy_jiffies)"; ours0="$(tree_jiffies $$ "$BROKER_PID")"; t0="$(date +%s%N)"
  broker0="$(cpu_ns "$BROKER_PID")"
  line="$(produce measured "$RECORDS")" || { stop_scraper; stop_broker; return 1; }
  busy1="$(busy_jiffies)"; ours1="$(tree_jiffies $$ "$BROKER_PID")"; t1="$(date +%s%N)"
  broker1="$(cpu_ns "$BROKER_PID")"
  broker_cpu="$(awk -v ns=$((broker1 - broker0)) 'BEGIN { printf "%.4f", ns / 1e9 }')"
  stop_scraper
  scrapes=0; [[ -f "$WORK/scrapes" && "$mode" == scraped ]] && scrapes="$(wc -l <"$WORK/scrapes")"
  foreign="$(foreign_pct $((busy1 - busy0)) $((ours1 - ours0)) $((t1 - t0)))"
  read -r rec_s mb_s <<<"$line"
  echo "$mode,$run,$rec_s,$mb_s,$scrapes,$foreign,$broker_cpu" >>"$RESULTS"
  log "$mode run $run: $rec_s rec/s, $mb_s MB/s, broker CPU ${broker_cpu} s, $scrapes scrapes, foreign CPU $foreign%"
  if [[ "$mode" == scraped ]]; then
    grep -q '^dlog_topic_records_in_total{topic="measured"}' "$WORK/last-scrape.txt" \
      || log "warning: the last scrape has no records-in counter for the measured topic"
    cp "$WORK/last-scrape.txt" "$WORK/raw/scrape-run$run.txt"
  fi
  stop_broker
}

log "work dir $WORK; runs=$RUNS records=$RECORDS partitions=$PARTITIONS; dlog $DLOG_COMMIT"
for run in $(seq 1 "$RUNS"); do
  # Alternate the order so that drift (page cache, thermal, neighbours) hits both modes alike.
  if (( run % 2 )); then order=(off scraped); else order=(scraped off); fi
  for mode in "${order[@]}"; do measure "$mode" "$run" || log "$mode run $run failed"; done
done

python3 - "$RESULTS" "$RECORDS" "$DLOG_COMMIT" "$SCRAPE_INTERVAL" <<'PY'
import csv, statistics, sys
results, records, commit, interval = sys.argv[1:]
rows = list(csv.reader(open(results)))
def values(mode, column):
    return [float(r[column]) for r in rows if r[0] == mode]
off, scraped = values("off", 2), values("scraped", 2)
if not off or not scraped:
    sys.exit("no results")
m_off, m_scraped = statistics.median(off), statistics.median(scraped)
overhead = (m_off - m_scraped) / m_off * 100
foreign = max(values("off", 5) + values("scraped", 5))
# Broker CPU per 1000 records: what metrics cost the broker, far less sensitive to CPU taken by
# neighbours than throughput is.
per_k = lambda mode: [c / int(records) * 1e9 for c in values(mode, 6)]  # ms per million records
cpu_off, cpu_scraped = statistics.median(per_k("off")), statistics.median(per_k("scraped"))
print(f"dlog {commit}: ProducerPerformance {records} x 100 B, acks=1, 3 partitions; "
      f"medians of {len(off)} runs per mode (alternating)")
print("| mode | rec/s (median) | MB/s (median) | broker CPU ms / 1M records (median) | runs (rec/s) |")
print("|---|---|---|---|---|")
for key, label in (("off", "metrics off"), ("scraped", f"metrics on, scraped every {interval} s")):
    print(f"| {label} | {statistics.median(values(key, 2)):,.0f} | {statistics.median(values(key, 3)):.1f} | "
          f"{statistics.median(per_k(key)):.1f} | " + ", ".join(f"{x:,.0f}" for x in values(key, 2)) + " |")
print(f"throughput overhead: {overhead:+.2f}% (positive = slower with metrics); broker CPU per record: "
      f"{(cpu_scraped - cpu_off) / cpu_off * 100:+.2f}%; max foreign CPU during a run {foreign:.1f}%")
PY
