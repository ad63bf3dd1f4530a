#!/usr/bin/env bash
# Issue 15's 3→4 grow with `dlog rebalance`: three nodes, topics of RF 2 and 3 with data, a
# fourth broker started, `dlog rebalance --execute --throttle` spreads replicas and leaders onto
# it, `--verify --elect-leaders` until done, Kafka's kafka-reassign-partitions --verify agrees,
# nothing acknowledged lost. Against dlog or a three-node Apache Kafka 4.x (the same dlog
# rebalance client drives both): see grow.py for what it runs and checks.
#   compat/cluster/grow.sh dlog|kafka [OUT_DIR]
# DLOG_BIN (default target/release/dlog; also the rebalance client), KAFKA_LIB (default
# compat/kafka/lib), GROW_BASE_PORT (default 23400: node i listens on base+10i, controller +1,
# proxy +3).
# Prints "RESULT <name> PASS|FAIL <detail>" lines and the run time; exits 1 on any FAIL.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kind="${1:?usage: compat/cluster/grow.sh dlog|kafka [OUT_DIR]}"
exec python3 "$here/grow.py" "$kind" ${2:+--out "$2"}
