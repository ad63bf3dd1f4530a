#!/usr/bin/env bash
# Issue 14: a secured client configuration that works against Kafka works unchanged against dlog.
#   compat/security/run.sh dlog|kafka [OUT_DIR]
# Starts a broker of its own (dlog: $DLOG_BIN, default target/release/dlog; kafka: the real
# Apache Kafka of compat/kafka/start.sh) with the same secured settings on both:
#   PLAINTEXT       the operator (User:ANONYMOUS is in super.users): kafka-configs, kafka-acls, kafka-topics
#   SASL_SSL        SCRAM-SHA-256/512, users from AlterUserScramCredentials
#   SSL             mutual TLS (listener.name.ssl.ssl.client.auth=required), principal = certificate subject
#   SASL_PLAINTEXT  PLAIN, users from the listener's JAAS config
# with the StandardAuthorizer, and a throw-away CA, broker and client certificate (openssl).
# The clients are Kafka 4.1's own tools (jars from compat/kafka/install.sh): ConfigCommand,
# AclCommand, TopicCommand, ConsoleProducer, ConsoleConsumer.
# (Kafka's broker logs in with the listener's OAuthBearerLoginModule at start, so its JAAS
# entries name a subject, unsecuredLoginStringClaim_sub, as Kafka's quick start does.)
# Scenarios: security-scram-user, -acls, -sasl-ssl-roundtrip, -denied, -denied-idempotent,
# -wrong-password, -plain-ssl-mtls, -topic-visibility, -scram-delete, -mechanism-not-enabled,
# -acl-prefixed-deny, -server-properties (dlog started from a server.properties as Kafka reads it),
# -oauthbearer-unsecured (OAUTH listener: Kafka's unsecured OAUTHBEARER tokens from the Java
# client's default login handler, ACLs on User:<sub>), -oauthbearer-jwt (OAUTHJWT listener:
# KIP-768's validator over an https JWKS endpoint, trusted through the ssl.truststore.* options
# of the listener's OAuthBearerLoginModule entry; confluent-kafka with RS256 tokens from
# oauth_client.py), -mutation-quota (controller_mutation_rate refuses kafka-topics with
# THROTTLING_QUOTA_EXCEEDED), -request-quota (request_percentage: Metadata answers carry
# throttle_time_ms, request_quota.py).
# SECURITY_PORTS=LOW-HIGH (env) picks the brokers' ports in that range instead of any free one.
# Prints one "RESULT <scenario> PASS|FAIL|SKIP <detail>" line per scenario; exits 1 if any FAIL.
# Every step is bounded (timeout); the whole run takes about a minute.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
target="${1:?usage: compat/security/run.sh dlog|kafka [OUT_DIR]}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/compat-security-$target.XXXXXX")"
OUT="${2:-$WORK}"
mkdir -p "$OUT"
rm -f "$OUT/tools.log"
broker_pid=""
jwks_pid=""
stop_broker() { :; }
cleanup() {
  stop_broker
  [[ -n "$jwks_pid" ]] && kill "$jwks_pid" 2>/dev/null
  [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT   # a timeout around the suite still stops its broker

failed=0
result() { echo "RESULT $1 $2 ${3:-}"; [[ "$2" == FAIL ]] && failed=1; return 0; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
free_port() { # a free port P with P+1 free as well (Kafka's controller listener takes P+1)
  python3 - <<'PY'
import os, random, socket
ports = os.environ.get("SECURITY_PORTS")
while True:
    s = socket.socket()
    if ports:
        low, high = map(int, ports.split("-"))
        try:
            s.bind(("127.0.0.1", random.randint(low, high - 1)))
        except OSError:
            s.close(); continue
    else:
        s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); t.close(); s.close(); print(p); break
    except OSError:
        s.close(); t.close()
PY
}

"$ROOT/compat/kafka/install.sh" >"$WORK/install.log" 2>&1 || {
  result security-setup FAIL "compat/kafka/install.sh: $(tail -n 3 "$WORK/install.log" | tr '\n' ' ')"; exit 1; }
CP="$(cat "$ROOT/compat/kafka/lib/classpath.txt")"

# --- certificates: a CA, the broker's (SAN 127.0.0.1, localhost), a client's (mutual TLS) ---
certs() {
  cd "$WORK" || return 1
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=dlog-compat-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" || return 1
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >broker.ext
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" >client.ext
  for who in broker client; do
    local subject="/CN=localhost"; [[ $who == client ]] && subject="/O=dlog-compat/CN=client"
    # -nodes: an unencrypted PKCS#8 key ("BEGIN PRIVATE KEY"), which both brokers take inline.
    openssl req -newkey rsa:2048 -nodes -keyout "$who.key" -out "$who.csr" -subj "$subject" || return 1
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$who.ext" -out "$who.crt" || return 1
    cat "$who.crt" ca.pem >"$who-chain.pem"
  done
}
if ! certs >"$WORK/openssl.log" 2>&1; then
  result security-setup FAIL "openssl: $(tail -n 3 "$WORK/openssl.log" | tr '\n' ' ')"; exit 1
fi
# The signing keys of the OAUTHJWT scenario and the key set both brokers read.
if ! python3 "$HERE/oauth_client.py" keys "$WORK" >"$WORK/oauth-keys.log" 2>&1; then
  result security-setup FAIL "oauth_client.py keys: $(tail -n 3 "$WORK/oauth-keys.log" | tr '\n' ' ')"; exit 1
fi
# The identity provider's JWKS endpoint (https, the broker certificate) both brokers read.
P_JWKS="$(free_port)"
python3 "$HERE/oauth_client.py" serve "$WORK" "$P_JWKS" >"$WORK/jwks-server.log" 2>&1 &
jwks_pid=$!
JWKS_URL="https://127.0.0.1:$P_JWKS/jwks.json"
cd "$ROOT" || exit 1
CLIENT_PRINCIPAL="User:CN=client,O=dlog-compat"

# --- the broker's secured settings, the same on both brokers ---
ALICE_PASSWORD=alice-secret BOB_PASSWORD=bob-secret CAROL_PASSWORD=carol-secret
settings=(
  "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512"
  "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512"
  "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN"
  "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_carol=\"$CAROL_PASSWORD\";"
  "listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER"
  "listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"broker\" unsecuredValidatorAllowableClockSkewMs=\"1000\";"
  "listener.name.oauthjwt.sasl.enabled.mechanisms=OAUTHBEARER"
  "listener.name.oauthjwt.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"broker\" ssl.truststore.location=\"$WORK/ca.pem\" ssl.truststore.type=\"PEM\";"
  "listener.name.oauthjwt.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
  "sasl.oauthbearer.jwks.endpoint.url=$JWKS_URL"
  "sasl.oauthbearer.expected.audience=dlog-compat"
  "sasl.oauthbearer.expected.issuer=https://issuer.dlog-compat.invalid"
  # Kafka 4.1.1's default (DefaultJwtValidator) checks no signature on a broker: a token signed
  # by any key, or expired, gets in (seen with this suite). BrokerJwtValidator checks them.
  "sasl.oauthbearer.jwt.validator.class=org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator"
  "ssl.keystore.type=PEM"
  "ssl.keystore.certificate.chain=$(cat "$WORK/broker-chain.pem")"
  "ssl.keystore.key=$(cat "$WORK/broker.key")"
  "ssl.truststore.type=PEM"
  "ssl.truststore.location=$WORK/ca.pem"
  "listener.name.ssl.ssl.client.auth=required"
  "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
  "super.users=User:ANONYMOUS"
  "allow.everyone.if.no.acl.found=false"
)
# A .properties line: newlines as \n escapes (the inline PEM settings).
prop_line() { printf '%s' "$1" | awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { print }'; echo; }

# The same settings as a server.properties fragment (Kafka reads its broker's from it; for dlog,
# scenario security-server-properties starts a second broker from it with --config).
for s in "${settings[@]}"; do prop_line "$s"; done >"$WORK/secured.properties"

P_PLAIN="$(free_port)"; P_SASL_SSL="$(free_port)"; P_SSL="$(free_port)"; P_SASL_PLAIN="$(free_port)"
P_OAUTH="$(free_port)"; P_OAUTHJWT="$(free_port)"
while [[ "$P_SASL_SSL" == "$((P_PLAIN + 1))" ]]; do P_SASL_SSL="$(free_port)"; done
while [[ "$P_OAUTH" == "$((P_PLAIN + 1))" ]]; do P_OAUTH="$(free_port)"; done
while [[ "$P_OAUTHJWT" == "$((P_PLAIN + 1))" ]]; do P_OAUTHJWT="$(free_port)"; done
secured="SASL_SSL://127.0.0.1:$P_SASL_SSL,SSL://127.0.0.1:$P_SSL,SASL_PLAINTEXT://127.0.0.1:$P_SASL_PLAIN,OAUTH://127.0.0.1:$P_OAUTH,OAUTHJWT://127.0.0.1:$P_OAUTHJWT"
protocol_map="SASL_SSL:SASL_SSL,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,OAUTH:SASL_PLAINTEXT,OAUTHJWT:SASL_PLAINTEXT"
started=$SECONDS
case "$target" in
  dlog)
    bin="${DLOG_BIN:-$ROOT/target/release/dlog}"
    args=(--listen "127.0.0.1:$P_PLAIN" --data-dir "$WORK/data" --set "listeners=$secured"
      --set "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,$protocol_map")
    for s in "${settings[@]}"; do args+=(--set "$s"); done
    "$bin" "${args[@]}" >"$OUT/broker.log" 2>&1 &
    broker_pid=$!
    stop_broker() { [[ -n "$broker_pid" ]] && { kill -TERM "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null; }; broker_pid=""; }
    for _ in $(seq 1 100); do port_open "$P_PLAIN" && port_open "$P_SASL_SSL" && break; sleep 0.1; done
    ;;
  kafka)
    extra="listeners=PLAINTEXT://127.0.0.1:$P_PLAIN,CONTROLLER://127.0.0.1:$((P_PLAIN + 1)),$secured
advertised.listeners=PLAINTEXT://127.0.0.1:$P_PLAIN,$secured
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,$protocol_map"
    extra+=$'\n'"$(cat "$WORK/secured.properties")"
    # Kafka 4 reads a JWKS URL only when this system property allows it (CVE-2025-27817).
    KAFKA_JAVA_OPTS_EXTRA="-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=$JWKS_URL" \
    KAFKA_EXTRA_PROPS="$extra" START_TIMEOUT=90 "$ROOT/compat/kafka/start.sh" "$P_PLAIN" "$WORK/kafka" >"$OUT/broker.log" 2>&1
    stop_broker() { "$ROOT/compat/kafka/stop.sh" "$WORK/kafka" >>"$OUT/broker.log" 2>&1; cp "$WORK/kafka/kafka.log" "$OUT/kafka.log" 2>/dev/null; }
    for _ in $(seq 1 100); do port_open "$P_SASL_SSL" && break; sleep 0.2; done
    ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
if ! port_open "$P_PLAIN" || ! port_open "$P_SASL_SSL"; then
  result security-setup FAIL "$target did not start: $(tail -n 5 "$OUT/broker.log" "$WORK/kafka/kafka.log" 2>/dev/null | tr '\n' ' ' | cut -c1-600)"
  exit 1
fi
echo "# $target up in $((SECONDS - started)) s: PLAINTEXT $P_PLAIN, SASL_SSL $P_SASL_SSL, SSL $P_SSL, SASL_PLAINTEXT $P_SASL_PLAIN, OAUTH $P_OAUTH, OAUTHJWT $P_OAUTHJWT"

# --- clients ---
PLAIN="127.0.0.1:$P_PLAIN" SASL_SSL="127.0.0.1:$P_SASL_SSL" SSL="127.0.0.1:$P_SSL" SASL_PLAIN="127.0.0.1:$P_SASL_PLAIN"
OAUTH="127.0.0.1:$P_OAUTH" OAUTHJWT="127.0.0.1:$P_OAUTHJWT"
cat >"$WORK/tools-log4j2.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="ERROR">
  <Appenders><Console name="STDERR" target="SYSTEM_ERR"><PatternLayout pattern="%p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="STDERR"/></Root></Loggers>
</Configuration>
XML
tool() { # NAME CLASS ARGS... (stdin passed on) → $WORK/NAME.out (stdout) and $WORK/NAME.err; its exit status
  local name="$1" t0=$SECONDS; shift
  timeout "${TOOL_TIMEOUT:-60}" java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    "-Dlog4j2.configurationFile=$WORK/tools-log4j2.xml" -cp "$CP" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  local rc=$?
  { echo "### $name: exit $rc in $((SECONDS - t0)) s: $*"; cat "$WORK/$name.out"; echo "--- stderr"; cat "$WORK/$name.err"; } >>"$OUT/tools.log"
  return $rc
}
detail() { cat "$WORK/$1.out" "$WORK/$1.err" | grep -v -E '^\s*$|SLF4J|^\s+at ' | head -n 4 | tr '\n' ' ' | cut -c1-400; }
# Bounds for the clients, so that a refusal ends the tool instead of a retry loop.
bounds="request.timeout.ms=15000
default.api.timeout.ms=20000
max.block.ms=15000
reconnect.backoff.max.ms=1000"
client_config() { # FILE SECURITY_PROTOCOL MECHANISM USER PASSWORD (MECHANISM "" = no SASL)
  {
    echo "security.protocol=$2"
    if [[ -n "$3" ]]; then
      echo "sasl.mechanism=$3"
      local module=org.apache.kafka.common.security.scram.ScramLoginModule
      [[ "$3" == PLAIN ]] && module=org.apache.kafka.common.security.plain.PlainLoginModule
      if [[ "$3" == OAUTHBEARER ]]; then
        # The Java client's default login handler makes an unsecured token with this subject.
        echo "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"$4\";"
      else
        echo "sasl.jaas.config=$module required username=\"$4\" password=\"$5\";"
      fi
    fi
    if [[ "$2" == *SSL ]]; then
      echo "ssl.truststore.type=PEM"
      echo "ssl.truststore.location=$WORK/ca.pem"
    fi
    echo "$bounds"
  } >"$1"
}
client_config "$WORK/alice.properties" SASL_SSL SCRAM-SHA-512 alice "$ALICE_PASSWORD"
client_config "$WORK/bob.properties" SASL_SSL SCRAM-SHA-256 bob "$BOB_PASSWORD"
client_config "$WORK/alice-wrong.properties" SASL_SSL SCRAM-SHA-512 alice "not-$ALICE_PASSWORD"
client_config "$WORK/carol.properties" SASL_PLAINTEXT PLAIN carol "$CAROL_PASSWORD"
client_config "$WORK/carol-wrong.properties" SASL_PLAINTEXT PLAIN carol "not-$CAROL_PASSWORD"
client_config "$WORK/nocert.properties" SSL "" "" ""
client_config "$WORK/cert.properties" SSL "" "" ""
{ echo "ssl.keystore.type=PEM"
  prop_line "ssl.keystore.certificate.chain=$(cat "$WORK/client-chain.pem")"
  prop_line "ssl.keystore.key=$(cat "$WORK/client.key")"; } >>"$WORK/cert.properties"
echo "$bounds" >"$WORK/admin.properties"

T="secured-topic" G="secured-group" N=50
produce() { # NAME BOOTSTRAP CONFIG [TOPIC] → COUNT (default N) records "record-i" to TOPIC (default T)
  seq 1 "${COUNT:-$N}" | sed 's/^/record-/' | tool "$1" org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$2" \
    --topic "${4:-$T}" --producer.config "$3" --producer-property acks=all --producer-property linger.ms=5
}
consume() { # NAME BOOTSTRAP CONFIG GROUP [TOPIC] → up to N records of TOPIC (default T), from the beginning
  tool "$1" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$2" --topic "${5:-$T}" --group "$4" \
    --from-beginning --max-messages "$N" --timeout-ms 30000 --consumer.config "$3"
}
produced_ok() { # NAME: no send error logged
  ! grep -q -E 'Error when sending|Exception' "$WORK/$1.err"
}
consumed_exactly() { # NAME: exactly record-1..record-N
  diff <(seq 1 "$N" | sed 's/^/record-/') <(sort -V "$WORK/$1.out") >"$WORK/$1.diff"
}

# 1. SCRAM users: SCRAM-SHA-512 for alice, SCRAM-SHA-256 for bob, over PLAINTEXT
s=security-scram-user
if tool scram-alice kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --alter --add-config "SCRAM-SHA-512=[iterations=8192,password=$ALICE_PASSWORD]" --entity-type users --entity-name alice &&
   tool scram-bob kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --alter --add-config "SCRAM-SHA-256=[password=$BOB_PASSWORD]" --entity-type users --entity-name bob; then
  if tool scram-describe kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
       --describe --entity-type users &&
     grep -q "user-principal 'alice' are SCRAM-SHA-512=iterations=8192" "$WORK/scram-describe.out" &&
     grep -q "user-principal 'bob' are SCRAM-SHA-256=iterations=4096" "$WORK/scram-describe.out"; then
    result $s PASS "alice SCRAM-SHA-512 (8192 iterations), bob SCRAM-SHA-256 (4096) listed"
  else
    result $s FAIL "describe: $(detail scram-describe)"
  fi
else
  result $s FAIL "alter: $(detail scram-alice) $(detail scram-bob)"
fi

# 2. ACLs for alice: WRITE+DESCRIBE on T, READ on T and G
s=security-acls
tool topic-create org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
  --create --topic "$T" --partitions 2 --replication-factor 1 || echo "# topic create: $(detail topic-create)"
if tool acl-write org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --add --allow-principal User:alice --operation Write --operation Describe --topic "$T" &&
   tool acl-read org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --add --allow-principal User:alice --operation Read --topic "$T" --group "$G"; then
  if tool acl-list org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" --list &&
     awk -v t="$T" -v g="$G" '
       /Current ACLs for resource/ { res = $0 }
       /principal=User:alice/ && /permissionType=ALLOW/ {
         if (res ~ "name=" t "," && res ~ /resourceType=TOPIC/ && res ~ /LITERAL/) { if (/operation=WRITE/) w++; if (/operation=DESCRIBE/) d++; if (/operation=READ/) r++ }
         if (res ~ "name=" g "," && res ~ /resourceType=GROUP/ && res ~ /LITERAL/) { if (/operation=READ/) gr++ }
       }
       END { exit !(w == 1 && d == 1 && r == 1 && gr == 1) }' "$WORK/acl-list.out"; then
    result $s PASS "User:alice ALLOW WRITE, DESCRIBE, READ on topic $T, READ on group $G listed"
  else
    result $s FAIL "list: $(detail acl-list)"
  fi
else
  result $s FAIL "add: $(detail acl-write) $(detail acl-read)"
fi

# 3. alice over SASL_SSL with SCRAM-SHA-512: N records to T and back, in group G
s=security-sasl-ssl-roundtrip
t0=$SECONDS
if produce alice-produce "$SASL_SSL" "$WORK/alice.properties" && produced_ok alice-produce; then
  consume alice-consume "$SASL_SSL" "$WORK/alice.properties" "$G"
  if consumed_exactly alice-consume; then
    result $s PASS "$N records produced and consumed back exactly by alice (SCRAM-SHA-512 over TLS, group $G) in $((SECONDS - t0)) s"
  else
    result $s FAIL "consumed $(grep -c . "$WORK/alice-consume.out") of $N: $(detail alice-consume)"
  fi
else
  result $s FAIL "produce: $(detail alice-produce)"
fi

# 4. bob authenticates (SCRAM-SHA-256) but has no ACL: his produce is refused on the topic. Then
#    he may READ topic T (which implies DESCRIBE): his consumer in group G is refused on the group.
s=security-denied
# A few records: each refused send has the producer ask for metadata in a tight loop until max.block.ms.
COUNT=3 produce bob-produce "$SASL_SSL" "$WORK/bob.properties"
tool acl-bob org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
  --add --allow-principal User:bob --operation Read --topic "$T" || echo "# acl for bob: $(detail acl-bob)"
consume bob-consume "$SASL_SSL" "$WORK/bob.properties" "$G"
produce_denied=false consume_denied=false
grep -q -E 'TopicAuthorizationException: Not authorized to access topics: \['"$T"'\]' "$WORK/bob-produce.err" && produce_denied=true
grep -q -E 'GroupAuthorizationException: Not authorized to access group: '"$G" "$WORK/bob-consume.err" && consume_denied=true
if $produce_denied && $consume_denied && ! grep -q record- "$WORK/bob-consume.out" &&
   ! grep -q -E 'SaslAuthenticationException' "$WORK/bob-produce.err" "$WORK/bob-consume.err"; then
  result $s PASS "produce: $(grep -o -m1 -E '[A-Za-z]+AuthorizationException: [^.]*' "$WORK/bob-produce.err"); consume: $(grep -o -m1 -E '[A-Za-z]+AuthorizationException: [^.]*' "$WORK/bob-consume.err")"
else
  result $s FAIL "produce denied=$produce_denied ($(detail bob-produce)); consume denied=$consume_denied ($(detail bob-consume))"
fi

# 4b. bob, who may READ T but WRITE no topic, produces with the (default) idempotent producer:
#     InitProducerId needs WRITE on some topic or IDEMPOTENT_WRITE on the cluster (KIP-679), so
#     Kafka refuses it with CLUSTER_AUTHORIZATION_FAILED before any record is sent.
s=security-denied-idempotent
COUNT=3 produce bob-produce-read "$SASL_SSL" "$WORK/bob.properties"
if grep -q 'ClusterAuthorizationException' "$WORK/bob-produce-read.err" && grep -q 'Error when sending' "$WORK/bob-produce-read.err"; then
  result $s PASS "$(grep -o -m1 -E 'ClusterAuthorizationException: [^.]*' "$WORK/bob-produce-read.err")"
else
  result $s FAIL "$(grep -v -E '^\s+at ' "$WORK/bob-produce-read.err" | grep -o -E '[A-Za-z]+(Exception|Error): [^(]*' | sort | uniq -c | sort -rn | head -n 3 | tr '\n' ' ' | cut -c1-400)"
fi

# 5. alice with a wrong password: an authentication error, promptly
s=security-wrong-password
t0=$SECONDS
TOOL_TIMEOUT=45 tool alice-wrong org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_SSL" \
  --command-config "$WORK/alice-wrong.properties" --list
rc=$? took=$((SECONDS - t0))
if [[ $rc -ne 0 && $rc -ne 124 ]] && grep -q 'SaslAuthenticationException' "$WORK/alice-wrong.out" "$WORK/alice-wrong.err" && ((took < 30)); then
  result $s PASS "exit $rc in ${took} s: $(grep -h -o -m1 -E 'SaslAuthenticationException: .*' "$WORK/alice-wrong.out" "$WORK/alice-wrong.err" | head -n1 | cut -c1-200)"
else
  result $s FAIL "exit $rc in ${took} s: $(detail alice-wrong)"
fi

# 6. mutual TLS on the SSL listener (principal = the certificate's subject) and PLAIN from JAAS
#    on SASL_PLAINTEXT: the right credentials get in, a client without them is refused.
s=security-plain-ssl-mtls
notes=() ok=true
T_MTLS="$T-mtls"
tool topic-create-mtls org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
  --create --topic "$T_MTLS" --partitions 1 --replication-factor 1 || echo "# topic create: $(detail topic-create-mtls)"
{ tool acl-cert org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --add --allow-principal "$CLIENT_PRINCIPAL" --operation Write --operation Read --operation Describe --topic "$T_MTLS" &&
  tool acl-cert-group org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --add --allow-principal "$CLIENT_PRINCIPAL" --operation Read --group "$G-mtls"; } ||
  { ok=false; notes+=("acl for $CLIENT_PRINCIPAL: $(detail acl-cert) $(detail acl-cert-group)"); }
if produce cert-produce "$SSL" "$WORK/cert.properties" "$T_MTLS" && produced_ok cert-produce; then
  consume cert-consume "$SSL" "$WORK/cert.properties" "$G-mtls" "$T_MTLS"
  if consumed_exactly cert-consume; then
    notes+=("client certificate ($CLIENT_PRINCIPAL) produced and consumed $N records")
  else
    ok=false; notes+=("certificate client consumed $(grep -c . "$WORK/cert-consume.out") of $N: $(detail cert-consume)")
  fi
else
  ok=false; notes+=("certificate client produce: $(detail cert-produce)")
fi
t0=$SECONDS
TOOL_TIMEOUT=45 tool nocert org.apache.kafka.tools.TopicCommand --bootstrap-server "$SSL" \
  --command-config "$WORK/nocert.properties" --list
rc=$? took=$((SECONDS - t0))
if [[ $rc -ne 0 && $rc -ne 124 ]] && grep -q -E 'SslAuthenticationException|SSL handshake failed' "$WORK/nocert.out" "$WORK/nocert.err"; then
  notes+=("no certificate: refused in ${took} s ($(grep -h -o -m1 -E 'SslAuthenticationException: [^(]*' "$WORK/nocert.out" "$WORK/nocert.err" | head -n1 | cut -c1-80))")
else
  ok=false; notes+=("no certificate: exit $rc in ${took} s: $(detail nocert)")
fi
if tool carol org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_PLAIN" --command-config "$WORK/carol.properties" --list; then
  notes+=("PLAIN carol (JAAS) logged in")
else
  ok=false; notes+=("PLAIN carol: $(detail carol)")
fi
TOOL_TIMEOUT=45 tool carol-wrong org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_PLAIN" \
  --command-config "$WORK/carol-wrong.properties" --list
rc=$?
if [[ $rc -ne 0 && $rc -ne 124 ]] && grep -q 'SaslAuthenticationException' "$WORK/carol-wrong.out" "$WORK/carol-wrong.err"; then
  notes+=("PLAIN wrong password refused")
else
  ok=false; notes+=("PLAIN wrong password: exit $rc: $(detail carol-wrong)")
fi
detail_text="$(printf '%s; ' "${notes[@]}")"
if $ok; then result $s PASS "${detail_text%; }"; else result $s FAIL "${detail_text%; }"; fi

# 8. Listings leave out what the principal may not describe: alice sees T only.
s=security-topic-visibility
if tool alice-list org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_SSL" --command-config "$WORK/alice.properties" --list &&
   [[ "$(grep -v '^\s*$' "$WORK/alice-list.out" | sort | tr '\n' ' ')" == "$T " ]]; then
  result $s PASS "alice lists [$T] only (not $T-mtls, not internal topics)"
else
  result $s FAIL "alice lists [$(grep -v '^\s*$' "$WORK/alice-list.out" | sort | tr '\n' ' ')]: $(detail alice-list)"
fi

# 9. SCRAM credentials are per mechanism and can be removed: alice has no SCRAM-SHA-256 one, and
#    once her SCRAM-SHA-512 one is deleted (kafka-configs --delete-config) she cannot log in.
s=security-scram-delete
client_config "$WORK/alice-256.properties" SASL_SSL SCRAM-SHA-256 alice "$ALICE_PASSWORD"
notes=() ok=true
TOOL_TIMEOUT=45 tool alice-256 org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_SSL" --command-config "$WORK/alice-256.properties" --list
if [[ $? -ne 0 ]] && grep -q 'SaslAuthenticationException' "$WORK/alice-256.err" "$WORK/alice-256.out"; then
  notes+=("SCRAM-SHA-256 as alice refused")
else
  ok=false; notes+=("SCRAM-SHA-256 as alice: $(detail alice-256)")
fi
if tool scram-delete kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --alter --delete-config SCRAM-SHA-512 --entity-type users --entity-name alice &&
   tool scram-describe-2 kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --describe --entity-type users &&
   ! grep -q "'alice'" "$WORK/scram-describe-2.out" && grep -q "'bob'" "$WORK/scram-describe-2.out"; then
  notes+=("alice's SCRAM-SHA-512 deleted, bob's listed")
else
  ok=false; notes+=("delete: $(detail scram-delete) describe: $(detail scram-describe-2)")
fi
TOOL_TIMEOUT=45 tool alice-deleted org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_SSL" --command-config "$WORK/alice.properties" --list
if [[ $? -ne 0 ]] && grep -q 'SaslAuthenticationException' "$WORK/alice-deleted.err" "$WORK/alice-deleted.out"; then
  notes+=("alice's old password refused after the delete")
else
  ok=false; notes+=("alice after the delete: $(detail alice-deleted)")
fi
detail_text="$(printf '%s; ' "${notes[@]}")"
if $ok; then result $s PASS "${detail_text%; }"; else result $s FAIL "${detail_text%; }"; fi

# 10. A mechanism the listener does not enable is refused with Kafka's error.
s=security-mechanism-not-enabled
client_config "$WORK/plain-on-scram.properties" SASL_SSL PLAIN carol "$CAROL_PASSWORD"
TOOL_TIMEOUT=45 tool plain-on-scram org.apache.kafka.tools.TopicCommand --bootstrap-server "$SASL_SSL" --command-config "$WORK/plain-on-scram.properties" --list
rc=$?
if [[ $rc -ne 0 && $rc -ne 124 ]] && grep -q 'UnsupportedSaslMechanismException' "$WORK/plain-on-scram.err" "$WORK/plain-on-scram.out"; then
  result $s PASS "$(grep -h -o -m1 -E 'UnsupportedSaslMechanismException: .*' "$WORK/plain-on-scram.err" "$WORK/plain-on-scram.out" | head -n1 | cut -c1-200)"
else
  result $s FAIL "exit $rc: $(detail plain-on-scram)"
fi

# 11. Prefixed ALLOW and a literal DENY (DENY wins): carol (PLAIN) may READ/DESCRIBE topics
#     "secured-*" and groups "carol-*", but is denied READ on $T-mtls.
s=security-acl-prefixed-deny
notes=() ok=true
{ tool acl-carol-prefixed org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --add --allow-principal User:carol --operation Read --operation Describe --topic secured- --group carol- \
    --resource-pattern-type prefixed &&
  tool acl-carol-deny org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --add --deny-principal User:carol --operation Read --topic "$T_MTLS"; } ||
  { ok=false; notes+=("acls: $(detail acl-carol-prefixed) $(detail acl-carol-deny)"); }
consume carol-consume "$SASL_PLAIN" "$WORK/carol.properties" carol-group
if consumed_exactly carol-consume; then
  notes+=("prefixed ALLOW: carol consumed $N records of $T")
else
  ok=false; notes+=("prefixed ALLOW: carol consumed $(grep -c . "$WORK/carol-consume.out") of $N: $(detail carol-consume)")
fi
consume carol-consume-denied "$SASL_PLAIN" "$WORK/carol.properties" carol-group-2 "$T_MTLS"
if grep -q -E 'TopicAuthorizationException: Not authorized to access topics: \['"$T_MTLS"'\]' "$WORK/carol-consume-denied.err" &&
   ! grep -q record- "$WORK/carol-consume-denied.out"; then
  notes+=("literal DENY: $T_MTLS refused (TopicAuthorizationException)")
else
  ok=false; notes+=("literal DENY on $T_MTLS: consumed $(grep -c record- "$WORK/carol-consume-denied.out"): $(detail carol-consume-denied)")
fi
detail_text="$(printf '%s; ' "${notes[@]}")"
if $ok; then result $s PASS "${detail_text%; }"; else result $s FAIL "${detail_text%; }"; fi

# 12. OAUTHBEARER with Kafka's unsecured tokens (the OAUTH listener): the Java client's default
#     login handler makes a token for sub=alice, whose ACLs (User:alice) let her produce and
#     consume; mallory authenticates the same way but has no ACL and is refused on the topic.
s=security-oauthbearer-unsecured
notes=() ok=true
T_OAUTH="$T-oauth" T_JWT="$T-oauth-jwt"
client_config "$WORK/alice-oauth.properties" SASL_PLAINTEXT OAUTHBEARER alice ""
client_config "$WORK/mallory-oauth.properties" SASL_PLAINTEXT OAUTHBEARER mallory ""
for topic in "$T_OAUTH" "$T_JWT"; do
  tool "topic-create-$topic" org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --create --topic "$topic" --partitions 1 --replication-factor 1 || echo "# topic create: $(detail "topic-create-$topic")"
done
{ tool acl-oauth org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --add --allow-principal User:alice --operation Write --operation Read --operation Describe --topic "$T_OAUTH" --topic "$T_JWT" &&
  tool acl-oauth-group org.apache.kafka.tools.AclCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --add --allow-principal User:alice --operation Read --group "$G-oauth" --group "$G-oauth-jwt"; } ||
  { ok=false; notes+=("acls: $(detail acl-oauth) $(detail acl-oauth-group)"); }
t0=$SECONDS
if produce alice-oauth-produce "$OAUTH" "$WORK/alice-oauth.properties" "$T_OAUTH" && produced_ok alice-oauth-produce; then
  consume alice-oauth-consume "$OAUTH" "$WORK/alice-oauth.properties" "$G-oauth" "$T_OAUTH"
  if consumed_exactly alice-oauth-consume; then
    notes+=("alice (unsecured token, sub=alice) produced and consumed $N records in $((SECONDS - t0)) s")
  else
    ok=false; notes+=("alice consumed $(grep -c . "$WORK/alice-oauth-consume.out") of $N: $(detail alice-oauth-consume)")
  fi
else
  ok=false; notes+=("alice produce: $(detail alice-oauth-produce)")
fi
COUNT=3 produce mallory-oauth-produce "$OAUTH" "$WORK/mallory-oauth.properties" "$T_OAUTH"
if grep -q -E 'TopicAuthorizationException: Not authorized to access topics: \['"$T_OAUTH"'\]' "$WORK/mallory-oauth-produce.err" &&
   ! grep -q 'SaslAuthenticationException' "$WORK/mallory-oauth-produce.err"; then
  notes+=("mallory authenticated, refused on $T_OAUTH (TopicAuthorizationException)")
else
  ok=false; notes+=("mallory: $(detail mallory-oauth-produce)")
fi
detail_text="$(printf '%s; ' "${notes[@]}")"
if $ok; then result $s PASS "${detail_text%; }"; else result $s FAIL "${detail_text%; }"; fi

# 13. OAUTHBEARER with signed tokens (the OAUTHJWT listener, KIP-768's validator over the https
#     JWKS endpoint): confluent-kafka hands RS256 tokens over with oauth_cb. alice's token (right
#     key, audience and issuer) produces and consumes; one signed by another key and an expired
#     one are refused with an authentication error; the broker read the key set over https.
s=security-oauthbearer-jwt
t0=$SECONDS
timeout 120 python3 "$HERE/oauth_client.py" run "$OAUTHJWT" "$WORK" "$T_JWT" "$G-oauth-jwt" >"$WORK/oauth-jwt.out" 2>"$WORK/oauth-jwt.err"
rc=$?
{ echo "### oauth_client.py run: exit $rc in $((SECONDS - t0)) s"; cat "$WORK/oauth-jwt.out"; echo "--- stderr"; tail -n 20 "$WORK/oauth-jwt.err"; } >>"$OUT/tools.log"
served="$(grep -c 'served jwks.json' "$WORK/jwks-server.log")"
if [[ $rc -eq 0 && "$served" -ge 1 ]]; then
  result $s PASS "in $((SECONDS - t0)) s, key set read $served time(s) over https: $(cut -c1-400 "$WORK/oauth-jwt.out")"
else
  result $s FAIL "exit $rc, key set read $served time(s) over https: $(cut -c1-400 "$WORK/oauth-jwt.out") $(tail -n 2 "$WORK/oauth-jwt.err" | tr '\n' ' ' | cut -c1-200)"
fi

# 14. KIP-599 controller_mutation_rate: 1 partition/s for client id `mutator` (a bucket of
#     11 s × 1/s). kafka-topics (which opts out of the admin client's retry on quota violation)
#     creates a 40-partition topic (the bucket was full, so it passes and goes to -29), then a
#     1-partition topic is refused: THROTTLING_QUOTA_EXCEEDED. Another client id is not limited.
s=security-mutation-quota
notes=() ok=true
{ cat "$WORK/admin.properties"; echo "client.id=mutator"; } >"$WORK/mutator.properties"
if tool mutation-quota kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --alter --add-config controller_mutation_rate=1 --entity-type clients --entity-name mutator; then
  sleep 2 # the quota reaches the controller's quota manager once its record is applied
  tool mutation-burst org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN" --command-config "$WORK/mutator.properties" \
    --create --topic quota-burst --partitions 40 --replication-factor 1 &&
    notes+=("40 partitions created (bucket was full)") || { ok=false; notes+=("burst: $(detail mutation-burst)"); }
  if tool mutation-refused org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN" --command-config "$WORK/mutator.properties" \
       --create --topic quota-refused --partitions 1 --replication-factor 1; then
    ok=false; notes+=("the next topic was created: $(detail mutation-refused)")
  elif grep -q -E 'ThrottlingQuotaExceededException|throttling quota has been exceeded' "$WORK/mutation-refused.out" "$WORK/mutation-refused.err"; then
    notes+=("the next topic refused: $(grep -h -o -E 'The throttling quota has been exceeded[^"]*' "$WORK/mutation-refused.out" "$WORK/mutation-refused.err" | head -n 1)")
  else
    ok=false; notes+=("refused otherwise: $(detail mutation-refused)")
  fi
  tool mutation-other org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --create --topic quota-other --partitions 40 --replication-factor 1 &&
    notes+=("another client id created 40 partitions") || { ok=false; notes+=("other client: $(detail mutation-other)"); }
  tool mutation-quota-remove kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --alter --delete-config controller_mutation_rate --entity-type clients --entity-name mutator || true
else
  ok=false; notes+=("kafka-configs: $(detail mutation-quota)")
fi
detail_text="$(printf '%s; ' "${notes[@]}")"
if $ok; then result $s PASS "${detail_text%; }"; else result $s FAIL "${detail_text%; }"; fi

# 15. request_percentage: 0.01 % of one thread for client id `busy` (1 ms of request handling
#     per 10 s window). carol (SASL_PLAINTEXT, PLAIN) sends Metadata requests as `busy` until
#     answers carry throttle_time_ms > 0; as `idle` (no quota) none of 50 answers does.
s=security-request-quota
if tool request-quota kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
     --alter --add-config request_percentage=0.01 --entity-type clients --entity-name busy; then
  sleep 2
  busy="$(timeout 60 python3 "$HERE/request_quota.py" "$SASL_PLAIN" busy 5000 carol "$CAROL_PASSWORD" 2>&1 | tail -n 1)"
  idle="$(timeout 60 python3 "$HERE/request_quota.py" "$SASL_PLAIN" idle 50 carol "$CAROL_PASSWORD" 2>&1 | tail -n 1)"
  echo "### request_quota.py: busy: $busy; idle: $idle" >>"$OUT/tools.log"
  if [[ "$busy" =~ throttled=([0-9]+)\ first_throttle_ms=([0-9]+) ]] && (( BASH_REMATCH[1] > 0 && BASH_REMATCH[2] > 0 )) &&
     [[ "$idle" == *"requests=50 throttled=0 "* ]]; then
    result $s PASS "busy: ${busy}; idle: ${idle}"
  else
    result $s FAIL "busy: ${busy}; idle: ${idle}"
  fi
  tool request-quota-remove kafka.admin.ConfigCommand --bootstrap-server "$PLAIN" --command-config "$WORK/admin.properties" \
    --alter --delete-config request_percentage --entity-type clients --entity-name busy || true
else
  result $s FAIL "kafka-configs: $(detail request-quota)"
fi

# 7. The broker takes the secured settings from a server.properties file as Kafka writes them:
#    inline PEM (ssl.keystore.certificate.chain, ssl.keystore.key) with \n escapes.
s=security-server-properties
if [[ "$target" == kafka ]]; then
  result $s PASS "the Kafka broker above was started from server.properties holding these settings"
else
  Q_PLAIN="$(free_port)" Q_SSL="$(free_port)"
  { echo "listeners=SASL_SSL://127.0.0.1:$Q_SSL"; cat "$WORK/secured.properties"; } >"$WORK/second.properties"
  RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 "${DLOG_BIN:-$ROOT/target/release/dlog}" --listen "127.0.0.1:$Q_PLAIN" --data-dir "$WORK/data2" \
    --config "$WORK/second.properties" >"$OUT/broker2.log" 2>&1 &
  second_pid=$!
  for _ in $(seq 1 100); do port_open "$Q_SSL" && break; kill -0 "$second_pid" 2>/dev/null || break; sleep 0.1; done
  if port_open "$Q_SSL"; then
    result $s PASS "dlog started with --config server.properties (inline PEM with \\n escapes)"
  else
    result $s FAIL "dlog --config server.properties: $(grep -v '^\s*$' "$OUT/broker2.log" | head -n 5 | tr '\n' ' ' | cut -c1-200)…"
  fi
  kill -TERM "$second_pid" 2>/dev/null; wait "$second_pid" 2>/dev/null
fi

echo "# $target: done in $((SECONDS - started)) s (tool output: $OUT/tools.log)"
[[ -n "${KEEP_WORK:-}" ]] && echo "# work dir kept: $WORK"
exit $failed
