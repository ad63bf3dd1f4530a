#!/usr/bin/env bash
# Exactly-once costs, dlog next to Apache Kafka 4.1.1, one broker at a time, each on a fresh
# data directory:
#  1. Idempotence: Kafka's ProducerPerformance, RECORDS x 100 B, acks=all, PARTITIONS partitions,
#     linger.ms=5, batch.size=16384, enable.idempotence=false ("plain") and =true ("idempotent"),
#     alternating (plain, idempotent, idempotent, plain, ...) RUNS times each, every run into a
#     fresh topic after one warm-up produce. Medians of rec/s and of the broker's CPU time per
#     million records (every thread's schedstat).
#  2. Transactions: benches/load/txn_commits.py (confluent-kafka/librdkafka): commits/s of one
#     transactional producer at 10 and at 1000 records of 100 B per transaction into one
#     partition; 3 warm-up transactions, then 3 runs per size, median.
# Before each measurement the script waits for a quiet machine (common.sh) and it reports the CPU
# other processes took (foreign CPU, % of all cores).
#
# Usage: benches/load/eos.sh [dlog|kafka ...]        (default: dlog kafka)
# Environment (defaults in brackets): LOAD_WORK_DIR [/tmp/dlog-eos-bench]  RUNS [4]
#   RECORDS [2000000]  PARTITIONS [3]  PORT [19192] (Kafka uses PORT+1 too)  SKIP_BUILD [0]
#   QUIET_WAIT_MAX [600]  QUIET_FOREIGN_PCT_MAX [10]
# Requirements: a JDK and compat/kafka/install.sh's jars; python3 with confluent-kafka.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
WORK="${LOAD_WORK_DIR:-/tmp/dlog-eos-bench}"
RUNS="${RUNS:-4}"
RECORDS="${RECORDS:-2000000}"
PARTITIONS="${PARTITIONS:-3}"
PORT="${PORT:-19192}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BROKERS=("$@"); [[ ${#BROKERS[@]} -gt 0 ]] || BROKERS=(dlog kafka)
CLIENT_JVM=(-Xmx512m "-Dlog4j2.configurationFile=$HERE/log4j2-client.xml")
BOOTSTRAP="127.0.0.1:$PORT"

rm -rf "$WORK"
mkdir -p "$WORK/raw"
RESULTS="$WORK/results.csv" # broker,kind,mode,run,value,broker_cpu_s,foreign_cpu_pct
: >"$RESULTS"
source "$HERE/common.sh"
prepare_binaries

trap stop_broker EXIT
trap 'exit 130' INT TERM

create_topic() { # create_topic NAME PARTITIONS
  java_tool 60 org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
    --topic "$1" --partitions "$2" --replication-factor 1 >>"$WORK/raw/topics.log" 2>&1
}

produce() { # produce TOPIC RECORDS IDEMPOTENCE -> rec/s
  local out="$WORK/raw/produce-$BROKER-$1.txt"
  java_tool 300 org.apache.kafka.tools.ProducerPerformance --topic "$1" --num-records "$2" \
    --record-size 100 --throughput -1 --producer-props bootstrap.servers="$BOOTSTRAP" acks=all \
    linger.ms=5 batch.size=16384 compression.type=none enable.idempotence="$3" >"$out" 2>&1 \
    || { log "ProducerPerformance failed:"; tail -n 5 "$out" >&2; return 1; }
  sed -n 's/^\([0-9]*\) records sent, \([0-9.]*\) records\/sec.*/\1 \2/p' "$out" | tail -n1 |
    awk -v want="$2" '$1 != want { exit 1 } { print $2 }'
}

measured() { # measured KIND MODE RUN COMMAND... : runs COMMAND (prints the value), records a row
  local kind="$1" mode="$2" run="$3" value busy0 ours0 t0 cpu0 foreign cpu
  shift 3
  wait_quiet
  busy0="$(busy_jiffies)"; ours0="$(tree_jiffies $$ "$BROKER_PID")"; t0="$(date +%s%N)"; cpu0="$(cpu_ns "$BROKER_PID")"
  value="$("$@")" || { log "$BROKER $kind $mode run $run failed"; return 0; }
  cpu="$(awk -v ns=$(($(cpu_ns "$BROKER_PID") - cpu0)) 'BEGIN { printf "%.4f", ns / 1e9 }')"
  foreign="$(foreign_pct $(($(busy_jiffies) - busy0)) $(($(tree_jiffies $$ "$BROKER_PID") - ours0)) $(($(date +%s%N) - t0)))"
  echo "$BROKER,$kind,$mode,$run,$value,$cpu,$foreign" >>"$RESULTS"
  log "$BROKER $kind $mode run $run: $value (broker CPU $cpu s, foreign CPU $foreign%)"
}

txn_commits() { # txn_commits RECORDS_PER_TXN TAG -> commits/s (median of 3)
  timeout 600 python3 "$HERE/txn_commits.py" "$BOOTSTRAP" "$2" "$1" 2>>"$WORK/raw/txn-$BROKER.err" |
    tee -a "$WORK/raw/txn-$BROKER.out" | sed -n 's/.*commits_per_s median=\([0-9.]*\).*/\1/p'
}

log "work dir $WORK; brokers ${BROKERS[*]}; runs=$RUNS records=$RECORDS partitions=$PARTITIONS; dlog $DLOG_COMMIT"
for broker in "${BROKERS[@]}"; do
  start_broker "$broker"
  create_topic warmup "$PARTITIONS"
  produce warmup $((RECORDS / 2)) true >/dev/null
  for run in $(seq 1 "$RUNS"); do
    if (( run % 2 )); then order=(false true); else order=(true false); fi
    for idempotence in "${order[@]}"; do
      mode=plain; [[ "$idempotence" == true ]] && mode=idempotent
      create_topic "p-$mode-$run" "$PARTITIONS"
      measured produce "$mode" "$run" produce "p-$mode-$run" "$RECORDS" "$idempotence"
    done
  done
  for size in 10 1000; do
    measured txn "$size" 1 txn_commits "$size" "$broker-$size"
  done
  stop_broker
done

python3 - "$RESULTS" "$RECORDS" "$DLOG_COMMIT" <<'PY'
import csv, statistics, sys
results, records, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = list(csv.reader(open(results)))
brokers = list(dict.fromkeys(r[0] for r in rows))
def pick(broker, kind, mode, column):
    return [float(r[column]) for r in rows if r[:3] == [broker, kind, mode]]
print(f"dlog {commit}. Produce: ProducerPerformance {records:,} x 100 B, acks=all, linger.ms=5, "
      "medians of the alternating runs; broker CPU = its threads' CPU time per million records.")
print()
print("| broker | mode | rec/s (median) | broker CPU ms / 1M records (median) | runs (rec/s) | max foreign CPU |")
print("|---|---|---|---|---|---|")
for b in brokers:
    medians = {}
    for mode in ("plain", "idempotent"):
        rates = pick(b, "produce", mode, 4)
        if not rates:
            continue
        cpu = [c / records * 1e9 for c in pick(b, "produce", mode, 5)]
        medians[mode] = (statistics.median(rates), statistics.median(cpu))
        print(f"| {b} | {mode} | {medians[mode][0]:,.0f} | {medians[mode][1]:.1f} | "
              + ", ".join(f"{x:,.0f}" for x in rates) + f" | {max(pick(b, 'produce', mode, 6)):.1f}% |")
    if len(medians) == 2:
        (r0, c0), (r1, c1) = medians["plain"], medians["idempotent"]
        print(f"| {b} | idempotent vs plain | {(r1 - r0) / r0 * 100:+.1f}% | {(c1 - c0) / c0 * 100:+.1f}% | | |")
print()
print("| records per transaction | " + " | ".join(f"{b} commits/s" for b in brokers) + " |")
print("|---|" + "---|" * len(brokers))
for size in ("10", "1000"):
    cells = []
    for b in brokers:
        v = pick(b, "txn", size, 4)
        f = pick(b, "txn", size, 6)
        cells.append(f"{v[0]:,.0f} (foreign CPU {f[0]:.1f}%)" if v else "n/a")
    print(f"| {size} | " + " | ".join(cells) + " |")
PY
