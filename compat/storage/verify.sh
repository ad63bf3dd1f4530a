#!/usr/bin/env bash
# On-disk format check: dlog's segments, offset and time indexes are read by Apache Kafka's
# own DumpLogSegments tool (kafka.tools.DumpLogSegments from the Kafka jars). Produces with
# every codec through kcat (idempotently, so producer state is written), stops dlog cleanly,
# then asserts that Kafka finds every batch valid, no index mismatch, and reads the producer
# state snapshots (.snapshot).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
port="${DLOG_PORT:-19492}"
data="$(mktemp -d "${TMPDIR:-/tmp}/dlog-storage.XXXXXX")"
classpath="$(cat "$root/compat/kafka/lib/classpath.txt")"
"$root/target/release/dlog" --listen "127.0.0.1:$port" --data-dir "$data" \
  --set log.index.interval.bytes=200 --set log.segment.bytes=4096 >"$data.log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 1 100); do timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break; sleep 0.1; done
for codec in none gzip snappy lz4 zstd; do
  for i in $(seq 1 200); do echo "key-$i:value-$codec-$i"; done |
    timeout 60 kcat -b "127.0.0.1:$port" -P -t storage -K: -z "$codec" -X linger.ms=0 -X batch.num.messages=7 \
      -X enable.idempotence=true
done
kill -TERM $pid; wait $pid || true
files=$(ls "$data"/storage-0/*.log "$data"/storage-0/*.index "$data"/storage-0/*.timeindex | paste -sd, -)
segments=$(ls "$data"/storage-0/*.log | wc -l)
out="$(timeout 120 java -cp "$classpath" kafka.tools.DumpLogSegments --files "$files" --deep-iteration 2>&1)"
verify="$(timeout 120 java -cp "$classpath" kafka.tools.DumpLogSegments --files "$files" --verify-index-only 2>&1)"
snapshot_files=$(ls "$data"/storage-0/*.snapshot | paste -sd, -)
snapshots="$(timeout 120 java -cp "$classpath" kafka.tools.DumpLogSegments --files "$snapshot_files" 2>&1)"
snapshot_entries=$(grep -c '^producerId: ' <<<"$snapshots" || true)
batches=$(grep -c 'baseOffset:.*isvalid: true' <<<"$out" || true)
invalid=$(grep -c 'isvalid: false' <<<"$out" || true)
records=$(grep -c '| offset: ' <<<"$out" || true)
if [ "$invalid" -ne 0 ] || grep -q -i 'mismatch' <<<"$verify" || [ "$records" -ne 1000 ] \
   || [ "$snapshot_entries" -lt 1 ] || grep -q -i 'exception' <<<"$snapshots"; then
  echo "storage format check FAILED: $segments segments, $batches valid batches, $invalid invalid, $records records, $snapshot_entries producer snapshot entries"
  grep -i -A5 'mismatch' <<<"$verify" | head -20
  exit 1
fi
echo "storage format check: Kafka's DumpLogSegments read $segments segments, $batches valid batches, $records records, indexes consistent, $snapshot_entries producer snapshot entries"
