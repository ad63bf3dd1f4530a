#!/usr/bin/env bash
# Installs what deploy/check.sh needs (idempotent, fast when done): promtool from Debian's
# `prometheus` package, PyYAML from PyPI, curl for the live scrape. systemd-analyze is used
# when the machine has it.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  # The package's service is not started in containers without systemd; only promtool is used.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  "$PY" -m pip install --disable-pip-version-check -q PyYAML==6.0.3
fi
command -v promtool >/dev/null
echo "deploy: check tools installed ($(promtool --version 2>&1 | head -n1))"
