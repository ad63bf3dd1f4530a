#!/usr/bin/env bash
# What compat/chaos needs beyond compat/python (confluent-kafka): the power-loss nemesis's FUSE
# layer (lazyfs.py) uses fusepy (PyPI, ctypes bindings) over libfuse2 (Debian). The partition
# nemeses need iproute2 (`ip netns`, present on Debian) and root; disk-full needs root (tmpfs).
# Idempotent and fast when done.
set -euo pipefail
PY="${PYTHON:-python3}"
if ! ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2'; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libfuse2 >/dev/null
fi
if ! "$PY" -c 'import importlib.metadata as m; assert m.version("fusepy") == "3.0.1"' >/dev/null 2>&1; then
    "$PY" -m pip install --disable-pip-version-check -q fusepy==3.0.1
fi
command -v ip >/dev/null
"$PY" -c 'import fuse' 
echo "compat/chaos: dependencies installed (fusepy, libfuse2)"
