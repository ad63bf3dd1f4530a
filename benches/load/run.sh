#!/usr/bin/env bash
# Load test: the same workload, with the same Java client tools, against dlog and against Apache
# Kafka 4.1.1 (compat/kafka), one broker at a time on this machine. Prints a side-by-side table.
#
# Usage: benches/load/run.sh [--update-readme] [--only dlog|kafka] [--quick]
#   --update-readme  also write the table (and the machine description) into benches/README.md
#   --only B         measure one broker only (the table then has one column filled)
#   --quick          tiny volumes and 1 run per scenario: a smoke test of the script itself
# Environment (defaults in brackets):
#   LOAD_WORK_DIR [/tmp/dlog-load]  scratch: broker data, logs, raw results (wiped at start)
#   RUNS [3]  N_SMALL [3000000] 100-byte records per produce run  N_LARGE [600000] 1 KB records
#   PARTITIONS [3]  RUN_TIMEOUT [180] seconds per client run  SKIP_BUILD [0]
#   LAT_RATE [1000] msg/s  LAT_WARMUP [5] s  LAT_SECONDS [20] s  LAT_SIZE [1024] bytes
#   DLOG_PORT [19192]  KAFKA_PORT [19292] (Kafka's controller uses KAFKA_PORT+1)
#   QUIET_WAIT_MAX [900] s to wait before a scenario for other processes' CPU use to drop to
#   QUIET_FOREIGN_PCT_MAX [10] % of all cores; the CPU others used during it is reported
#
# Every scenario is run RUNS times after a warm-up; the table shows medians. Client JVMs are
# fresh per run (the same for both brokers). Broker RSS: VmHWM from /proc/PID/status after
# resetting it (clear_refs) at the start of each scenario = peak RSS during that scenario; a
# 200 ms VmRSS sampler gives the overall peak as a cross-check.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="${LOAD_WORK_DIR:-/tmp/dlog-load}"
RUNS="${RUNS:-3}"
N_SMALL="${N_SMALL:-3000000}"
N_LARGE="${N_LARGE:-600000}"
PARTITIONS="${PARTITIONS:-3}"
RUN_TIMEOUT="${RUN_TIMEOUT:-180}"
LAT_RATE="${LAT_RATE:-1000}"
LAT_WARMUP="${LAT_WARMUP:-5}"
LAT_SECONDS="${LAT_SECONDS:-20}"
LAT_SIZE="${LAT_SIZE:-1024}"
DLOG_PORT="${DLOG_PORT:-19192}"
KAFKA_PORT="${KAFKA_PORT:-19292}"
SKIP_BUILD="${SKIP_BUILD:-0}"
# Identical for both brokers. enable.idempotence=false: dlog has no idempotent producer yet
# (InitProducerId). linger/batch are the Kafka 4 client defaults, spelled out.
PRODUCER_PROPS=(linger.ms=5 batch.size=16384 compression.type=none enable.idempotence=false)
CLIENT_JVM=(-Xmx512m "-Dlog4j2.configurationFile=$HERE/log4j2-client.xml")

UPDATE_README=0
ONLY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --update-readme) UPDATE_README=1 ;;
    --only) ONLY="$2"; shift ;;
    --quick) RUNS=1; N_SMALL=200000; N_LARGE=50000; LAT_WARMUP=1; LAT_SECONDS=3 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[$(date +%T)] $*" >&2; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

rm -rf "$WORK"
mkdir -p "$WORK/raw"
RESULTS="$WORK/results.csv" # broker,scenario,run,metric,value
: >"$RESULTS"
record() { echo "$1,$2,$3,$4,$5" >>"$RESULTS"; }

# ---------------------------------------------------------------- setup
"$ROOT/compat/kafka/install.sh" >&2
CP="$(cat "$ROOT/compat/kafka/lib/classpath.txt")"
mkdir -p "$WORK/classes"
javac -nowarn -d "$WORK/classes" -cp "$CP" "$HERE"/AssignConsumerPerf.java "$HERE"/FixedRateLatency.java
TOOLS_CP="$WORK/classes:$CP"
if [[ "$SKIP_BUILD" != 1 ]]; then
  (cd "$ROOT" && cargo build --release >&2)
fi
# A private copy: another build may replace target/release/dlog while we measure.
cp "$ROOT/target/release/dlog" "$WORK/dlog"
DLOG_COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"

java_tool() { # java_tool TIMEOUT_S MAIN ARGS... (stdout+stderr to caller)
  local limit="$1"; shift
  timeout -k 5 "$limit" java "${CLIENT_JVM[@]}" -cp "$TOOLS_CP" "$@"
}

create_topic() { # create_topic BOOTSTRAP TOPIC PARTITIONS
  java_tool 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --create \
    --topic "$2" --partitions "$3" --replication-factor 1 >>"$WORK/raw/topics.log" 2>&1 \
    || { log "creating topic $2 failed:"; tail -n 5 "$WORK/raw/topics.log" >&2; return 1; }
}

# ---------------------------------------------------------------- broker lifecycle
BROKER_PID=""
SAMPLER_PID=""
KAFKA_DATA=""
start_broker() { # start_broker NAME -> sets BROKER_PID, BOOTSTRAP
  local name="$1"
  case "$name" in
    dlog)
      BOOTSTRAP="127.0.0.1:$DLOG_PORT"
      if port_open "$DLOG_PORT"; then log "port $DLOG_PORT busy"; exit 1; fi
      "$WORK/dlog" --listen "$BOOTSTRAP" --data-dir "$WORK/dlog-data" >"$WORK/dlog.log" 2>&1 &
      BROKER_PID=$!
      local deadline=$((SECONDS + 30))
      until port_open "$DLOG_PORT"; do
        kill -0 "$BROKER_PID" 2>/dev/null || { log "dlog exited:"; tail -n 20 "$WORK/dlog.log" >&2; exit 1; }
        (( SECONDS < deadline )) || { log "dlog did not listen in 30 s"; exit 1; }
        sleep 0.2
      done ;;
    kafka)
      BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
      KAFKA_DATA="$WORK/kafka-data"
      "$ROOT/compat/kafka/start.sh" "$KAFKA_PORT" "$KAFKA_DATA" >&2
      BROKER_PID="$(cat "$KAFKA_DATA/kafka.pid")" ;;
  esac
  # Overall peak RSS, sampled (cross-check of the per-scenario VmHWM figures).
  ( while kill -0 "$BROKER_PID" 2>/dev/null; do
      awk '/^VmRSS/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null || true
      sleep 0.2
    done ) >"$WORK/raw/$name-rss-samples.txt" &
  SAMPLER_PID=$!
  log "$name started (pid $BROKER_PID) on $BOOTSTRAP"
}

stop_broker() { # stop_broker NAME
  local name="$1"
  [[ -n "$BROKER_PID" ]] || return 0
  case "$name" in
    dlog)
      kill -TERM "$BROKER_PID" 2>/dev/null || true
      for _ in $(seq 1 150); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$BROKER_PID" 2>/dev/null || true
      wait "$BROKER_PID" 2>/dev/null || true ;;
    kafka)
      "$ROOT/compat/kafka/stop.sh" "$KAFKA_DATA" >&2 || true ;;
  esac
  if [[ -n "$SAMPLER_PID" ]]; then wait "$SAMPLER_PID" 2>/dev/null || true; fi
  BROKER_PID=""; SAMPLER_PID=""
}

CURRENT=""
cleanup() { if [[ -n "$CURRENT" ]]; then stop_broker "$CURRENT"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- CPU used by others
# The machine is shared (other builds, hypervisor steal). Foreign CPU = all busy CPU time from
# /proc/stat (steal included) minus what this script's process tree used: the script and its
# reaped children (clients), the broker, the RSS sampler. Recorded per scenario; before each
# scenario the script waits (bounded by QUIET_WAIT_MAX s) until a 5 s window is quiet.
CLK_TCK="$(getconf CLK_TCK)"
NPROC="$(nproc)"
QUIET_WAIT_MAX="${QUIET_WAIT_MAX:-900}"
QUIET_FOREIGN_PCT_MAX="${QUIET_FOREIGN_PCT_MAX:-10}"
busy_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
tree_jiffies() { # utime+stime+cutime+cstime of the given pids (missing pids count 0)
  local total=0 pid
  for pid in "$@"; do
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || continue
    total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
ours_jiffies() { tree_jiffies "$$" "$BROKER_PID" "$SAMPLER_PID"; }
CPU_MARK=()
cpu_mark() { CPU_MARK=("$(busy_jiffies)" "$(ours_jiffies)" "$(date +%s%N)"); }
foreign_pct() { # foreign CPU since cpu_mark, in % of all cores
  local busy ours now
  busy="$(busy_jiffies)"; ours="$(ours_jiffies)"; now="$(date +%s%N)"
  awk -v b=$((busy - CPU_MARK[0])) -v o=$((ours - CPU_MARK[1])) -v ns=$((now - CPU_MARK[2])) \
    -v hz="$CLK_TCK" -v n="$NPROC" 'BEGIN { f = (b - o) / hz / (ns / 1e9 * n) * 100; if (f < 0) f = 0; printf "%.1f", f }'
}
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT_MAX)) pct
  while :; do
    cpu_mark; sleep 5; pct="$(foreign_pct)"
    awk -v p="$pct" -v m="$QUIET_FOREIGN_PCT_MAX" 'BEGIN { exit !(p <= m) }' && return 0
    if (( SECONDS >= deadline )); then log "machine still busy ($pct% foreign CPU); measuring anyway"; return 0; fi
    log "waiting for a quiet machine: $pct% of the CPUs used by other processes"
  done
}
scenario_begin() { wait_quiet; rss_reset; cpu_mark; }
scenario_end() { # scenario_end BROKER SCENARIO
  local pct; pct="$(foreign_pct)"
  record "$1" "$2" 0 rss_kb "$(rss_peak_kb)"
  record "$1" "$2" 0 foreign_cpu_pct "$pct"
  log "$1 $2: peak RSS $(rss_peak_kb) kB, foreign CPU $pct%"
}

rss_reset() { echo 5 >"/proc/$BROKER_PID/clear_refs" 2>/dev/null || true; }
rss_peak_kb() { awk '/^VmHWM/ {print $2}' "/proc/$BROKER_PID/status"; }

# ---------------------------------------------------------------- scenarios
produce() { # produce BROKER TOPIC RECORDS SIZE ACKS -> prints "rec_s mb_s avg_ms p99_ms"
  local out="$WORK/raw/$1-produce-$2.txt"
  if ! java_tool "$RUN_TIMEOUT" org.apache.kafka.tools.ProducerPerformance --topic "$2" \
      --num-records "$3" --record-size "$4" --throughput -1 \
      --producer-props bootstrap.servers="$BOOTSTRAP" acks="$5" "${PRODUCER_PROPS[@]}" >"$out" 2>&1; then
    log "ProducerPerformance failed on $1 (topic $2):"; grep -v '^\s*$' "$out" | tail -n 5 >&2; return 1
  fi
  if grep -q 'Exception' "$out"; then
    log "ProducerPerformance reported errors on $1 (topic $2):"; grep -m3 'Exception' "$out" >&2; return 1
  fi
  # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, p50 ms 50th, ..."
  sed -n 's/^\([0-9]*\) records sent, \([0-9.]*\) records\/sec (\([0-9.]*\) MB\/sec), \([0-9.]*\) ms avg latency.* \([0-9.]*\) ms 99th.*/\1 \2 \3 \4 \5/p' "$out" | tail -n1 |
    awk -v want="$3" '$1 != want { exit 1 } { print $2, $3, $4, $5 }'
}

consume() { # consume BROKER TOPIC RECORDS TAG -> prints "mb_s msg_s"
  local out="$WORK/raw/$1-consume-$2-$4.txt"
  java_tool "$RUN_TIMEOUT" AssignConsumerPerf "$BOOTSTRAP" "$2" "$3" $((RUN_TIMEOUT * 1000 - 20000)) >"$out" 2>&1 \
    || { log "AssignConsumerPerf failed on $1:"; tail -n 5 "$out" >&2; return 1; }
  sed -n 's/^RESULT .*mb_per_sec=\([0-9.]*\) msg_per_sec=\([0-9.]*\).*/\1 \2/p' "$out"
}

latency() { # latency BROKER TOPIC WARMUP_S MEASURE_S -> prints "p50 p99 p999 max"
  local out="$WORK/raw/$1-latency-$2.txt"
  java_tool "$RUN_TIMEOUT" FixedRateLatency "$BOOTSTRAP" "$2" "$LAT_RATE" "$3" "$4" "$LAT_SIZE" all >"$out" 2>&1 \
    || { log "FixedRateLatency failed on $1:"; tail -n 5 "$out" >&2; return 1; }
  sed -n 's/^RESULT .*p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\) p999_ms=\([0-9.]*\) max_ms=\([0-9.]*\).*/\1 \2 \3 \4/p' "$out"
}

measure_broker() { # measure_broker NAME
  local b="$1" r size acks n topic line
  CURRENT="$b"
  start_broker "$b"

  log "$b: warm-up"
  create_topic "$BOOTSTRAP" warmup "$PARTITIONS"
  create_topic "$BOOTSTRAP" warmup-lat 1
  produce "$b" warmup "$N_SMALL" 100 1 >/dev/null
  produce "$b" warmup $((N_LARGE / 2)) 1024 all >/dev/null
  consume "$b" warmup "$N_SMALL" warmup >/dev/null
  latency "$b" warmup-lat 1 3 >/dev/null

  for size in 100 1024; do
    n=$N_SMALL; [[ $size == 1024 ]] && n=$N_LARGE
    for acks in 1 all; do
      scenario_begin
      for r in $(seq 1 "$RUNS"); do
        topic="p$size-acks$acks-r$r"
        create_topic "$BOOTSTRAP" "$topic" "$PARTITIONS"
        line="$(produce "$b" "$topic" "$n" "$size" "$acks")" || { record "$b" "produce-$size-$acks" "$r" failed 1; continue; }
        read -r rec_s mb_s avg_ms p99_ms <<<"$line"
        log "$b produce size=$size acks=$acks run $r: $mb_s MB/s, $rec_s rec/s, avg $avg_ms ms, p99 $p99_ms ms"
        record "$b" "produce-$size-$acks" "$r" mb_s "$mb_s"
        record "$b" "produce-$size-$acks" "$r" rec_s "$rec_s"
        record "$b" "produce-$size-$acks" "$r" p99_ms "$p99_ms"
      done
      scenario_end "$b" "produce-$size-$acks"
    done
    # Consume from page cache: the topic the first acks=1 run just wrote (n records).
    scenario_begin
    for r in $(seq 1 "$RUNS"); do
      line="$(consume "$b" "p$size-acks1-r1" "$n" "r$r")" || { record "$b" "consume-$size" "$r" failed 1; continue; }
      read -r mb_s msg_s <<<"$line"
      log "$b consume size=$size run $r: $mb_s MB/s, $msg_s msg/s"
      record "$b" "consume-$size" "$r" mb_s "$mb_s"
      record "$b" "consume-$size" "$r" rec_s "$msg_s"
    done
    scenario_end "$b" "consume-$size"
  done

  scenario_begin
  for r in $(seq 1 "$RUNS"); do
    topic="lat-r$r"
    create_topic "$BOOTSTRAP" "$topic" 1
    line="$(latency "$b" "$topic" "$LAT_WARMUP" "$LAT_SECONDS")" || { record "$b" latency "$r" failed 1; continue; }
    read -r p50 p99 p999 max <<<"$line"
    log "$b latency run $r: p50 $p50 ms, p99 $p99 ms, p99.9 $p999 ms, max $max ms"
    record "$b" latency "$r" p50_ms "$p50"
    record "$b" latency "$r" p99_ms "$p99"
    record "$b" latency "$r" p999_ms "$p999"
  done
  scenario_end "$b" latency

  # Kafka's own group-based tools, for the record: do they run against this broker?
  local out="$WORK/raw/$b-ConsumerPerformance.txt"
  if java_tool 60 org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$BOOTSTRAP" \
      --topic p100-acks1-r1 --messages "$N_SMALL" --timeout 15000 >"$out" 2>&1 \
      && ! grep -q 'Exception\|WARNING' "$out"; then
    # start, end, MB, MB.sec, nMsg, nMsg.sec, rebalance.ms, fetch.ms, fetch.MB.sec, fetch.nMsg.sec
    record "$b" tool-ConsumerPerformance 1 fetch_mb_s "$(grep -E '^[0-9]{4}-' "$out" | tail -n1 | awk -F', ' '{print $9}')"
  else
    record "$b" tool-ConsumerPerformance 1 error "\"$(grep -m1 -E 'Exception|WARNING' "$out" | tr -d '\r",')\""
  fi
  # Its 6th argument is a properties file applied to its producer and consumer alike.
  echo "enable.idempotence=false" >"$WORK/e2e.properties"
  out="$WORK/raw/$b-EndToEndLatency.txt"
  local avg
  # 100 s: against dlog its consumer spends 60 s failing to commit offsets at the end.
  if java_tool 100 org.apache.kafka.tools.EndToEndLatency "$BOOTSTRAP" lat-r1 2000 all 100 \
      "$WORK/e2e.properties" >"$out" 2>&1; then
    record "$b" tool-EndToEndLatency 1 avg_ms "$(sed -n 's/^Avg latency: \([0-9.]*\) ms/\1/p' "$out")"
  else
    avg="$(sed -n 's/^Avg latency: \([0-9.]*\) ms/\1/p' "$out")"
    record "$b" tool-EndToEndLatency 1 error "\"${avg:+measured $avg ms avg then }exit 1: $(grep -m1 'Exception' "$out" | tr -d '\r",')\""
  fi

  record "$b" overall 0 rss_sampled_max_kb "$(sort -n "$WORK/raw/$b-rss-samples.txt" | tail -n1)"
  stop_broker "$b"
  CURRENT=""
  rm -rf "$WORK/dlog-data" "$WORK/kafka-data/kraft-logs" # free disk and page cache
}

log "work dir $WORK; runs=$RUNS n_small=$N_SMALL n_large=$N_LARGE partitions=$PARTITIONS"
for broker in dlog kafka; do
  [[ -z "$ONLY" || "$ONLY" == "$broker" ]] || continue
  measure_broker "$broker"
done

# ---------------------------------------------------------------- table
MACHINE="$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr), $(java -version 2>&1 | head -n1)"
DATE="$(date -u +'%Y-%m-%d %H:%M UTC')"
python3 - "$RESULTS" "$WORK/table.md" "$MACHINE" "$DATE" "$DLOG_COMMIT" "$RUNS" "$N_SMALL" "$N_LARGE" \
  "$PARTITIONS" "$LAT_RATE" "$LAT_SIZE" "$LAT_SECONDS" "$LAT_WARMUP" <<'PY'
import csv, statistics, sys
(results, table, machine, date, commit, runs, n_small, n_large, partitions,
 lat_rate, lat_size, lat_seconds, lat_warmup) = sys.argv[1:]
data = {}
for broker, scenario, run, metric, value in csv.reader(open(results)):
    data.setdefault((broker, scenario, metric), []).append(value)

def med(broker, scenario, metric):
    values = [float(v) for v in data.get((broker, scenario, metric), []) if v not in ("", "failed")]
    return statistics.median(values) if values else None

def rss(broker, scenario):
    kb = med(broker, scenario, "rss_kb")
    return f"{kb / 1024:.0f} MiB" if kb else "–"

def failed(broker, scenario):
    return len(data.get((broker, scenario, "failed"), []))

rows = []
def row(label, scenario, fmt, key, higher_better):
    cells = []
    for broker in ("dlog", "kafka"):
        text = fmt(broker, scenario)
        if failed(broker, scenario):
            text += f" ({failed(broker, scenario)} run(s) failed)"
        foreign = med(broker, scenario, "foreign_cpu_pct")
        if foreign is not None and foreign > 5:
            text += f" ⚠ {foreign:.0f}% foreign CPU"
        cells += [text, rss(broker, scenario)]
    a, b = med("dlog", scenario, key), med("kafka", scenario, key)
    ratio = f"{a / b:.2f}×" if a and b else "–"
    rows.append(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {ratio} |")

def produce_fmt(broker, scenario):
    mb, rec, p99 = (med(broker, scenario, m) for m in ("mb_s", "rec_s", "p99_ms"))
    return "–" if mb is None else f"{mb:.1f} MB/s · {rec / 1000:.0f}k rec/s · p99 {p99:.0f} ms"

def consume_fmt(broker, scenario):
    mb, rec = med(broker, scenario, "mb_s"), med(broker, scenario, "rec_s")
    return "–" if mb is None else f"{mb:.1f} MB/s · {rec / 1000:.0f}k rec/s"

def latency_fmt(broker, scenario):
    p = [med(broker, scenario, m) for m in ("p50_ms", "p99_ms", "p999_ms")]
    return "–" if p[0] is None else " / ".join(f"{v:.2f}" for v in p) + " ms"

for size in ("100", "1024"):
    for acks in ("1", "all"):
        row(f"produce {size} B, acks={acks}", f"produce-{size}-{acks}", produce_fmt, "mb_s", True)
for size in ("100", "1024"):
    row(f"consume {size} B (page cache)", f"consume-{size}", consume_fmt, "mb_s", True)
row(f"e2e latency p50 / p99 / p99.9, {lat_size} B @ {lat_rate}/s, acks=all", "latency", latency_fmt, "p99_ms", False)

def tool(broker, name):
    if (broker, name, "error") in data:
        return "fails: " + data[(broker, name, "error")][0]
    for metric, unit in (("fetch_mb_s", "MB/s (fetch)"), ("avg_ms", "ms avg")):
        if (broker, name, metric) in data:
            return f"{data[(broker, name, metric)][0]} {unit}"
    return "–"

out = [
    f"Measured {date} on {machine}; dlog {commit}, Apache Kafka 4.1.1 (compat/kafka/start.sh: "
    "-Xmx1g G1, 2 network / 4 I/O threads). Medians of "
    f"{runs} runs after a warm-up; produce: ProducerPerformance, {n_small} × 100 B or {n_large} × 1 KB "
    f"records per run, {partitions} partitions, RF 1, linger.ms=5, batch.size=16384, no compression, "
    "enable.idempotence=false. Consume: AssignConsumerPerf (assign(), 1 MiB partition fetch) reading "
    "what the first acks=1 run wrote. Latency: FixedRateLatency, 1 partition, linger.ms=0, "
    f"{lat_warmup} s warm-up + {lat_seconds} s measured. Peak RSS = broker VmHWM during the scenario.",
    "",
    "| Scenario | dlog | dlog peak RSS | Kafka 4.1.1 | Kafka peak RSS | dlog/Kafka |",
    "|---|---|---|---|---|---|",
    *rows,
    "",
    "Ratio: MB/s for throughput rows (higher is better for dlog), p99 for the latency row (lower is better for dlog). "
    "Foreign CPU (other processes and hypervisor steal, % of all cores) during the scenarios: dlog max "
    + "{:.1f}%".format(max([med("dlog", s, "foreign_cpu_pct") or 0 for (b, s, m) in data if b == "dlog"] or [0]))
    + ", Kafka max "
    + "{:.1f}%".format(max([med("kafka", s, "foreign_cpu_pct") or 0 for (b, s, m) in data if b == "kafka"] or [0]))
    + " (⚠ marks a scenario above 5%).",
    "",
    "Kafka's own group-based tools, run once each against each broker:",
    "",
    f"- `ConsumerPerformance` (subscribe()): dlog: {tool('dlog', 'tool-ConsumerPerformance')}; "
    f"Kafka: {tool('kafka', 'tool-ConsumerPerformance')}",
    f"- `EndToEndLatency` (2000 × 100 B, acks=all, synchronous ping-pong): dlog: "
    f"{tool('dlog', 'tool-EndToEndLatency')}; Kafka: {tool('kafka', 'tool-EndToEndLatency')}",
    "",
    "Overall peak broker RSS sampled every 200 ms: dlog "
    + (f"{med('dlog', 'overall', 'rss_sampled_max_kb') / 1024:.0f} MiB" if med('dlog', 'overall', 'rss_sampled_max_kb') else "–")
    + ", Kafka "
    + (f"{med('kafka', 'overall', 'rss_sampled_max_kb') / 1024:.0f} MiB" if med('kafka', 'overall', 'rss_sampled_max_kb') else "–")
    + ".",
]
open(table, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY

if [[ "$UPDATE_README" == 1 ]]; then
  python3 - "$ROOT/benches/README.md" "$WORK/table.md" <<'PY'
import sys
readme, table = sys.argv[1:]
text = open(readme).read()
begin, end = "<!-- load-results:begin -->", "<!-- load-results:end -->"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(readme, "w").write(head + begin + "\n" + open(table).read() + end + tail)
PY
  log "updated benches/README.md"
fi
log "raw results in $WORK/results.csv and $WORK/raw/"
