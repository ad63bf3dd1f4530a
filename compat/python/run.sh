#!/usr/bin/env bash
# Runs the Python compatibility suite (kcat, confluent-kafka, kafka-python) against
# the broker at $BOOTSTRAP (host:port). Exit code = pytest's.
#   BOOTSTRAP=127.0.0.1:9092 compat/python/run.sh [extra pytest args]
# Install dependencies first with compat/python/install.sh.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# BOOTSTRAP is passed through as is; when it is unset every test fails with a
# message saying so (see conftest.py).
cd "$here/../.."
# Whole-suite bound on top of the per-test limit in conftest.py.
timeout --kill-after=30 "${COMPAT_SUITE_TIMEOUT:-1200}" \
    "${PYTHON:-python3}" -m pytest -q compat/python "$@"
exit $?
