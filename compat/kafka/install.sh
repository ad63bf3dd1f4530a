#!/usr/bin/env bash
# Fetch the real Apache Kafka broker (+ tools, clients, log4j2 backend) from Maven Central
# into compat/kafka/lib/ (git-ignored) and write the classpath to compat/kafka/lib/classpath.txt.
# Idempotent: returns at once when the jars of the pinned version are already there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# KAFKA_VERSION (env) installs another release next to the pinned one, in lib-VERSION/
# (compat/java-share runs its share-group scenarios against a newer broker this way).
PINNED="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
VERSION="${KAFKA_VERSION:-$PINNED}"
if [[ "$VERSION" == "$PINNED" ]]; then LIB="$HERE/lib"; else LIB="$HERE/lib-$VERSION"; fi
STAMP="$LIB/.installed-$VERSION"

if [[ -f "$STAMP" && -f "$LIB/classpath.txt" && -f "$LIB/kafka_2.13-$VERSION.jar" ]] \
   && grep -q "^$LIB/" "$LIB/classpath.txt"; then
  echo "kafka $VERSION already installed in $LIB"
  exit 0
fi

command -v java >/dev/null || { echo "install.sh: java not found (need a JDK >= 17)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "install.sh: mvn not found" >&2; exit 1; }

rm -rf "$LIB.tmp"
mkdir -p "$LIB.tmp"
# Bounded: a fresh resolve downloads ~100 jars.
if ! timeout 900 mvn -B -q -Dstyle.color=never -f "$HERE/pom.xml" "-Dkafka.version=$VERSION" dependency:copy-dependencies \
    -DoutputDirectory="$LIB.tmp" -DincludeScope=runtime >"$LIB.tmp/mvn.log" 2>&1; then
  echo "install.sh: maven resolve failed:" >&2
  grep -E 'ERROR' "$LIB.tmp/mvn.log" | head -n 20 >&2
  exit 1
fi
[[ -f "$LIB.tmp/kafka_2.13-$VERSION.jar" ]] || { echo "install.sh: kafka_2.13-$VERSION.jar missing after resolve" >&2; exit 1; }
rm -rf "$LIB"
mv "$LIB.tmp" "$LIB"
ls "$LIB"/*.jar | sort | paste -sd: - > "$LIB/classpath.txt"
touch "$STAMP"
echo "kafka $VERSION installed in $LIB ($(ls "$LIB"/*.jar | wc -l) jars)"
