#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine (idempotent, fast when done):
# kcat (Debian), Python clients (PyPI), Apache Kafka 4.x jars and the Java client
# (Maven Central), franz-go (Go module proxy), cargo-fuzz (crates.io, for the fuzz run),
# promtool (Debian) and PyYAML for the deploy-file checks; fusepy and libfuse2 for compat/chaos's
# power-loss nemesis.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/python/install.sh"
"$here/chaos/install.sh"
"$here/kafka/install.sh"
(cd "$here/go" && timeout 600 go mod download github.com/twmb/franz-go)
(cd "$here/java" && timeout 900 mvn -q -B dependency:resolve >/dev/null)
(cd "$here/java-share" && timeout 900 mvn -q -B dependency:resolve >/dev/null)
(cd "$here/java-streams" && timeout 900 mvn -q -B dependency:resolve >/dev/null)
"$here/../deploy/install.sh"
echo "compat: dependencies installed"
