#!/usr/bin/env bash
# Differential run: the same compat suites against dlog and against a real Apache Kafka
# 4.x broker, then a per-test comparison.
#   compat/diff.sh OUT_DIR [python|java|go|tools ...]
# Exits non-zero when a test passes on Kafka but not on dlog. Tests that fail on both, or
# pass only on dlog, are listed but do not fail the run (they are harness or Kafka quirks).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: compat/diff.sh OUT_DIR [suites]}"
shift
# DLOG_RESULTS=DIR reuses the dlog results of an earlier compat/run.sh (the test command's
# previous stage) instead of running the suites against dlog again.
if [ -n "${DLOG_RESULTS:-}" ]; then
  mkdir -p "$out"; rm -rf "$out/dlog"; cp -r "$DLOG_RESULTS" "$out/dlog"
else
  "$here/run.sh" dlog "$out/dlog" "$@"
fi
"$here/run.sh" kafka "$out/kafka" "$@"
status=0
for results in "$out"/kafka/*.results; do
  suite="$(basename "$results" .results)"
  ours="$out/dlog/$suite.results"
  [ -f "$ours" ] || { echo "diff $suite: no dlog results"; status=1; continue; }
  # name -> outcome on each side
  join -j 1 -a 1 -a 2 -e MISSING -o 0,1.2,2.2 \
    <(awk '{print $2, $1}' "$results" | sort) <(awk '{print $2, $1}' "$ours" | sort) >"$out/$suite.diff"
  regressions=$(awk '$2 == "PASS" && $3 != "PASS"' "$out/$suite.diff")
  others=$(awk '$2 != $3 && !($2 == "PASS" && $3 != "PASS")' "$out/$suite.diff")
  same=$(awk '$2 == $3' "$out/$suite.diff" | wc -l)
  echo "diff $suite: $same identical outcomes"
  if [ -n "$regressions" ]; then
    echo "diff $suite: pass on kafka, not on dlog (name kafka dlog):"; echo "$regressions" | sed 's/^/  /'
    status=1
  fi
  [ -z "$others" ] || { echo "diff $suite: other differences (name kafka dlog):"; echo "$others" | sed 's/^/  /'; }
done
exit $status
