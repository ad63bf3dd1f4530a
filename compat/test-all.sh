#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need, builds, and runs
# every test: unit and integration tests (rdkafka against a real dlog process), byte-level
# protocol tests, a short fuzz run, a three-node cluster driven by Kafka's tools, a short chaos run
# (compat/chaos: histories under faults, checked), the compat suites (kcat, confluent-kafka, kafka-python,
# the Java client and Kafka's tools, franz-go, Kafka's CLI tools) against dlog, and the differential run of the
# core suites against a real Apache Kafka 4.x broker.
#   compat/test-all.sh            FUZZ_SECONDS=N to change the fuzz time per target (default 20)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/target/test-results"
rm -rf "$out"; mkdir -p "$out"
passed=0; failed=0; failures=()
stage() {
  local name="$1"; shift
  echo "=== $name"
  local started=$SECONDS
  if "$@"; then passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - started)) s)"
  else failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED ($((SECONDS - started)) s)"; fi
}
stage "install test dependencies" compat/install.sh
stage "build" cargo build --release --workspace --all-targets
# Brokers the tests start listen on ports from a range below Linux's ephemeral range (32768+),
# where a port picked free can be taken by another process's outgoing connection before the
# broker binds it.
DLOG_TEST_PORTS="${DLOG_TEST_PORTS:-26000-28999}" stage "unit, integration and protocol tests" cargo test --release --workspace
if [ -x protocol-tests/fuzz/run.sh ]; then
  stage "fuzz (${FUZZ_SECONDS:-20} s per target)" protocol-tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
fi
stage "deploy files (promtool, YAML/JSON, systemd, live scrape)" deploy/check.sh
stage "on-disk format read by Kafka's DumpLogSegments" compat/storage/verify.sh
stage "compat suites against dlog (python, java, go, Kafka's tools, Java share consumer, secured broker, reassignment on three nodes, a 3→4 grow with dlog rebalance, fetch from the closest replica, Kafka Streams)" compat/run.sh dlog "$out/compat" python java go tools share security reassign grow closest streams
# ROLLING_RESULTS: the rolling kill -9 scenario's dlog results go next to the compat suites,
# where the differential stage compares them with the same scenario on a three-node Kafka.
ROLLING_RESULTS="$out/compat" stage "three-node dlog cluster (kafka-metadata-quorum, kafka-topics, Java client, failover, rolling kill -9 under load)" compat/cluster/run.sh
CHAOS_OUT="$out/chaos" stage "chaos, short (histories under kill -9, pause, delayed and duplicated requests and network partitions; checker)" compat/chaos/ci.sh
DLOG_RESULTS="$out/compat" stage "differential run against Apache Kafka (python, java, Kafka's tools, rolling kill -9 on three nodes, secured broker, reassignment, a 3→4 grow with dlog rebalance, fetch from the closest replica, Kafka Streams)" \
  compat/diff.sh "$out/diff" python java tools rolling security reassign grow closest streams
echo
for name in "${failures[@]}"; do echo "failed stage: $name"; done
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
