#!/usr/bin/env bash
# Issue 15's partition moves and leader elections with Kafka's own tools
# (kafka-reassign-partitions --generate/--execute [--throttle]/--verify/--cancel,
# kafka-leader-election, kafka-configs --describe of the throttles)
# under a running acks=all producer, against dlog or a three-node Apache Kafka 4.x (the
# reference): see reassign.py for what it runs and checks.
#   compat/cluster/reassign.sh dlog|kafka [OUT_DIR]
# DLOG_BIN (default target/release/dlog), KAFKA_LIB (default compat/kafka/lib),
# REASSIGN_BASE_PORT (default 23000, below the ephemeral port range: node i listens on base+10i, controller +1, proxy +3).
# Prints "RESULT <name> PASS|FAIL <detail>" lines and the run time; exits 1 on any FAIL.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kind="${1:?usage: compat/cluster/reassign.sh dlog|kafka [OUT_DIR]}"
exec python3 "$here/reassign.py" "$kind" ${2:+--out "$2"}
