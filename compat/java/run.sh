#!/usr/bin/env bash
# Java-client compatibility checks against the broker at env BOOTSTRAP (host:port).
#   BOOTSTRAP=127.0.0.1:9092 compat/java/run.sh
# Prints one "RESULT <scenario> PASS|FAIL|SKIP <detail>" line per scenario; exits 1 if any FAIL.
# Scenarios: java-build, RoundTrip's java-* scenarios, java-kafka-transactions-tool,
# java-client-compatibility-test (org.apache.kafka.tools.ClientCompatibilityTest),
# java-verifiable-producer, java-verifiable-consumer (classic) and java-verifiable-consumer-848
# (group.protocol=consumer), java-consumer-groups-command (kafka-consumer-groups: list,
# describe with lag, reset offsets).
#
# Env:
#   BOOTSTRAP                       required
#   WITH_GROUPS=0                   skip the consumer-group scenarios (VerifiableConsumer,
#                                   ConsumerGroupCommand); they run by default
#   VP_MESSAGES                     records for VerifiableProducer/Consumer (default 1000)
#   CCT_DESCRIBE_ACLS_SUPPORTED     ClientCompatibilityTest --describe-acls-supported (default false: dlog
#                                   has no DescribeAcls API; a real Kafka without authorizer needs true)
#   CCT_IDEMPOTENT_PRODUCER_SUPPORTED  default true (InitProducerId is served)
#   WORK_DIR                        where tool outputs go (default: a fresh temp dir)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${BOOTSTRAP:?set BOOTSTRAP=host:port}"
VP_MESSAGES="${VP_MESSAGES:-1000}"
WORK_DIR="${WORK_DIR:-$(mktemp -d /tmp/dlog-compat-java.XXXXXX)}"
mkdir -p "$WORK_DIR"
RUN_ID="$(date +%s)-$$"
FAILED=0

result() { # scenario PASS|FAIL|SKIP detail
  echo "RESULT $1 $2 ${3:-}"
  [[ "$2" == "FAIL" ]] && FAILED=1
  return 0
}
tail_detail() { tail -n "${2:-5}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-500; }

# Fail fast (instead of minutes of client timeouts) when nothing listens at BOOTSTRAP.
if ! timeout 5 bash -c "exec 3<>/dev/tcp/${BOOTSTRAP%:*}/${BOOTSTRAP##*:}" 2>/dev/null; then
  result java-bootstrap FAIL "nothing accepts connections at $BOOTSTRAP"
  exit 1
fi

# ---------------------------------------------------------------- build
build() {
  local cls="$HERE/target/classes/dlog/compat/RoundTrip.class" cpf="$HERE/target/classpath.txt"
  if [[ -f "$cls" && -f "$cpf" && "$cls" -nt "$HERE/src/main/java/dlog/compat/RoundTrip.java" \
        && "$cpf" -nt "$HERE/pom.xml" ]] && tr ':' '\n' <"$cpf" | head -n1 | xargs test -f; then
    return 0
  fi
  command -v mvn >/dev/null || { echo "mvn not found" >"$WORK_DIR/build.log"; return 1; }
  local goals=(-B -q -f "$HERE/pom.xml" compile dependency:build-classpath "-Dmdep.outputFile=$cpf")
  # Offline first (fast, after one online resolve), online as the fallback.
  timeout 300 mvn -o "${goals[@]}" >"$WORK_DIR/build.log" 2>&1 \
    || timeout 900 mvn "${goals[@]}" >>"$WORK_DIR/build.log" 2>&1
}
if build; then
  result java-build PASS "compiled $(basename "$HERE")/RoundTrip, kafka-clients $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
else
  result java-build FAIL "$(grep -m4 -E 'ERROR|error:' "$WORK_DIR/build.log" | tr '\n' ' ' | cut -c1-500)"
  exit 1
fi
CP="$HERE/target/classes:$(cat "$HERE/target/classpath.txt")"
JAVA=(java -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.logFile=System.err -cp "$CP")

# ---------------------------------------------------------------- RoundTrip (own scenarios)
timeout 300 "${JAVA[@]}" dlog.compat.RoundTrip >"$WORK_DIR/roundtrip.out" 2>"$WORK_DIR/roundtrip.err"
rc=$?
grep '^RESULT ' "$WORK_DIR/roundtrip.out"
if [[ $rc -ne 0 ]]; then
  FAILED=1
  grep -q '^RESULT .* FAIL' "$WORK_DIR/roundtrip.out" \
    || result java-roundtrip FAIL "exit $rc: $(tail_detail "$WORK_DIR/roundtrip.err")"
fi

# ---------------------------------------------------------------- kafka-transactions (TransactionsCommand)
# RoundTrip's transactions scenario left a transactional id "compat-java-txn-*-id"; the tool lists it
# (ListTransactions) and describes it (DescribeTransactions).
timeout 60 "${JAVA[@]}" org.apache.kafka.tools.TransactionsCommand --bootstrap-server "$BOOTSTRAP" list \
  >"$WORK_DIR/txn-list.out" 2>"$WORK_DIR/txn-list.err"
rc=$?
txn_id="$(grep -o -m1 'compat-java-txn-[A-Za-z0-9._-]*-id' "$WORK_DIR/txn-list.out")"
if [[ $rc -eq 0 && -n "$txn_id" ]] && timeout 60 "${JAVA[@]}" org.apache.kafka.tools.TransactionsCommand \
     --bootstrap-server "$BOOTSTRAP" describe --transactional-id "$txn_id" >"$WORK_DIR/txn-describe.out" 2>&1 \
   && grep -q 'CompleteCommit' "$WORK_DIR/txn-describe.out"; then
  result java-kafka-transactions-tool PASS "list and describe $txn_id"
else
  result java-kafka-transactions-tool FAIL "exit $rc: $(tail_detail "$WORK_DIR/txn-list.out" 3) $(tail_detail "$WORK_DIR/txn-describe.out" 3) $(grep -m1 Exception "$WORK_DIR/txn-list.err" | cut -c1-200)"
fi

# ---------------------------------------------------------------- Kafka's ClientCompatibilityTest
# It creates "newtopic" via Admin (so remove a leftover first) and needs a fresh, auto-created topic
# whose first two records are its own.
CCT_TOPIC="cct-$RUN_ID"
if ! timeout 90 "${JAVA[@]}" dlog.compat.RoundTrip delete-topic newtopic >"$WORK_DIR/cct-prep.out" 2>"$WORK_DIR/cct-prep.err"; then
  result java-client-compatibility-test FAIL "prep (delete leftover newtopic): $(tail_detail "$WORK_DIR/cct-prep.out" 3)"
else
  CCT_FLAGS=(
    --topic "$CCT_TOPIC" --bootstrap-server "$BOOTSTRAP"
    --num-cluster-nodes 1
    --create-topics-supported true
    --describe-configs-supported true
    --offsets-for-times-supported true
    --cluster-id-supported true
    --expect-record-too-large-exception false
    --describe-acls-supported "${CCT_DESCRIBE_ACLS_SUPPORTED:-false}"
    --idempotent-producer-supported "${CCT_IDEMPOTENT_PRODUCER_SUPPORTED:-true}"
  )
  timeout 120 "${JAVA[@]}" org.apache.kafka.tools.ClientCompatibilityTest "${CCT_FLAGS[@]}" \
    >"$WORK_DIR/cct.out" 2>"$WORK_DIR/cct.err"
  rc=$?
  if [[ $rc -eq 0 ]] && grep -q '^SUCCESS\.' "$WORK_DIR/cct.out"; then
    result java-client-compatibility-test PASS "topic $CCT_TOPIC, acls=${CCT_DESCRIBE_ACLS_SUPPORTED:-false} idempotence=${CCT_IDEMPOTENT_PRODUCER_SUPPORTED:-true}"
  else
    result java-client-compatibility-test FAIL "exit $rc: $(cat "$WORK_DIR/cct.out" "$WORK_DIR/cct.err" | grep -m1 -E 'FAILED|Exception' | cut -c1-400)"
  fi
fi

# ---------------------------------------------------------------- Kafka's VerifiableProducer / VerifiableConsumer
VP_TOPIC="vp-$RUN_ID"
printf 'request.timeout.ms=20000\ndelivery.timeout.ms=60000\nmax.block.ms=30000\n' \
  >"$WORK_DIR/producer.properties"
timeout 120 "${JAVA[@]}" org.apache.kafka.tools.VerifiableProducer --bootstrap-server "$BOOTSTRAP" \
  --topic "$VP_TOPIC" --max-messages "$VP_MESSAGES" --acks -1 \
  --producer.config "$WORK_DIR/producer.properties" >"$WORK_DIR/vp.out" 2>"$WORK_DIR/vp.err"
rc=$?
timeout 60 "${JAVA[@]}" dlog.compat.RoundTrip check-verifiable-producer verifiable-producer \
  "$WORK_DIR/vp.out" "$VP_MESSAGES" >"$WORK_DIR/vp.check" 2>&1
line="$(grep -m1 '^RESULT ' "$WORK_DIR/vp.check")"
status="$(awk '{print $3}' <<<"$line")"; detail="$(cut -d' ' -f4- <<<"$line")"
if [[ $rc -eq 0 && "$status" == PASS ]]; then
  result java-verifiable-producer PASS "$detail"
else
  result java-verifiable-producer FAIL "exit $rc: ${detail:-$(tail_detail "$WORK_DIR/vp.check" 3)} $(grep -m1 Exception "$WORK_DIR/vp.err" | cut -c1-200)"
fi

if [[ "${WITH_GROUPS:-1}" == 1 ]]; then
  printf 'request.timeout.ms=20000\ndefault.api.timeout.ms=30000\n' >"$WORK_DIR/consumer.properties"
  timeout 120 "${JAVA[@]}" org.apache.kafka.tools.VerifiableConsumer --bootstrap-server "$BOOTSTRAP" \
    --topic "$VP_TOPIC" --group-id "vc-$RUN_ID" --max-messages "$VP_MESSAGES" --reset-policy earliest \
    --consumer.config "$WORK_DIR/consumer.properties" >"$WORK_DIR/vc.out" 2>"$WORK_DIR/vc.err"
  rc=$?
  timeout 60 "${JAVA[@]}" dlog.compat.RoundTrip check-verifiable-consumer verifiable-consumer \
    "$WORK_DIR/vc.out" "$VP_MESSAGES" >"$WORK_DIR/vc.check" 2>&1
  line="$(grep -m1 '^RESULT ' "$WORK_DIR/vc.check")"
  status="$(awk '{print $3}' <<<"$line")"; detail="$(cut -d' ' -f4- <<<"$line")"
  if [[ $rc -eq 0 && "$status" == PASS ]]; then
    result java-verifiable-consumer PASS "$detail"
  else
    result java-verifiable-consumer FAIL "exit $rc: ${detail:-$(tail_detail "$WORK_DIR/vc.check" 3)} $(grep -m1 Exception "$WORK_DIR/vc.err" | cut -c1-200)"
  fi

  # The same with the KIP-848 consumer protocol (server-side assignment).
  timeout 120 "${JAVA[@]}" org.apache.kafka.tools.VerifiableConsumer --bootstrap-server "$BOOTSTRAP" \
    --topic "$VP_TOPIC" --group-id "vc848-$RUN_ID" --max-messages "$VP_MESSAGES" --reset-policy earliest \
    --group-protocol consumer --consumer.config "$WORK_DIR/consumer.properties" \
    >"$WORK_DIR/vc848.out" 2>"$WORK_DIR/vc848.err"
  rc=$?
  timeout 60 "${JAVA[@]}" dlog.compat.RoundTrip check-verifiable-consumer verifiable-consumer \
    "$WORK_DIR/vc848.out" "$VP_MESSAGES" >"$WORK_DIR/vc848.check" 2>&1
  line="$(grep -m1 '^RESULT ' "$WORK_DIR/vc848.check")"
  status="$(awk '{print $3}' <<<"$line")"; detail="$(cut -d' ' -f4- <<<"$line")"
  if [[ $rc -eq 0 && "$status" == PASS ]]; then
    result java-verifiable-consumer-848 PASS "group.protocol=consumer: $detail"
  else
    result java-verifiable-consumer-848 FAIL "exit $rc: ${detail:-$(tail_detail "$WORK_DIR/vc848.check" 3)} $(grep -m1 Exception "$WORK_DIR/vc848.err" | cut -c1-200)"
  fi

  # Kafka's kafka-consumer-groups tool on the group VerifiableConsumer left behind (empty, with
  # its commits): --list finds it, --describe shows lag 0, --reset-offsets --to-earliest moves
  # every partition back to 0 (lag = all records).
  CGC=("${JAVA[@]}" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP")
  lag_sums() { # group topic -> "current_sum lag_sum rows"
    timeout 60 "${CGC[@]}" --describe --group "$1" 2>>"$WORK_DIR/cgc.err" | tee -a "$WORK_DIR/cgc.out" \
      | awk -v t="$2" '$2 == t { c += $4; l += $6; n++ } END { print c+0, l+0, n+0 }'
  }
  cgc_detail=""
  if ! timeout 60 "${CGC[@]}" --list >"$WORK_DIR/cgc-list.out" 2>>"$WORK_DIR/cgc.err" \
       || ! grep -qx "vc-$RUN_ID" "$WORK_DIR/cgc-list.out"; then
    cgc_detail="--list does not show vc-$RUN_ID: $(tail_detail "$WORK_DIR/cgc-list.out" 3)"
  fi
  read -r current lag rows <<<"$(lag_sums "vc-$RUN_ID" "$VP_TOPIC")"
  if [[ -z "$cgc_detail" && ( "$current" != "$VP_MESSAGES" || "$lag" != 0 || "$rows" == 0 ) ]]; then
    cgc_detail="--describe: committed sum $current, lag sum $lag over $rows partitions (want $VP_MESSAGES, 0)"
  fi
  if [[ -z "$cgc_detail" ]]; then
    timeout 60 "${CGC[@]}" --reset-offsets --group "vc-$RUN_ID" --topic "$VP_TOPIC" --to-earliest --execute \
      >>"$WORK_DIR/cgc.out" 2>>"$WORK_DIR/cgc.err"
    read -r current lag rows <<<"$(lag_sums "vc-$RUN_ID" "$VP_TOPIC")"
    if [[ "$current" != 0 || "$lag" != "$VP_MESSAGES" ]]; then
      cgc_detail="after --reset-offsets --to-earliest: committed sum $current, lag sum $lag (want 0, $VP_MESSAGES)"
    fi
  fi
  if [[ -z "$cgc_detail" ]]; then
    result java-consumer-groups-command PASS "list, describe (lag 0 over $rows partitions), reset to earliest (lag $lag)"
  else
    result java-consumer-groups-command FAIL "$cgc_detail $(grep -m1 -E 'Exception|Error' "$WORK_DIR/cgc.err" | cut -c1-200)"
  fi
else
  result java-verifiable-consumer SKIP "WITH_GROUPS=0"
  result java-verifiable-consumer-848 SKIP "WITH_GROUPS=0"
  result java-consumer-groups-command SKIP "WITH_GROUPS=0"
fi

echo "java compat outputs in $WORK_DIR"
exit "$FAILED"
