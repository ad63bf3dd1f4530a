#!/usr/bin/env bash
# Issue 12's rolling-kill scenario on a three-node RF 3 cluster, against dlog or against a
# three-node Apache Kafka 4.x (the reference): see rolling.py for what it runs and checks.
#   compat/cluster/rolling.sh dlog|kafka [OUT_DIR]
# DLOG_BIN (default target/release/dlog), KAFKA_LIB (default compat/kafka/lib),
# ROLLING_BASE_PORT (default 22000: node i listens on base+10i, controller +1, proxy +3).
# Prints "RESULT <name> PASS|FAIL <detail>" lines and the run time; exits 1 on any FAIL.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kind="${1:?usage: compat/cluster/rolling.sh dlog|kafka [OUT_DIR]}"
exec python3 "$here/rolling.py" "$kind" ${2:+--out "$2"}
