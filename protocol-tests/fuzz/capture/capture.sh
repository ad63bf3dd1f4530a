#!/usr/bin/env bash
# Captures real client request frames as fuzz seeds: starts dlog behind capture.py's proxy,
# runs kcat (metadata, produce with every codec, consume) and the Python compatibility suite
# (or a subset) through it, then selects a bounded seed corpus into ../corpus/.
#
#   protocol-tests/fuzz/capture/capture.sh            # kcat + `compat/python/run.sh -k kcat`
#   PYTEST_ARGS="" capture.sh                          # the whole Python suite
#   PYTEST_ARGS=skip capture.sh                        # kcat only
#
# Needs target/release/dlog (cargo build --release), kcat, and for the suite the packages
# from compat/python/install.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
dlog="${DLOG_BIN:-$root/target/release/dlog}"
port_proxy="${PORT_A:-29192}"
port_broker="${PORT_B:-29193}"
pytest_args="${PYTEST_ARGS--k kcat}"
work="$(mktemp -d /tmp/dlog-capture.XXXXXX)"
raw="${RAW_DIR:-$work/raw}"
[ -x "$dlog" ] || { echo "capture: $dlog missing; run cargo build --release" >&2; exit 1; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

"$dlog" --listen "127.0.0.1:$port_broker" --data-dir "$work/data" \
    --set "advertised.listeners=PLAINTEXT://127.0.0.1:$port_proxy" 2>"$work/dlog.log" &
pids+=($!)
python3 "$here/capture.py" proxy --listen "127.0.0.1:$port_proxy" \
    --upstream "127.0.0.1:$port_broker" --out "$raw" &
pids+=($!)
for port in "$port_broker" "$port_proxy"; do
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

bootstrap="127.0.0.1:$port_proxy"
kcat -b "$bootstrap" -L >/dev/null
for codec in none gzip snappy lz4 zstd; do
    topic="capture-$codec"
    # Keys, values of several sizes, and a header: varied record layouts.
    for i in $(seq 1 40); do
        printf 'key-%d:value-%d-%s\n' "$i" "$i" "$(head -c $((i * 7)) /dev/zero | tr '\0' 'v')"
    done | kcat -P -b "$bootstrap" -t "$topic" -z "$codec" -K: -H "source=capture" \
        -X linger.ms=5
    kcat -C -b "$bootstrap" -t "$topic" -o beginning -e -q >/dev/null
    kcat -C -b "$bootstrap" -t "$topic" -o -5 -e -q >/dev/null
done
kcat -b "$bootstrap" -L -t capture-none >/dev/null
kcat -Q -b "$bootstrap" -t "capture-none:0:0" >/dev/null || true

if [ "$pytest_args" != "skip" ]; then
    # shellcheck disable=SC2086
    BOOTSTRAP="$bootstrap" "$root/compat/python/run.sh" -q $pytest_args || \
        echo "capture: the Python suite failed (frames are still captured)" >&2
fi

cleanup
trap - EXIT
echo "capture: $(ls "$raw" | wc -l) distinct frames in $raw"
python3 "$here/capture.py" select --raw "$raw" \
    --frames "$here/../corpus/request_frame" --batches "$here/../corpus/batch"
