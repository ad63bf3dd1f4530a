#!/usr/bin/env bash
# The chaos stage of compat/test-all.sh: the checker's and the proxy's unit tests, then the short mode against
# dlog (fixed seeds, a 1-node and a 3-node run, every nemesis at least once; a few minutes).
# Exits non-zero on a failing checker test, any anomaly, or an invalid run.
#   compat/chaos/ci.sh [--target kafka]        DLOG_BIN, KAFKA_LIB, CHAOS_OUT as for run.py
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m pytest -q -p no:cacheprovider "$here/test_checker.py" "$here/test_proxy.py" || exit 1
exec python3 "$here/run.py" short "$@"
