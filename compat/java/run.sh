#!/usr/bin/env bash
# Java-client compatibility checks against the broker at env BOOTSTRAP (host:port).
#   BOOTSTRAP=127.0.0.1:9092 compat/java/run.sh
# Prints one "RESULT <scenario> PASS|FAIL|SKIP <detail>" line per scenario; exits 1 if any FAIL.
# Scenarios: java-build, RoundTrip's java-* scenarios, java-kafka-transactions-tool,
# java-client-compatibility-test (org.apache.kafka.tools.ClientCompatibilityTest),
# java-verifiable-producer, java-verifiable-consumer (classic) and java-verifiable-consumer-848
# (group.protocol=consumer), java-consumer-groups-command (kafka-consumer-groups: list,
# describe with lag, reset offsets), java-transactional-copier-kill9 (Kafka's TransactionalMessageCopier
# copying COPY_N records exactly once while its broker is killed with SIGKILL and restarted; needs a
# broker of its own, see CRASH_BROKER).
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
#   CRASH_BROKER=dlog|kafka         the broker java-transactional-copier-kill9 starts, kills -9 and restarts on
#                                   a free port and a data dir of its own (dlog: DLOG_BIN, default
#                                   target/release/dlog; kafka: compat/kafka/start.sh); unset: SKIP.
#                                   compat/run.sh sets it to its target.
#   COPY_N                          records the copier copies (default 20000)
#   CRASH_PORT                      that broker's port (default: a free one; Kafka also takes CRASH_PORT+1)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
: "${BOOTSTRAP:?set BOOTSTRAP=host:port}"
VP_MESSAGES="${VP_MESSAGES:-1000}"
COPY_N="${COPY_N:-20000}"
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

# ---------------------------------------------------------------- TransactionalMessageCopier across kill -9
# Kafka's TransactionalMessageCopier (read_committed consumer in group COPY_GROUP, transactional producer,
# input offsets committed with sendOffsetsToTransaction) copies COPY_N records that VerifiableProducer wrote
# into partition 0 of the input, 50 per transaction, about a third of the transactions aborted on purpose
# (--enable-random-aborts: abort, then rewind to the committed offsets). Twice mid-copy the broker is killed
# with SIGKILL and started again on the same data dir; the copier continues (or, if it gave up, is run again: a new instance fences the
# old epoch and resumes from the committed offsets) until it reports nothing remaining. Then the output,
# read_committed, must hold every input value exactly once and the group's offset must be the input's end.
copier_kill9() {
  local dir="$WORK_DIR/crash" port boot in out group tid pid="" attempt rc killed_at="" copier_pid copied
  mkdir -p "$dir"
  port="${CRASH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  boot="127.0.0.1:$port"
  in="copy-in-$RUN_ID"; out="copy-out-$RUN_ID"; group="copy-group-$RUN_ID"; tid="copy-txn-$RUN_ID"
  crash_start() {
    case "$CRASH_BROKER" in
      dlog) "${DLOG_BIN:-$ROOT/target/release/dlog}" --listen "$boot" --data-dir "$dir/data" >>"$dir/broker.log" 2>&1 &
            pid=$! ;;
      kafka) "$ROOT/compat/kafka/start.sh" "$port" "$dir" >>"$dir/start.log" 2>&1 || return 1
             pid="$(cat "$dir/kafka.pid")" ;;
    esac
    for _ in $(seq 1 300); do timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && return 0; sleep 0.1; done
    return 1
  }
  crash_kill9() {
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    [[ "$CRASH_BROKER" == kafka ]] && rm -f "$dir/kafka.pid"
    wait "$pid" 2>/dev/null
  }
  crash_stop() {
    case "$CRASH_BROKER" in
      dlog) kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null ;;
      kafka) "$ROOT/compat/kafka/stop.sh" "$dir" >>"$dir/start.log" 2>&1 ;;
    esac
  }
  # The last "remaining" the copier printed (progress lines and shutdown_complete).
  remaining() { grep -o '"remaining":[0-9]*' "$1" 2>/dev/null | tail -n1 | cut -d: -f2; }
  processed() { grep -o '"totalProcessed":[0-9]*' "$1" 2>/dev/null | tail -n1 | cut -d: -f2; }

  if ! crash_start; then
    result java-transactional-copier-kill9 FAIL "$CRASH_BROKER did not start on $boot: $(tail_detail "$dir/broker.log" 3)$(tail_detail "$dir/start.log" 3)"
    return
  fi
  local topic_cmd=("${JAVA[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$boot" --create
                   --partitions 1 --replication-factor 1)
  if ! timeout 60 "${topic_cmd[@]}" --topic "$in" >"$dir/topics.out" 2>&1 \
     || ! timeout 60 "${topic_cmd[@]}" --topic "$out" >>"$dir/topics.out" 2>&1; then
    result java-transactional-copier-kill9 FAIL "create topics: $(tail_detail "$dir/topics.out" 3)"
    crash_stop; return
  fi
  timeout 120 "${JAVA[@]}" org.apache.kafka.tools.VerifiableProducer --bootstrap-server "$boot" \
    --topic "$in" --max-messages "$COPY_N" --acks -1 --producer.config "$WORK_DIR/producer.properties" \
    >"$dir/vp.out" 2>"$dir/vp.err"
  if [[ "$(grep -c '"name":"producer_send_success"' "$dir/vp.out")" != "$COPY_N" ]]; then
    result java-transactional-copier-kill9 FAIL "VerifiableProducer did not ack $COPY_N records: $(tail_detail "$dir/vp.err" 3)"
    crash_stop; return
  fi
  local copier=("${JAVA[@]}" org.apache.kafka.tools.TransactionalMessageCopier --broker-list "$boot"
                --input-topic "$in" --input-partition 0 --output-topic "$out" --consumer-group "$group"
                --transactional-id "$tid" --transaction-size 50 --transaction-timeout 20000 --use-group-metadata --enable-random-aborts)
  local attempts=()
  for attempt in 1 2 3 4; do
    timeout 150 "${copier[@]}" >"$dir/copier-$attempt.out" 2>"$dir/copier-$attempt.err" &
    copier_pid=$!
    if [[ $attempt == 1 ]]; then
      # Kill the broker once a quarter, and again once 60%, of the records are copied (waiting at most
      # 60 s for each).
      for threshold in $((COPY_N / 4)) $((COPY_N * 3 / 5)); do
        for _ in $(seq 1 600); do
          copied="$(processed "$dir/copier-1.out")"
          (( ${copied:-0} >= threshold )) && break
          kill -0 "$copier_pid" 2>/dev/null || break
          sleep 0.1
        done
        killed_at+="${killed_at:+, }$(processed "$dir/copier-1.out")"
        crash_kill9
        sleep 1
        if ! crash_start; then
          kill "$copier_pid" 2>/dev/null; wait "$copier_pid" 2>/dev/null
          result java-transactional-copier-kill9 FAIL "$CRASH_BROKER did not restart after kill -9: $(tail_detail "$dir/broker.log" 3)$(tail_detail "$dir/start.log" 3)"
          return
        fi
      done
    fi
    wait "$copier_pid"; rc=$?
    attempts+=("#$attempt exit $rc, copied $(processed "$dir/copier-$attempt.out"), remaining $(remaining "$dir/copier-$attempt.out")")
    [[ $rc == 0 && "$(remaining "$dir/copier-$attempt.out")" == 0 ]] && break
  done
  BOOTSTRAP="$boot" timeout 120 "${JAVA[@]}" dlog.compat.RoundTrip check-copy transactional-copier-kill9 \
    "$in" "$out" "$group" "$COPY_N" >"$dir/check.out" 2>&1
  local line status detail
  line="$(grep -m1 '^RESULT ' "$dir/check.out")"
  status="$(awk '{print $3}' <<<"$line")"; detail="$(cut -d' ' -f4- <<<"$line")"
  detail="$CRASH_BROKER killed -9 after $killed_at of $COPY_N records copied (random aborts on); copier runs: $(IFS=';'; echo "${attempts[*]}"); ${detail:-$(tail_detail "$dir/check.out" 3)}"
  if [[ "$status" == PASS && "$(remaining "$dir/copier-$attempt.out")" == 0 ]]; then
    result java-transactional-copier-kill9 PASS "$detail"
  else
    result java-transactional-copier-kill9 FAIL "$detail"
  fi
  crash_stop
}
if [[ -n "${CRASH_BROKER:-}" ]]; then
  copier_kill9
else
  result java-transactional-copier-kill9 SKIP "CRASH_BROKER unset (compat/run.sh sets it)"
fi

echo "java compat outputs in $WORK_DIR"
exit "$FAILED"
