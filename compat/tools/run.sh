#!/usr/bin/env bash
# Apache Kafka's own command-line tools (the classes behind kafka-topics.sh, kafka-configs.sh,
# kafka-delete-records.sh, kafka-log-dirs.sh; jars from compat/kafka/install.sh) against the
# broker at env BOOTSTRAP (host:port).
#   BOOTSTRAP=127.0.0.1:9092 compat/tools/run.sh
# Prints one "RESULT <scenario> PASS|FAIL <detail>" line per scenario; exits 1 if any FAIL.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${BOOTSTRAP:?set BOOTSTRAP=host:port}"
work="$(mktemp -d "${TMPDIR:-/tmp}/dlog-compat-tools.XXXXXX")"
trap 'rm -rf "$work"' EXIT
classpath="$(cat "$root/compat/kafka/lib/classpath.txt")"
failed=0
run_id="$(date +%s)-$$"
topic="tools-$run_id"

result() { echo "RESULT $1 $2 ${3:-}"; [[ "$2" == FAIL ]] && failed=1; return 0; }
tool() { # class args... → stdout+stderr in $work/out
  timeout 120 java -Xmx256m -Dlog4j2.level=warn -cp "$classpath" "$@" >"$work/out" 2>&1
}
detail() { grep -v -E '^\s*$|SLF4J|log4j' "$work/out" | head -3 | tr '\n' ' ' | cut -c1-300; }
produce() { # topic partition count
  # Keyed: the topic is compacted by then, and compacted topics refuse keyless records.
  for i in $(seq 1 "$3"); do echo "key-$i:value-$i"; done |
    timeout 60 kcat -b "$BOOTSTRAP" -P -t "$1" -p "$2" -K: -X linger.ms=0 2>"$work/kcat.err" &&
    ! grep -q "Delivery failed" "$work/kcat.err"
}

# kafka-topics --create / --describe / --alter --partitions / --list
if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create --topic "$topic" \
     --partitions 2 --replication-factor 1 --config retention.ms=3600000 &&
   tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --describe --topic "$topic" &&
   grep -q "PartitionCount: 2" "$work/out" && grep -q "retention.ms=3600000" "$work/out"; then
  result tools-topics-create-describe PASS "$topic: 2 partitions, retention.ms=3600000"
else
  result tools-topics-create-describe FAIL "$(detail)"
fi
if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --alter --topic "$topic" --partitions 4 &&
   tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --describe --topic "$topic" &&
   grep -q "PartitionCount: 4" "$work/out"; then
  result tools-topics-alter-partitions PASS "2 -> 4 partitions"
else
  result tools-topics-alter-partitions FAIL "$(detail)"
fi
if tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --alter --topic "$topic" --partitions 3; then
  result tools-topics-shrink-refused FAIL "4 -> 3 partitions was accepted"
elif grep -q "InvalidPartitionsException" "$work/out"; then
  result tools-topics-shrink-refused PASS "InvalidPartitionsException"
else
  result tools-topics-shrink-refused FAIL "$(detail)"
fi

# kafka-configs --alter --add-config / --delete-config / --describe, topic and broker
if tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type topics --entity-name "$topic" \
     --alter --add-config 'retention.ms=60000,cleanup.policy=[delete,compact]' &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type topics --entity-name "$topic" --describe &&
   grep -q "retention.ms=60000" "$work/out" && grep -q "cleanup.policy=delete,compact" "$work/out"; then
  result tools-configs-topic-add PASS "retention.ms=60000 cleanup.policy=delete,compact"
else
  result tools-configs-topic-add FAIL "$(detail)"
fi
if tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type topics --entity-name "$topic" \
     --alter --delete-config retention.ms &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type topics --entity-name "$topic" --describe &&
   ! grep -q "retention.ms=" "$work/out"; then
  result tools-configs-topic-delete PASS "retention.ms override removed"
else
  result tools-configs-topic-delete FAIL "$(detail)"
fi
if tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type topics --entity-name "$topic" \
     --alter --add-config retention.ms=never; then
  result tools-configs-invalid-refused FAIL "retention.ms=never was accepted"
elif grep -q "InvalidConfigurationException\|InvalidConfigException\|Invalid value" "$work/out"; then
  result tools-configs-invalid-refused PASS "refused"
else
  result tools-configs-invalid-refused FAIL "$(detail)"
fi
if tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type brokers --entity-default \
     --alter --add-config log.retention.bytes=1073741824 &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type brokers --entity-default --describe &&
   grep -q "log.retention.bytes=1073741824" "$work/out" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --entity-type brokers --entity-default \
     --alter --delete-config log.retention.bytes; then
  result tools-configs-broker-default PASS "cluster-wide log.retention.bytes set, described, removed"
else
  result tools-configs-broker-default FAIL "$(detail)"
fi

# kafka-configs client quotas (Alter/DescribeClientQuotas): a user, a client id, a user with a
# client id, described back and deleted
quota_user="quota-user-$run_id"
quota_client="quota-client-$run_id"
if tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter \
     --add-config 'producer_byte_rate=1024,consumer_byte_rate=2048' --entity-type users --entity-name "$quota_user" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter \
     --add-config producer_byte_rate=4096 --entity-type clients --entity-name "$quota_client" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter --add-config consumer_byte_rate=512 \
     --entity-type users --entity-name "$quota_user" --entity-type clients --entity-name "$quota_client" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --describe --entity-type users --entity-name "$quota_user" &&
   grep -q "consumer_byte_rate=2048.0, producer_byte_rate=1024.0" "$work/out" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --describe --entity-type clients --entity-name "$quota_client" &&
   grep -q "producer_byte_rate=4096.0" "$work/out" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --describe \
     --entity-type users --entity-name "$quota_user" --entity-type clients --entity-name "$quota_client" &&
   grep -q "consumer_byte_rate=512.0" "$work/out" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter \
     --delete-config producer_byte_rate --entity-type clients --entity-name "$quota_client" &&
   tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --describe --entity-type clients --entity-name "$quota_client" &&
   ! grep -q "producer_byte_rate" "$work/out"; then
  result tools-configs-client-quotas PASS "users, clients and users+clients quotas set, described, deleted"
else
  result tools-configs-client-quotas FAIL "$(detail)"
fi
tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter --delete-config 'producer_byte_rate,consumer_byte_rate' \
  --entity-type users --entity-name "$quota_user" || true
tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter --delete-config consumer_byte_rate \
  --entity-type users --entity-name "$quota_user" --entity-type clients --entity-name "$quota_client" || true

# kafka-delete-records --offset-json-file
if produce "$topic" 0 30; then
  printf '{"partitions":[{"topic":"%s","partition":0,"offset":12}],"version":1}\n' "$topic" >"$work/offsets.json"
  if tool org.apache.kafka.tools.DeleteRecordsCommand --bootstrap-server "$BOOTSTRAP" \
       --offset-json-file "$work/offsets.json" && grep -q "low_watermark: 12" "$work/out"; then
    result tools-delete-records PASS "low_watermark: 12"
  else
    result tools-delete-records FAIL "$(detail)"
  fi
else
  result tools-delete-records FAIL "kcat produce: $(head -c 300 "$work/kcat.err")"
fi

# kafka-log-dirs --describe: the partitions of the topic appear with sizes
if tool org.apache.kafka.tools.LogDirsCommand --bootstrap-server "$BOOTSTRAP" --describe \
     --topic-list "$topic" && grep -q "\"partition\":\"$topic-0\"" "$work/out"; then
  result tools-log-dirs PASS "$(grep -o "\"partition\":\"$topic-0\",\"size\":[0-9]*" "$work/out" | head -1)"
else
  result tools-log-dirs FAIL "$(detail)"
fi

tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --delete --topic "$topic" || true
exit $failed
