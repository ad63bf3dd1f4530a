"""The history of a run: every operation's invocation and completion, as JSON lines.

One line per event:
    {"index": 7, "process": "producer-0", "type": "invoke", "f": "send", "value": {...}, "time": 123}
type is "invoke", then one of "ok" (it happened), "fail" (it certainly did not happen) or
"info" (indeterminate: it may or may not have happened). time is nanoseconds since the run
started (monotonic clock). Nemesis actions are recorded the same way (process "nemesis").
"""

import json
import threading
import time


class History:
    """Thread-safe, append-only; kept in memory and streamed to a file as it grows."""

    def __init__(self, path=None):
        self._lock = threading.Lock()
        self._events = []
        self._start_ns = time.monotonic_ns()
        self._file = open(path, "w", encoding="utf-8") if path else None

    def now(self):
        return time.monotonic_ns() - self._start_ns

    def _append(self, process, type_, f, value, time_ns=None):
        with self._lock:
            event = {"index": len(self._events), "process": process, "type": type_, "f": f,
                     "value": value, "time": self.now() if time_ns is None else time_ns}
            self._events.append(event)
            if self._file:
                self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
            return event

    def invoke(self, process, f, value, time_ns=None):
        """time_ns: when the operation really started, for a poll recorded once it returned data
        (empty polls are not recorded)."""
        return self._append(process, "invoke", f, value, time_ns)

    def complete(self, process, type_, f, value):
        assert type_ in ("ok", "fail", "info"), type_
        return self._append(process, type_, f, value)

    def events(self):
        with self._lock:
            return list(self._events)

    def close(self):
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None


def load(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
