#!/usr/bin/env bash
# Runs franz-go's pkg/kgo integration tests (the release pinned in go.mod) against the
# broker at $BOOTSTRAP (host:port), with kgo's default idempotent produce, consumer groups
# and transactions. Tests that need SASL or share groups are not selected: see TESTS.md.
#
#   BOOTSTRAP=127.0.0.1:9092 compat/go/run.sh            # the selected tests
#   BOOTSTRAP=... compat/go/run.sh '^TestIssue337$'      # a custom -run regexp
#
# Env: KGO_TIMEOUT_SECS (go test -timeout, default 900); KGO_KEEP_WORK=1 keeps the
# temporary copy of the module; KGO_LOG_LEVEL (info|debug|none) is passed through (it
# only affects the few tests that attach the test logger).
# Exit code = go test's (2 on setup errors).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ -z "${BOOTSTRAP:-}" ]; then
    echo "compat/go/run.sh: BOOTSTRAP is not set (host:port of the broker under test)" >&2
    exit 2
fi
command -v go >/dev/null || { echo "compat/go/run.sh: go not found" >&2; exit 2; }

# Integration tests that produce, consume (directly or in classic consumer groups) and use
# admin requests. Keep in sync with TESTS.md.
SELECTED=(
    TestPing
    TestConsumeTopicRetrieval
    TestConsumeTopicRetrieval_Many
    TestIssue325
    TestIssue337
    TestDirectPartitionPurge
    TestIssue434
    TestAddRemovePartitions
    TestPauseIssue489
    TestPauseIssueOct2023
    TestIssue648
    TestIssue810
    TestIssue865
    TestIssueFetchLargerThanBrokerMaxReadBytes
    TestPooling
    TestHookPollStart
    TestConsumeMaxDecompressBatchBytes
    TestClient_Produce
    TestIssueProduceBrokerTooOldFailsRecords
    TestIssueProduceSyncManualPartitionNegativeDoesNotPanic
    TestIssue831
    TestClient_ProduceLargeMessages
    TestUnknownGroupOffsetFetchPinned
    TestIssue1034
    TestConsumeRegex
    TestIssue523
    TestGroupSimple
    TestGroupETL
    Test848RegexBrokerResolves
    TestTxnEtl
    TestIssue769
)
if [ $# -ge 1 ]; then
    RUN="$1"
    shift
else
    RUN="^($(IFS='|'; echo "${SELECTED[*]}"))\$"
fi

# Fetch the pinned module (checksummed via go.sum) and locate it in the module cache.
cd "$here"
timeout 600 go mod download github.com/twmb/franz-go
SRC="$(go list -m -f '{{.Dir}}' github.com/twmb/franz-go)"
[ -d "$SRC/pkg/kgo" ] || { echo "compat/go/run.sh: $SRC/pkg/kgo missing" >&2; exit 2; }

# The module cache is read-only: test in a writable copy.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dlog-kgo.XXXXXX")"
cleanup() { [ "${KGO_KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
cp -r "$SRC" "$WORK/franz-go"
chmod -R u+w "$WORK/franz-go"

cd "$WORK/franz-go/pkg/kgo"
echo "compat/go: franz-go $(basename "$SRC" | sed 's/.*@//') kgo tests against $BOOTSTRAP, -run '$RUN'"
set +e
secs="${KGO_TIMEOUT_SECS:-900}"
KGO_SEEDS="$BOOTSTRAP" KGO_TEST_RF=1 \
    timeout --kill-after=30 "$((secs + 120))" \
    go test -count=1 -timeout "${secs}s" -run "$RUN" -v . "$@"
rc=$?
set -e
exit $rc
