#!/usr/bin/env bash
# A three-node dlog cluster on loopback (target/release/dlog, combined broker+controller
# nodes 1..3), driven by Apache Kafka's own tools and Java client (jars from
# compat/kafka/install.sh):
#   - kafka-metadata-quorum describe --status / --replication, through a broker and through
#     the controller listener: one leader, three voters;
#   - kafka-topics --create through node 3, --describe through node 1: leaders on all three;
#   - replication factor 3: kill -9 of a partition leader under an acks=all Java producer, the
#     ISR shrinks and recovers, no acknowledged record lost or duplicated;
#   - Java VerifiableProducer through node 1, VerifiableConsumer (a group) through node 2:
#     every record consumed;
#   - kill -9 of the active controller: a new leader within a few seconds and kafka-topics
#     --create works again; the killed node restarts and rejoins as a voter;
#   - then the rolling scenario of issue 12 on a fresh three-node cluster (rolling.sh dlog: each
#     broker and the controller killed in turn under Java and librdkafka producers, a group and
#     a transactional consume-transform-produce). ROLLING_RESULTS=DIR keeps its log and results
#     there (rolling.log, rolling.results, rolling/) for compat/diff.sh; SKIP_ROLLING=1 skips it.
#   compat/cluster/run.sh                 DLOG_BIN=path to test another build (default target/release/dlog)
# Prints one "RESULT <scenario> PASS|FAIL <detail>" line per scenario; exits 1 if any FAIL.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/dlog-compat-cluster.XXXXXX")"
classpath="$(cat "$root/compat/kafka/lib/classpath.txt")"
base="${CLUSTER_BASE_PORT:-19500}"
dlog_bin="${DLOG_BIN:-$root/target/release/dlog}"
failed=0
declare -A pids

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
client_port() { echo $((base + $1 * 10)); }
controller_port() { echo $((base + $1 * 10 + 1)); }
voters="1@127.0.0.1:$(controller_port 1),2@127.0.0.1:$(controller_port 2),3@127.0.0.1:$(controller_port 3)"

start_node() { # id
  "$dlog_bin" --node-id "$1" --listen "127.0.0.1:$(client_port "$1")" \
    --controller-listen "127.0.0.1:$(controller_port "$1")" --controller-quorum-voters "$voters" \
    --data-dir "$work/node$1" >>"$work/node$1.log" 2>&1 &
  pids[$1]=$!
}
stop_all() {
  for id in "${!pids[@]}"; do kill -TERM "${pids[$id]}" 2>/dev/null; done
  for id in "${!pids[@]}"; do wait "${pids[$id]}" 2>/dev/null; done
  pids=()
  return 0
}
trap 'stop_all; [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$work" || true' EXIT

result() { echo "RESULT $1 $2 ${3:-}"; [[ "$2" == FAIL ]] && failed=1; return 0; }
tool() { # class args... → stdout+stderr in $work/out
  timeout 120 java -Xmx256m -Dlog4j2.level=warn -cp "$classpath" "$@" >"$work/out" 2>&1
}
detail() { grep -v -E '^\s*$|SLF4J|log4j' "$work/out" | head -3 | tr '\n' ' ' | cut -c1-300; }
quorum_status() { # bootstrap-kind address → $work/out
  tool org.apache.kafka.tools.MetadataQuorumCommand "$1" "$2" describe --status
}
leader_id() { grep -E '^LeaderId:' "$work/out" | awk '{print $2}'; }

for id in 1 2 3; do start_node "$id"; done
for id in 1 2 3; do
  for _ in $(seq 1 300); do port_open "$(client_port "$id")" && break; sleep 0.1; done
done
b1="127.0.0.1:$(client_port 1)"
b2="127.0.0.1:$(client_port 2)"
b3="127.0.0.1:$(client_port 3)"

# The quorum as Kafka's tool sees it, through a broker and through a controller listener.
ok=0
for _ in $(seq 1 30); do
  if quorum_status --bootstrap-server "$b1" && [[ -n "$(leader_id)" && "$(leader_id)" != -1 ]] &&
     grep -qE '^CurrentVoters:.*"id": ?1.*"id": ?2.*"id": ?3|^CurrentVoters:.*\[1, ?2, ?3\]' "$work/out"; then ok=1; break; fi
  sleep 1
done
if [[ $ok == 1 ]]; then
  result cluster-metadata-quorum-status PASS "leader $(leader_id) of voters 1,2,3 (via broker)"
else
  result cluster-metadata-quorum-status FAIL "$(detail)"
fi
if quorum_status --bootstrap-controller "127.0.0.1:$(controller_port 2)" && [[ -n "$(leader_id)" ]]; then
  result cluster-metadata-quorum-controller PASS "leader $(leader_id) (via controller listener)"
else
  result cluster-metadata-quorum-controller FAIL "$(detail)"
fi
if tool org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$b2" describe --replication &&
   [[ $(grep -cE '^\s*[0-9]+\s+' "$work/out") -ge 3 ]]; then
  result cluster-metadata-quorum-replication PASS "$(grep -cE '^\s*[0-9]+\s+' "$work/out") replicas listed"
else
  result cluster-metadata-quorum-replication FAIL "$(detail)"
fi

# Every broker registered; a topic spread over all three.
brokers=0
for _ in $(seq 1 50); do
  brokers=$(timeout 10 kcat -L -b "$b1" -m 5 2>/dev/null | grep -cE '^\s+broker [0-9]+ at')
  [[ $brokers == 3 ]] && break
  sleep 0.2
done
if [[ $brokers == 3 ]]; then
  result cluster-brokers-registered PASS "Metadata from node 1 lists 3 brokers"
else
  result cluster-brokers-registered FAIL "Metadata from node 1 lists $brokers brokers"
fi
topic="cluster-$(date +%s)"
if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b3" --create --topic "$topic" \
     --partitions 6 --replication-factor 1 &&
   sleep 1 &&
   tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b1" --describe --topic "$topic" &&
   [[ $(grep -oE 'Leader: [0-9]+' "$work/out" | sort -u | wc -l) == 3 ]]; then
  result cluster-topics-spread PASS "6 partitions, leaders $(grep -oE 'Leader: [0-9]+' "$work/out" | awk '{print $2}' | sort -u | tr '\n' ' ')"
else
  result cluster-topics-spread FAIL "$(detail)"
fi
# The Java client across brokers: produce through node 1, consume in a group through node 2.
count=3000
tool org.apache.kafka.tools.VerifiableProducer --bootstrap-server "$b1" --topic "$topic" \
  --max-messages "$count" --acks -1
acked=$(grep -c '"name":"producer_send_success"' "$work/out")
timeout 120 java -Xmx256m -Dlog4j2.level=warn -cp "$classpath" org.apache.kafka.tools.VerifiableConsumer \
  --bootstrap-server "$b2" --topic "$topic" --group-id "cluster-$topic" --max-messages "$count" \
  --reset-policy earliest >"$work/consumer" 2>&1
consumed=$(grep -o '"name":"records_consumed","count":[0-9]*' "$work/consumer" | awk -F: '{s+=$3} END {print s+0}')
if [[ $acked == "$count" && $consumed -ge $count ]]; then
  result cluster-java-produce-consume PASS "$acked acked via node 1, $consumed consumed via node 2"
else
  result cluster-java-produce-consume FAIL "acked $acked consumed $consumed: $(grep -v SLF4J "$work/consumer" | tail -2 | tr '\n' ' ' | cut -c1-200)"
fi

# Replication factor 3 through Kafka's tools: every replica in sync; kill -9 of the partition's
# leader while the Java producer sends with acks=all moves leadership within the ISR, and
# kafka-topics lists the partition as under-replicated; the broker returns and rejoins the ISR,
# and every acknowledged record is read exactly once through it.
rtopic="$topic-rf3"
isr_of() { grep -oE 'Isr: [0-9,]*' "$work/out" | head -1 | awk '{print $2}' | tr ',' '\n' | sort -n | tr '\n' ' '; }
leader_of() { grep -oE 'Leader: -?[0-9]+' "$work/out" | head -1 | awk '{print $2}'; }
if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b2" --create --topic "$rtopic" \
     --partitions 1 --replication-factor 3 --config min.insync.replicas=2 &&
   sleep 1 &&
   tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b1" --describe --topic "$rtopic" &&
   [[ "$(isr_of)" == "1 2 3 " ]]; then
  result cluster-rf3-in-sync PASS "$(grep -oE 'Leader: [0-9]+.*' "$work/out" | head -1)"
else
  result cluster-rf3-in-sync FAIL "$(detail)"
fi
rleader="$(leader_of)"
if [[ -n "$rleader" && -n "${pids[$rleader]:-}" ]]; then
  other=1; [[ $rleader == 1 ]] && other=2
  bo="127.0.0.1:$(client_port $other)"
  timeout 120 java -Xmx256m -Dlog4j2.level=warn -cp "$classpath" org.apache.kafka.tools.VerifiableProducer \
    --bootstrap-server "$bo" --topic "$rtopic" --max-messages 4000 --throughput 800 --acks -1 \
    >"$work/rproducer" 2>&1 &
  rproducer=$!
  sleep 2
  kill -KILL "${pids[$rleader]}"; wait "${pids[$rleader]}" 2>/dev/null
  killed_at=$(date +%s%N)
  moved=""
  for _ in $(seq 1 40); do
    if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bo" --describe --topic "$rtopic" &&
       [[ -n "$(leader_of)" && "$(leader_of)" != "$rleader" && "$(leader_of)" != -1 && "$(isr_of)" != *"$rleader "* ]]; then
      moved="$(leader_of)"; break
    fi
    sleep 0.5
  done
  moved_ms=$(( ($(date +%s%N) - killed_at) / 1000000 ))
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bo" --describe --under-replicated-partitions
  if [[ -n "$moved" ]] && grep -q "$rtopic" "$work/out"; then
    result cluster-rf3-leader-killed PASS "leader $rleader killed: $moved leads (seen within ${moved_ms} ms incl. tool start), ISR $(isr_of)listed as under-replicated"
  else
    result cluster-rf3-leader-killed FAIL "leader '$moved': $(detail)"
  fi
  wait "$rproducer"
  start_node "$rleader"
  for _ in $(seq 1 300); do port_open "$(client_port "$rleader")" && break; sleep 0.1; done
  rejoined=0
  for _ in $(seq 1 60); do
    if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bo" --describe --topic "$rtopic" &&
       [[ "$(isr_of)" == "1 2 3 " ]]; then rejoined=1; break; fi
    sleep 0.5
  done
  grep -o '"name":"producer_send_success"[^}]*"value":"[0-9]*"' "$work/rproducer" | grep -oE '"value":"[0-9]+"' |
    grep -oE "[0-9]+" | sort >"$work/racked"
  timeout 60 kcat -C -b "127.0.0.1:$(client_port "$rleader")" -t "$rtopic" -o beginning -e -q -f '%s\n' \
    2>/dev/null | sort >"$work/rread"
  [[ -n "${KEEP_WORK:-}" ]] && echo "work: $work"
  acked=$(wc -l <"$work/racked")
  missing=$(comm -23 "$work/racked" <(sort -u "$work/rread") | wc -l)
  duplicates=$(uniq -d "$work/rread" | wc -l)
  if [[ $rejoined == 1 && $acked -gt 1000 && $missing == 0 && $duplicates == 0 ]]; then
    result cluster-rf3-rejoin-no-loss PASS "node $rleader back in the ISR; $acked acknowledged, all read once through it"
  else
    result cluster-rf3-rejoin-no-loss FAIL "rejoined=$rejoined acked=$acked missing=$missing duplicates=$duplicates: $(grep -v SLF4J "$work/rproducer" | grep -v producer_send | tail -2 | tr '\n' ' ' | cut -c1-200)"
  fi
else
  result cluster-rf3-leader-killed FAIL "no leader for $rtopic: $(detail)"
fi

# kill -9 of the active controller: a new one, and metadata changes work again.
quorum_status --bootstrap-server "$b1"
old_leader="$(leader_id)"
if [[ -n "$old_leader" && -n "${pids[$old_leader]:-}" ]]; then
  kill -KILL "${pids[$old_leader]}"; wait "${pids[$old_leader]}" 2>/dev/null
  survivor=1; [[ $old_leader == 1 ]] && survivor=2
  bs="127.0.0.1:$(client_port $survivor)"
  started=$(date +%s%N)
  new_leader=""
  for _ in $(seq 1 30); do
    if quorum_status --bootstrap-server "$bs" && [[ -n "$(leader_id)" && "$(leader_id)" != "$old_leader" && "$(leader_id)" != -1 ]]; then
      new_leader="$(leader_id)"; break
    fi
    sleep 0.5
  done
  elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  if [[ -n "$new_leader" ]] &&
     tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --create --topic "$topic-after" --partitions 2 --replication-factor 1; then
    result cluster-controller-failover PASS "leader $old_leader killed, $new_leader leads (seen within ${elapsed_ms} ms incl. tool start), CreateTopics works"
  else
    result cluster-controller-failover FAIL "new leader '$new_leader': $(detail)"
  fi
  start_node "$old_leader"
  for _ in $(seq 1 300); do port_open "$(client_port "$old_leader")" && break; sleep 0.1; done
  ok=0
  for _ in $(seq 1 30); do
    if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$(client_port "$old_leader")" --describe --topic "$topic-after" &&
       grep -q "PartitionCount: 2" "$work/out"; then ok=1; break; fi
    sleep 1
  done
  if [[ $ok == 1 ]]; then
    result cluster-restarted-node-catches-up PASS "node $old_leader sees the topic created while it was down"
  else
    result cluster-restarted-node-catches-up FAIL "$(detail)"
  fi
else
  result cluster-controller-failover FAIL "no leader known: $(detail)"
fi

stop_all

# Issue 12's rolling kill -9 scenario, on three fresh nodes of its own (rolling.py).
if [[ -z "${SKIP_ROLLING:-}" ]]; then
  rolling="${ROLLING_RESULTS:-$work}"
  mkdir -p "$rolling"
  DLOG_BIN="$dlog_bin" "$root/compat/cluster/rolling.sh" dlog "$rolling/rolling" >"$rolling/rolling.log" 2>&1
  grep -E '^RESULT |run time' "$rolling/rolling.log"
  grep -E '^RESULT ' "$rolling/rolling.log" | awk '{print $3, $2}' | sort -u >"$rolling/rolling.results"
  grep -qE '^RESULT [^ ]+ PASS' "$rolling/rolling.log" || failed=1
  grep -qE '^RESULT [^ ]+ FAIL' "$rolling/rolling.log" && failed=1
fi

exit $failed
