#!/usr/bin/env bash
# KIP-392 (fetch from the closest replica) with the Java consumer (client.rack) on a three-node
# cluster, one rack per broker and Kafka's RackAwareReplicaSelector, against dlog or a
# three-node Apache Kafka 4.x (the reference): see closest.py for what it runs and checks.
#   compat/cluster/closest.sh dlog|kafka [OUT_DIR]
# DLOG_BIN (default target/release/dlog), KAFKA_LIB (default compat/kafka/lib),
# CLOSEST_BASE_PORT (default 23200, below the ephemeral port range: node i listens on base+10i,
# controller +1, proxy +3, dlog's metrics +4).
# Prints "RESULT <name> PASS|FAIL|SKIP <detail>" lines and the run time; exits 1 on any FAIL.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kind="${1:?usage: compat/cluster/closest.sh dlog|kafka [OUT_DIR]}"
exec python3 "$here/closest.py" "$kind" ${2:+--out "$2"}
