#!/usr/bin/env bash
# Installs what the Python compat suite needs. Idempotent and fast when done.
#   - pinned pip packages from requirements.txt
#   - kcat (Debian package; links librdkafka 2.0.2) only when missing
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

# pip: skip the resolver round trip when every pin is already satisfied.
if ! "$PY" - "$here/requirements.txt" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line:
        continue
    name, want = line.split('==')
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYEOF
then
    "$PY" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
fi

if ! command -v kcat >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
fi
command -v kcat >/dev/null
echo "compat/python: dependencies installed (kcat: $(kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*' | head -1))"
