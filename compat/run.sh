#!/usr/bin/env bash
# Runs compat suites against one broker that this script starts and stops.
#   compat/run.sh dlog|kafka OUT_DIR [python|java|go|tools|share|rolling|security|reassign|grow|closest|streams ...]     (default: the first four)
# dlog: target/release/dlog (build it first) on 127.0.0.1:19092, fresh data dir.
# kafka: real Apache Kafka 4.x (compat/kafka/start.sh) on 127.0.0.1:29092, fresh data dir.
# Writes OUT_DIR/<suite>.log (full output) and OUT_DIR/<suite>.results (lines
# "PASS name" / "FAIL name" / "SKIP name"), and exits non-zero if any suite failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${1:?usage: compat/run.sh dlog|kafka OUT_DIR [suites]}"
out="${2:?usage: compat/run.sh dlog|kafka OUT_DIR [suites]}"
shift 2
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(python java go tools)
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# DLOG_BIN: the dlog binary (default target/release/dlog, where CI builds it).
dlog_bin="${DLOG_BIN:-$root/target/release/dlog}"
data="$(mktemp -d "${TMPDIR:-/tmp}/compat-$target.XXXXXX")"

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

case "$target" in
  dlog)
    port="${DLOG_PORT:-19092}"
    "$dlog_bin" --listen "127.0.0.1:$port" --data-dir "$data/data" >"$out/broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.1; done
    stop_broker() { kill -TERM "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null; }
    ;;
  kafka)
    port="${KAFKA_PORT:-29092}"
    "$root/compat/kafka/start.sh" "$port" "$data" >"$out/broker.log" 2>&1 || { cat "$out/broker.log"; exit 2; }
    stop_broker() { "$root/compat/kafka/stop.sh" "$data" >>"$out/broker.log" 2>&1; }
    ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
trap 'stop_broker; rm -rf "$data"' EXIT
port_open "$port" || { echo "$target did not start"; cat "$out/broker.log"; exit 2; }
export BOOTSTRAP="127.0.0.1:$port"

status=0
for suite in "${suites[@]}"; do
  log="$out/$suite.log"
  results="$out/$suite.results"
  case "$suite" in
    python)
      "$root/compat/python/run.sh" -q -rA -p no:cacheprovider >"$log" 2>&1; rc=$?
      grep -E '^(PASSED|FAILED|ERROR|SKIPPED) ' "$log" | sed -E 's/^PASSED /PASS /; s/^(FAILED|ERROR) /FAIL /; s/^SKIPPED /SKIP /; s/ - .*$//' | sort -u >"$results"
      ;;
    java)
      # Both answer DescribeAcls (SECURITY_DISABLED without an authorizer, as Kafka does).
      acls=true
      # CRASH_BROKER: the copier-across-kill-9 scenario starts, kills and restarts a broker of its own.
      CCT_DESCRIBE_ACLS_SUPPORTED=$acls CRASH_BROKER=$target DLOG_BIN="$dlog_bin" \
        "$root/compat/java/run.sh" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    tools)
      "$root/compat/tools/run.sh" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    share)
      # Share groups with the Java KafkaShareConsumer 4.4: against a dlog of its own, started
      # with the short lock and delivery limit the scenarios need. The differential stage's
      # Kafka (4.1) has no production share groups: skipped there.
      if [[ "$target" == dlog ]]; then
        env -u BOOTSTRAP DLOG_BIN="$dlog_bin" "$root/compat/java-share/run.sh" >"$log" 2>&1; rc=$?
        grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      else
        echo "RESULT java-share SKIP share groups are compared by hand against Kafka 4.4 (compat/java-share/run.sh)" >"$log"; rc=0
        echo "SKIP java-share" >"$results"
      fi
      ;;
    rolling)
      # Issue 12's rolling kill -9 of a three-node RF 3 cluster: starts three nodes of its own
      # (the broker above is not used), so dlog and Kafka are compared on the same scenario.
      "$root/compat/cluster/rolling.sh" "$target" "$out/rolling" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    reassign)
      # Issue 15: kafka-reassign-partitions (--generate/--execute/--verify/--cancel) and
      # kafka-leader-election on a three-node cluster of its own under a Java producer (the
      # broker above is not used), so dlog and Kafka are compared on the same scenario.
      DLOG_BIN="$dlog_bin" timeout 600 "$root/compat/cluster/reassign.sh" "$target" "$out/reassign" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    grow)
      # Issue 15: a three-node cluster of its own grows to four; `dlog rebalance --execute
      # --throttle` / `--verify --elect-leaders` spreads replicas and leaders onto the new broker
      # under a Java producer. The same dlog client drives Kafka in the differential run.
      DLOG_BIN="$dlog_bin" timeout 600 "$root/compat/cluster/grow.sh" "$target" "$out/grow" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    closest)
      # KIP-392: the Java consumer (client.rack) reads from the in-sync replica of its rack on a
      # three-node cluster of its own, one rack per broker (the broker above is not used), so
      # dlog and Kafka are compared on the same scenario.
      DLOG_BIN="$dlog_bin" timeout 300 "$root/compat/cluster/closest.sh" "$target" "$out/closest" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    security)
      # Issue 14: SCRAM users, ACLs, SASL_SSL, mutual TLS and PLAIN with Kafka's own tools against
      # a broker of its own started with the same secured settings (the broker above is not used),
      # so dlog and Kafka are compared on the same scenarios.
      DLOG_BIN="$dlog_bin" timeout 600 "$root/compat/security/run.sh" "$target" "$out/security" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    streams)
      # Issue 16: a Kafka Streams 4.1.1 word count (exactly_once_v2, two instances) against the broker
      # above, and (CRASH_BROKER) on a broker of its own that it kills -9 and restarts mid-run.
      CRASH_BROKER=$target DLOG_BIN="$dlog_bin" timeout 900 "$root/compat/java-streams/run.sh" >"$log" 2>&1; rc=$?
      grep -E '^RESULT ' "$log" | awk '{print $3, $2}' | sort -u >"$results"
      ;;
    go)
      "$root/compat/go/run.sh" >"$log" 2>&1; rc=$?
      grep -E -- '^\s*--- (PASS|FAIL|SKIP): ' "$log" | sed -E 's/^\s*--- (PASS|FAIL|SKIP): ([^ ]+).*/\1 \2/' | sort -u >"$results"
      ;;
    *) echo "unknown suite $suite" >&2; rc=2; : >"$results" ;;
  esac
  passed=$(grep -c '^PASS ' "$results"); failed=$(grep -c '^FAIL ' "$results")
  echo "compat $target $suite: exit $rc, $passed passed, $failed failed"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
