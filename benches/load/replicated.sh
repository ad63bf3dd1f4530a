#!/usr/bin/env bash
# Replicated load test: a three-node dlog cluster and a three-node Apache Kafka 4.1.1 KRaft
# cluster on this machine (one cluster at a time, combined broker+controller nodes on
# 127.0.0.1), topics with replication factor 3 and min.insync.replicas=2, the same Java client
# tools and settings against both. Prints a side-by-side markdown table.
#
# Usage: benches/load/replicated.sh [--update-readme] [--only dlog|kafka] [--quick]
#   --update-readme  also write the table into benches/README.md (replicated-results markers)
#   --only B         measure one cluster only (the table then has one column filled)
#   --quick          tiny volumes and 1 run per scenario: a smoke test of the script itself
# Environment (defaults in brackets):
#   LOAD_WORK_DIR [/tmp/dlog-replicated]  scratch: node data, logs, raw results (wiped at start)
#   RUNS [3]  N_SMALL [1000000] 100-byte records per produce run  N_LARGE [300000] 1 KB records
#   PARTITIONS [3]  RUN_TIMEOUT [180] seconds per client run  SKIP_BUILD [0]
#   DLOG_BIN [target/release/dlog] binary to copy and run (with SKIP_BUILD=1)
#   LAT_RATE [1000] msg/s  LAT_WARMUP [5] s  LAT_SECONDS [20] s  LAT_SIZE [1024] bytes
#   FO_TIMEOUT [90] s to wait for the first produce after a leader kill
#   SESSION_TIMEOUT_MS [9000] broker.session.timeout.ms on both (Kafka's default)
#   DLOG_BASE_PORT [19600]  KAFKA_BASE_PORT [19700]: node N listens on BASE+10N (clients) and
#     BASE+10N+1 (controller)
#   QUIET_WAIT_MAX [600] s to wait before a scenario for other processes' CPU use to drop to
#   QUIET_FOREIGN_PCT_MAX [10] % of all cores; the CPU others used during it is reported
#
# Scenarios (RUNS each, medians in the table; every topic: RF 3, PARTITIONS partitions,
# min.insync.replicas=2; producers acks=all):
#   produce 1 KB and 100 B: ProducerPerformance --throughput -1 into a fresh topic per run;
#   latency: FixedRateLatency (1 JVM, producer at LAT_RATE/s, assign() consumer) p50/p99/p99.9;
#   failover: FailoverProbe sends one record at a time (acks=all) to partition 0 through all
#     three nodes; the script finds partition 0's leader (kafka-topics --describe), kill -9s it
#     and measures the time from the kill (after the process is reaped) to the first
#     acknowledged produce; then restarts the node and waits until every ISR is full again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="${LOAD_WORK_DIR:-/tmp/dlog-replicated}"
RUNS="${RUNS:-3}"
N_SMALL="${N_SMALL:-1000000}"
N_LARGE="${N_LARGE:-300000}"
PARTITIONS="${PARTITIONS:-3}"
RUN_TIMEOUT="${RUN_TIMEOUT:-180}"
LAT_RATE="${LAT_RATE:-1000}"
LAT_WARMUP="${LAT_WARMUP:-5}"
LAT_SECONDS="${LAT_SECONDS:-20}"
LAT_SIZE="${LAT_SIZE:-1024}"
FO_TIMEOUT="${FO_TIMEOUT:-90}"
SESSION_TIMEOUT_MS="${SESSION_TIMEOUT_MS:-9000}"
HEARTBEAT_MS=2000 # broker.heartbeat.interval.ms, the default of both
DLOG_BASE_PORT="${DLOG_BASE_PORT:-19600}"
KAFKA_BASE_PORT="${KAFKA_BASE_PORT:-19700}"
QUIET_WAIT_MAX="${QUIET_WAIT_MAX:-600}"
# Identical for both clusters (as benches/load/run.sh).
PRODUCER_PROPS=(linger.ms=5 batch.size=16384 compression.type=none enable.idempotence=false)
# The failover probe: short client backoffs so that the measured time is the cluster's, not
# the client's exponential backoff (defaults: up to 1 s).
PROBE_PROPS=(retry.backoff.ms=50 retry.backoff.max.ms=100 reconnect.backoff.ms=50 reconnect.backoff.max.ms=100)
CLIENT_JVM=(-Xmx512m "-Dlog4j2.configurationFile=$HERE/log4j2-client.xml")
KAFKA_JVM=(-Xmx512m -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$ROOT/compat/kafka/log4j2.xml")

UPDATE_README=0
ONLY=""
QUICK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --update-readme) UPDATE_README=1 ;;
    --only) ONLY="$2"; shift ;;
    --quick) QUICK=1; RUNS=1; N_SMALL=100000; N_LARGE=30000; LAT_WARMUP=1; LAT_SECONDS=3 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

source "$HERE/common.sh"

rm -rf "$WORK"
mkdir -p "$WORK/raw"
RESULTS="$WORK/results.csv" # cluster,scenario,run,metric,value
: >"$RESULTS"
record() { echo "$1,$2,$3,$4,$5" >>"$RESULTS"; }

# ---------------------------------------------------------------- setup
prepare_binaries
mkdir -p "$WORK/classes"
javac -nowarn -d "$WORK/classes" -cp "$CP" "$HERE"/FixedRateLatency.java "$HERE"/FailoverProbe.java
CP="$WORK/classes:$CP" # java_tool (common.sh) runs with $CP

# ---------------------------------------------------------------- cluster lifecycle
declare -A NODE_PID
CLUSTER=""
BASE=0
client_port() { echo $((BASE + $1 * 10)); }
controller_port() { echo $((BASE + $1 * 10 + 1)); }
voters() { echo "1@127.0.0.1:$(controller_port 1),2@127.0.0.1:$(controller_port 2),3@127.0.0.1:$(controller_port 3)"; }
bootstrap_all() { echo "127.0.0.1:$(client_port 1),127.0.0.1:$(client_port 2),127.0.0.1:$(client_port 3)"; }

kafka_properties() { # kafka_properties NODE
  local n="$1"
  cat <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$WORK/kafka/node$n/kraft-logs
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=104857600
broker.session.timeout.ms=$SESSION_TIMEOUT_MS
broker.heartbeat.interval.ms=$HEARTBEAT_MS
PROPS
}

start_node() { # start_node NODE (of $CLUSTER) -> NODE_PID[NODE]
  local n="$1"
  case "$CLUSTER" in
    dlog)
      "$WORK/dlog" --node-id "$n" --listen "127.0.0.1:$(client_port "$n")" \
        --controller-listen "127.0.0.1:$(controller_port "$n")" --controller-quorum-voters "$(voters)" \
        --data-dir "$WORK/dlog-data/node$n" --set "broker.session.timeout.ms=$SESSION_TIMEOUT_MS" \
        --set "broker.heartbeat.interval.ms=$HEARTBEAT_MS" >>"$WORK/raw/dlog-node$n.log" 2>&1 &
      NODE_PID[$n]=$! ;;
    kafka)
      java "${KAFKA_JVM[@]}" -cp "$CP" kafka.Kafka "$WORK/kafka/node$n/server.properties" \
        >>"$WORK/raw/kafka-node$n.log" 2>&1 </dev/null &
      NODE_PID[$n]=$! ;;
  esac
}

wait_listening() { # wait_listening NODE
  local deadline=$((SECONDS + 90))
  until port_open "$(client_port "$1")"; do
    kill -0 "${NODE_PID[$1]}" 2>/dev/null || { log "$CLUSTER node $1 exited:"; tail -n 20 "$WORK/raw/$CLUSTER-node$1.log" >&2; exit 1; }
    (( SECONDS < deadline )) || { log "$CLUSTER node $1 did not listen in 90 s"; exit 1; }
    sleep 0.3
  done
}

start_cluster() { # start_cluster NAME
  CLUSTER="$1"
  case "$CLUSTER" in dlog) BASE=$DLOG_BASE_PORT ;; kafka) BASE=$KAFKA_BASE_PORT ;; esac
  local n p
  for n in 1 2 3; do
    for p in "$(client_port "$n")" "$(controller_port "$n")"; do
      if port_open "$p"; then log "port $p busy"; exit 1; fi
    done
  done
  if [[ "$CLUSTER" == kafka ]]; then
    local id
    id="$(timeout 60 java -Xmx256m -cp "$CP" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    for n in 1 2 3; do
      mkdir -p "$WORK/kafka/node$n"
      kafka_properties "$n" >"$WORK/kafka/node$n/server.properties"
      timeout 60 java -Xmx256m -cp "$CP" "-Dlog4j2.configurationFile=$ROOT/compat/kafka/log4j2.xml" \
        kafka.tools.StorageTool format --ignore-formatted -t "$id" \
        -c "$WORK/kafka/node$n/server.properties" >>"$WORK/raw/kafka-format.log" 2>&1 \
        || { log "kafka storage format failed"; tail -n 20 "$WORK/raw/kafka-format.log" >&2; exit 1; }
    done
  fi
  for n in 1 2 3; do start_node "$n"; done
  for n in 1 2 3; do wait_listening "$n"; done
  # Ready once an RF 3 topic can be created (all three brokers registered and unfenced).
  local deadline=$((SECONDS + 120))
  until create_topic ready 1 2>/dev/null; do
    (( SECONDS < deadline )) || { log "$CLUSTER: cannot create an RF 3 topic in 120 s"; tail -n 5 "$WORK/raw/topics.log" >&2; exit 1; }
    sleep 1
  done
  wait_isr_full ready 1 60 || { log "$CLUSTER: ISR of the first topic not full"; exit 1; }
  log "$CLUSTER cluster up: pids ${NODE_PID[1]} ${NODE_PID[2]} ${NODE_PID[3]}, bootstrap $(bootstrap_all)"
}

stop_cluster() {
  local n
  for n in 1 2 3; do [[ -n "${NODE_PID[$n]:-}" ]] && kill -TERM "${NODE_PID[$n]}" 2>/dev/null; done
  for n in 1 2 3; do
    [[ -n "${NODE_PID[$n]:-}" ]] || continue
    for _ in $(seq 1 100); do kill -0 "${NODE_PID[$n]}" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "${NODE_PID[$n]}" 2>/dev/null || true
    wait "${NODE_PID[$n]}" 2>/dev/null || true
    NODE_PID[$n]=""
  done
  CLUSTER=""
}

PROBE_PID=""
cleanup() {
  [[ -n "$PROBE_PID" ]] && kill -TERM "$PROBE_PID" 2>/dev/null
  stop_cluster || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

create_topic() { # create_topic TOPIC PARTITIONS (RF 3, min.insync.replicas=2)
  java_tool 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_all)" --create \
    --topic "$1" --partitions "$2" --replication-factor 3 --config min.insync.replicas=2 \
    >>"$WORK/raw/topics.log" 2>&1 || { log "creating topic $1 failed:"; tail -n 3 "$WORK/raw/topics.log" >&2; return 1; }
}

describe() { # describe TOPIC -> kafka-topics --describe output on stdout
  java_tool 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_all)" --describe --topic "$1" 2>/dev/null
}

wait_isr_full() { # wait_isr_full TOPIC PARTITIONS TIMEOUT_S: every partition has a 3-member ISR
  local deadline=$((SECONDS + $3)) full
  while :; do
    full="$(describe "$1" | grep -E 'Partition: [0-9]+' | grep -cE 'Isr: [0-9]+,[0-9]+,[0-9]+' || true)"
    [[ "$full" == "$2" ]] && return 0
    (( SECONDS < deadline )) || return 1
    sleep 1
  done
}

active_controller() { # the quorum's leader id
  java_tool 60 org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$(bootstrap_all)" \
    describe --status 2>/dev/null | sed -n 's/^LeaderId:\s*\([0-9-]*\).*/\1/p'
}

# ---------------------------------------------------------------- CPU used by others and RSS
# As benches/load/run.sh: foreign CPU = busy CPU of the machine (/proc/stat, steal included)
# minus the CPU of this script's tree (the script, its reaped clients and killed nodes) and
# of the live nodes. Broker RSS: the sum of the three nodes' VmHWM after a clear_refs reset.
ours_jiffies() { tree_jiffies "$$" "${NODE_PID[1]:-}" "${NODE_PID[2]:-}" "${NODE_PID[3]:-}"; }
CPU_MARK=()
cpu_mark() { CPU_MARK=("$(busy_jiffies)" "$(ours_jiffies)" "$(date +%s%N)"); }
foreign_since_mark() {
  foreign_pct $(($(busy_jiffies) - CPU_MARK[0])) $(($(ours_jiffies) - CPU_MARK[1])) $(($(date +%s%N) - CPU_MARK[2]))
}
wait_quiet() { # overrides common.sh's: the idle nodes are ours
  local deadline=$((SECONDS + QUIET_WAIT_MAX)) pct
  while :; do
    cpu_mark; sleep 5; pct="$(foreign_since_mark)"
    awk -v p="$pct" -v m="$QUIET_FOREIGN_PCT_MAX" 'BEGIN { exit !(p <= m) }' && return 0
    if (( SECONDS >= deadline )); then log "machine still busy ($pct% foreign CPU); measuring anyway"; return 0; fi
    log "waiting for a quiet machine: $pct% of the CPUs used by other processes"
  done
}
rss_reset() { local n; for n in 1 2 3; do echo 5 >"/proc/${NODE_PID[$n]}/clear_refs" 2>/dev/null || true; done; }
rss_sum_kb() {
  local n total=0 kb
  for n in 1 2 3; do
    kb="$(awk '/^VmHWM/ {print $2}' "/proc/${NODE_PID[$n]}/status" 2>/dev/null || true)"
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}
scenario_begin() { wait_quiet; rss_reset; cpu_mark; }
scenario_end() { # scenario_end CLUSTER SCENARIO
  local pct; pct="$(foreign_since_mark)"
  record "$1" "$2" 0 foreign_cpu_pct "$pct"
  record "$1" "$2" 0 rss_kb "$(rss_sum_kb)"
  log "$1 $2: foreign CPU $pct%, peak RSS of the 3 nodes $(rss_sum_kb) kB"
}

# ---------------------------------------------------------------- scenarios
produce() { # produce CLUSTER TOPIC RECORDS SIZE -> prints "rec_s mb_s avg_ms p99_ms"
  local out="$WORK/raw/$1-produce-$2.txt"
  if ! java_tool "$RUN_TIMEOUT" org.apache.kafka.tools.ProducerPerformance --topic "$2" \
      --num-records "$3" --record-size "$4" --throughput -1 \
      --producer-props bootstrap.servers="$(bootstrap_all)" acks=all "${PRODUCER_PROPS[@]}" >"$out" 2>&1; then
    log "ProducerPerformance failed on $1 (topic $2):"; grep -v '^\s*$' "$out" | tail -n 5 >&2; return 1
  fi
  if grep -q 'Exception' "$out"; then
    log "ProducerPerformance reported errors on $1 (topic $2):"; grep -m3 'Exception' "$out" >&2; return 1
  fi
  sed -n 's/^\([0-9]*\) records sent, \([0-9.]*\) records\/sec (\([0-9.]*\) MB\/sec), \([0-9.]*\) ms avg latency.* \([0-9.]*\) ms 99th.*/\1 \2 \3 \4 \5/p' "$out" | tail -n1 |
    awk -v want="$3" '$1 != want { exit 1 } { print $2, $3, $4, $5 }'
}

latency() { # latency CLUSTER TOPIC WARMUP_S MEASURE_S -> prints "p50 p99 p999 max"
  local out="$WORK/raw/$1-latency-$2.txt"
  java_tool "$RUN_TIMEOUT" FixedRateLatency "$(bootstrap_all)" "$2" "$LAT_RATE" "$3" "$4" "$LAT_SIZE" all >"$out" 2>&1 \
    || { log "FixedRateLatency failed on $1:"; tail -n 5 "$out" >&2; return 1; }
  sed -n 's/^RESULT .*p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\) p999_ms=\([0-9.]*\) max_ms=\([0-9.]*\).*/\1 \2 \3 \4/p' "$out"
}

FO_LINE=""
# Not in a $(…) subshell: it kills and restarts nodes (NODE_PID). Sets FO_LINE.
failover() { # failover CLUSTER TOPIC RUN -> FO_LINE="ms leader was_controller"
  local b="$1" topic="$2" r="$3" out="$WORK/raw/$1-failover-r$3.txt" leader controller killed_ms first t0 n
  wait_isr_full "$topic" "$PARTITIONS" 120 || { log "$b: ISR of $topic not full before run $r"; return 1; }
  leader="$(describe "$topic" | sed -n 's/.*Partition: 0\s.*Leader: \([0-9-]*\).*/\1/p' | head -n1)"
  [[ "$leader" =~ ^[123]$ ]] || { log "$b: no leader for $topic-0 ('$leader')"; return 1; }
  controller="$(active_controller || true)"
  : >"$out"
  timeout -k 5 $((FO_TIMEOUT + 60)) java "${CLIENT_JVM[@]}" -cp "$CP" FailoverProbe "$(bootstrap_all)" "$topic" 0 \
    $((FO_TIMEOUT + 40)) "${PROBE_PROPS[@]}" >"$out" 2>&1 &
  PROBE_PID=$!
  t0=$SECONDS
  until [[ "$(grep -c '^OK ' "$out" || true)" -ge 50 ]]; do
    kill -0 "$PROBE_PID" 2>/dev/null && (( SECONDS - t0 < 60 )) || { log "$b: the probe does not produce:"; tail -n 5 "$out" >&2; kill -TERM "$PROBE_PID" 2>/dev/null; wait "$PROBE_PID" 2>/dev/null; PROBE_PID=""; return 1; }
    sleep 0.2
  done
  sleep 1
  kill -KILL "${NODE_PID[$leader]}"
  wait "${NODE_PID[$leader]}" 2>/dev/null || true
  killed_ms="$(date +%s%3N)"
  echo "KILLED $killed_ms node $leader" >>"$WORK/raw/$b-failover-kills.txt"
  NODE_PID[$leader]=""
  first=""
  t0=$SECONDS
  while (( SECONDS - t0 < FO_TIMEOUT )); do
    first="$(awk -v k="$killed_ms" '$1 == "OK" && $2 >= k { print $2; exit }' "$out")"
    [[ -n "$first" ]] && break
    sleep 0.1
  done
  kill -TERM "$PROBE_PID" 2>/dev/null; wait "$PROBE_PID" 2>/dev/null || true; PROBE_PID=""
  log "$b failover run $r: killed node $leader (active controller: ${controller:-?}); sends that failed for good after the kill: $(awk -v k="$killed_ms" '$1 == "ERR" && $2 >= k' "$out" | wc -l)"
  awk -v k="$killed_ms" '$1 == "ERR" && $2 >= k { sub(/^ERR [0-9]+ /, ""); print }' "$out" | sort | uniq -c | sort -rn | head -n 3 >&2
  # Restart the killed node on its data and wait until every ISR is full again.
  start_node "$leader"
  wait_listening "$leader"
  wait_isr_full "$topic" "$PARTITIONS" 180 || log "$b: ISR of $topic still not full 180 s after the restart"
  [[ -n "$first" ]] || { log "$b: no successful produce within $FO_TIMEOUT s of the kill"; return 1; }
  FO_LINE="$((first - killed_ms)) $leader $([[ "$controller" == "$leader" ]] && echo 1 || echo 0)"
}

measure_cluster() { # measure_cluster NAME
  local b="$1" r size n topic line
  start_cluster "$b"

  log "$b: warm-up"
  create_topic warmup "$PARTITIONS"
  produce "$b" warmup $((N_LARGE / 2)) 1024 >/dev/null || true
  latency "$b" warmup 1 3 >/dev/null || true

  for size in 1024 100; do
    n=$N_SMALL; [[ $size == 1024 ]] && n=$N_LARGE
    scenario_begin
    for r in $(seq 1 "$RUNS"); do
      topic="p$size-r$r"
      create_topic "$topic" "$PARTITIONS"
      wait_isr_full "$topic" "$PARTITIONS" 60 || log "$b: ISR of $topic not full"
      line="$(produce "$b" "$topic" "$n" "$size")" || { record "$b" "produce-$size" "$r" failed 1; continue; }
      read -r rec_s mb_s avg_ms p99_ms <<<"$line"
      log "$b produce size=$size acks=all run $r: $mb_s MB/s, $rec_s rec/s, avg $avg_ms ms, p99 $p99_ms ms"
      record "$b" "produce-$size" "$r" mb_s "$mb_s"
      record "$b" "produce-$size" "$r" rec_s "$rec_s"
      record "$b" "produce-$size" "$r" p99_ms "$p99_ms"
    done
    scenario_end "$b" "produce-$size"
  done

  scenario_begin
  for r in $(seq 1 "$RUNS"); do
    topic="lat-r$r"
    create_topic "$topic" "$PARTITIONS"
    wait_isr_full "$topic" "$PARTITIONS" 60 || log "$b: ISR of $topic not full"
    line="$(latency "$b" "$topic" "$LAT_WARMUP" "$LAT_SECONDS")" || { record "$b" latency "$r" failed 1; continue; }
    read -r p50 p99 p999 max <<<"$line"
    log "$b latency run $r: p50 $p50 ms, p99 $p99 ms, p99.9 $p999 ms, max $max ms"
    record "$b" latency "$r" p50_ms "$p50"
    record "$b" latency "$r" p99_ms "$p99"
    record "$b" latency "$r" p999_ms "$p999"
  done
  scenario_end "$b" latency

  create_topic failover "$PARTITIONS"
  scenario_begin
  for r in $(seq 1 "$RUNS"); do
    failover "$b" failover "$r" || { record "$b" failover "$r" failed 1; continue; }
    read -r ms leader was_controller <<<"$FO_LINE"
    log "$b failover run $r: first acks=all produce to partition 0 $ms ms after kill -9 of its leader (node $leader, controller too: $was_controller)"
    record "$b" failover "$r" ms "$ms"
    record "$b" failover "$r" was_controller "$was_controller"
  done
  scenario_end "$b" failover

  stop_cluster
  rm -rf "$WORK/dlog-data" "$WORK/kafka" # free disk and page cache
}

log "work dir $WORK; runs=$RUNS n_small=$N_SMALL n_large=$N_LARGE partitions=$PARTITIONS; dlog $DLOG_COMMIT"
for cluster in dlog kafka; do
  [[ -z "$ONLY" || "$ONLY" == "$cluster" ]] || continue
  measure_cluster "$cluster"
done

# ---------------------------------------------------------------- table
MACHINE="$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr), $(java -version 2>&1 | head -n1)"
DATE="$(date -u +'%Y-%m-%d %H:%M UTC')"
python3 - "$RESULTS" "$WORK/table.md" "$MACHINE" "$DATE" "$DLOG_COMMIT" "$RUNS" "$N_SMALL" "$N_LARGE" \
  "$PARTITIONS" "$LAT_RATE" "$LAT_SIZE" "$LAT_SECONDS" "$LAT_WARMUP" "$SESSION_TIMEOUT_MS" "$QUICK" <<'PY'
import csv, statistics, sys
(results, table, machine, date, commit, runs, n_small, n_large, partitions,
 lat_rate, lat_size, lat_seconds, lat_warmup, session_ms, quick) = sys.argv[1:]
data = {}
for cluster, scenario, run, metric, value in csv.reader(open(results)):
    data.setdefault((cluster, scenario, metric), []).append(value)

def values(c, s, m):
    return [float(v) for v in data.get((c, s, m), []) if v not in ("", "failed")]

def med(c, s, m):
    v = values(c, s, m)
    return statistics.median(v) if v else None

def rss(c, s):
    kb = med(c, s, "rss_kb")
    return f"{kb / 1024:.0f} MiB" if kb else "–"

def failed(c, s):
    return len(data.get((c, s, "failed"), []))

rows = []
def row(label, scenario, fmt, key):
    cells = []
    for c in ("dlog", "kafka"):
        text = fmt(c, scenario)
        if failed(c, scenario):
            text += f" ({failed(c, scenario)} run(s) failed)"
        foreign = med(c, scenario, "foreign_cpu_pct")
        if foreign is not None:
            text += f" · {foreign:.0f}% foreign CPU" + (" ⚠" if foreign > 5 else "")
        cells += [text, rss(c, scenario)]
    a, b = med("dlog", scenario, key), med("kafka", scenario, key)
    ratio = f"{a / b:.2f}×" if a and b else "–"
    rows.append(f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {ratio} |")

def produce_fmt(c, s):
    mb, rec, p99 = (med(c, s, m) for m in ("mb_s", "rec_s", "p99_ms"))
    return "–" if mb is None else f"{mb:.1f} MB/s · {rec / 1000:.0f}k rec/s · p99 {p99:.0f} ms"

def latency_fmt(c, s):
    p = [med(c, s, m) for m in ("p50_ms", "p99_ms", "p999_ms")]
    return "–" if p[0] is None else " / ".join(f"{v:.2f}" for v in p) + " ms"

def failover_fmt(c, s):
    v = values(c, s, "ms")
    if not v:
        return "–"
    ctl = int(sum(values(c, s, "was_controller")))
    runs_text = ", ".join(f"{x / 1000:.2f}" for x in v)
    return f"{statistics.median(v) / 1000:.2f} s (runs: {runs_text} s; killed node was the active controller in {ctl}/{len(v)})"

row("produce 1 KB, acks=all (MB/s)", "produce-1024", produce_fmt, "mb_s")
row("produce 100 B, acks=all (records/s)", "produce-100", produce_fmt, "rec_s")
row(f"e2e latency p50 / p99 / p99.9, {lat_size} B @ {lat_rate}/s, acks=all", "latency", latency_fmt, "p99_ms")
row("kill -9 of partition 0's leader → first acks=all produce to it", "failover", failover_fmt, "ms")

out = []
if quick == "1":
    out += ["**Smoke figures (`--quick`: tiny volumes, 1 run): not results.**", ""]
out += [
    f"Measured {date} on {machine}; dlog {commit}, Apache Kafka 4.1.1. Three combined "
    "broker+controller nodes per cluster on 127.0.0.1, one cluster at a time (Kafka: -Xmx512m G1 "
    f"per node, 2 network / 4 I/O threads); broker.session.timeout.ms={session_ms} and "
    "broker.heartbeat.interval.ms=2000 on both. Topics: replication factor 3, "
    f"{partitions} partitions, min.insync.replicas=2; clients bootstrap through all three nodes. "
    f"Medians of {runs} run(s) after a warm-up. Produce: ProducerPerformance acks=all, "
    f"{n_large} × 1 KB or {n_small} × 100 B records per run into a fresh topic, linger.ms=5, "
    "batch.size=16384, no compression, enable.idempotence=false. Latency: FixedRateLatency, "
    f"linger.ms=0, {lat_warmup} s warm-up + {lat_seconds} s measured. Failover: FailoverProbe "
    "sends 100 B records one at a time (acks=all, retry/reconnect backoff ≤ 100 ms) to partition 0; "
    "time from kill -9 of partition 0's leader (process reaped) to the first acknowledged produce; "
    "the node is restarted and the ISRs refilled between runs. Peak RSS = sum of the three nodes' "
    "VmHWM during the scenario. Foreign CPU = CPU used by other processes and hypervisor steal "
    "during the scenario, % of all cores (⚠ above 5%).",
    "",
    "| Scenario (RF 3, min.insync.replicas=2) | dlog, 3 nodes | dlog peak RSS | Kafka 4.1.1, 3 nodes | Kafka peak RSS | dlog/Kafka |",
    "|---|---|---|---|---|---|",
    *rows,
    "",
    "Ratio: MB/s (1 KB) and records/s (100 B), higher is better for dlog; p99 latency and "
    "failover time, lower is better for dlog.",
]
open(table, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY

if [[ "$UPDATE_README" == 1 ]]; then
  python3 - "$ROOT/benches/README.md" "$WORK/table.md" <<'PY'
import sys
readme, table = sys.argv[1:]
text = open(readme).read()
begin, end = "<!-- replicated-results:begin -->", "<!-- replicated-results:end -->"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(readme, "w").write(head + begin + "\n" + open(table).read() + end + tail)
PY
  log "updated benches/README.md"
fi
log "raw results in $WORK/results.csv and $WORK/raw/"
