"""The checker: reads a history (see history.py) and lists every anomaly with the operations
involved. Pure Python, no client library: `python3 checker.py HISTORY.jsonl` checks a saved run.

What the history holds (the workloads write it; the tests in test_checker.py build it by hand):
  f "topic"  ok  {"topic", "transactional"}              declared once per topic by the runner
  f "send"   invoke {"topic", "partition", "value", "session"}
             ok     {... , "offset"}                      acknowledged (acks=all)
             fail / info                                  certainly not written / maybe written
  f "txn"    invoke {"topic", "intent": "commit"|"abort", "session", "writes": [[partition, value], ...]}
             ok|fail|info {... , "writes": [[partition, offset|None, value], ...],
                           "commit_time": ns or None (when commit_transaction was called),
                           "outcome": "commit"|"abort"|None}
             ok = the outcome is known (commit or abort acknowledged); fail = certainly aborted;
             info = unknown. Consume-transform-produce transactions also carry
             "source_topic" and "sources": [[partition, offset, value], ...] (the records read,
             whose offsets the transaction commits); a source counts as a read.
  f "poll"   ok {"topic", "isolation": "read_committed"|"read_uncommitted", "session",
                 "records": [[partition, offset, value], ...]}
Values are unique integers: every record read can be traced to the send that wrote it.

Anomalies (after Jepsen's Kafka checker):
  lost-write          an acknowledged write (send ok, or a write of a committed txn) at an offset
                      below the highest offset any reader polled in its partition, that no reader saw
  unseen-write        an acknowledged write no reader saw, at or past that highest offset (after the
                      final drain it is lost too, at the tail)
  vanished-write      an acknowledged write some reader saw, that the final drain (processes
                      "final-...", reading every partition from the beginning) did not see although
                      it read past the write's offset, or whose partition ends (high watermark,
                      f "drain-end" of a read_uncommitted drain) at or below its offset: lost after
                      it was read (power loss of every replica; the offsets are usually reused:
                      inconsistent-offset too)
  duplicate           one value at two offsets
  inconsistent-offset two values at one offset (reads and producer acknowledgements together)
  nonmonotonic-poll   within one consumer session, a partition's polled offsets not increasing
  skipped-poll        within one consumer session of a non-transactional topic, an offset jumped
                      over (a gap: records between were never returned)
  nonmonotonic-send   within one producer session, a partition's acknowledged offsets not increasing
                      in send order
  aborted-read        a read_committed reader saw a value of a transaction that certainly aborted
  precommitted-read   a read_committed reader saw a value before its transaction's commit was
                      requested (or of a transaction whose commit was never requested)
  unknown-value       a reader saw a value nobody sent
  double-processed    consume-transform-produce: one record read (a source) is in the output of two
                      transactions that are visible (committed, or read by a read_committed reader)
  g1c                 a cycle of write-read dependencies between transactions (circular information
                      flow): each one read a value the next one wrote (cycles.py; cycles that need
                      write-write edges inferred from offsets are allowed in Kafka: counted in
                      stats "ww_cycles" and listed under "cycles", not anomalies)
"""

import json
import sys
from collections import defaultdict

import cycles as dependency_cycles

KINDS = [
    "lost-write",
    "unseen-write",
    "vanished-write",
    "duplicate",
    "inconsistent-offset",
    "nonmonotonic-poll",
    "skipped-poll",
    "nonmonotonic-send",
    "aborted-read",
    "precommitted-read",
    "unknown-value",
    "double-processed",
    "g1c",
]

# The nemesis' faults (the invoke of each is counted in stats["faults"]; nemesis.py).
FAULTS = ("kill", "kill-controller", "pause", "delay", "duplicate", "duplicate-late", "reorder", "partition-node", "partition-controller", "partition-bridge",
          "disk-full", "power-loss", "power-loss-all")


def _anomaly(kind, ops, **fields):
    entry = {"kind": kind}
    entry.update(fields)
    entry["ops"] = sorted(set(ops))
    return entry


def check(events):
    """Returns {"anomalies": [...], "counts": {kind: n}, "stats": {...}}."""
    transactional = {}
    invoked_values = set()
    # value -> {"status": ok|fail|info, "ack": (topic, partition, offset) or None, "ops": [...],
    #           "txn": txn record or None}
    writes = {}
    txns = []
    # (topic, partition, offset) -> {value: [event index, ...]} from reads and acknowledgements
    at_position = defaultdict(lambda: defaultdict(list))
    # value -> [event index] of reads
    read_by = defaultdict(list)
    max_read = {}
    sessions = {}  # (process, session, topic, partition) -> (offset, event index)
    send_order = defaultdict(list)  # (process, session, topic, partition) -> [(invoke index, offset, ok index)]
    send_invoke_index = {}
    anomalies = []
    stats = {"ops": 0, "sends_ok": 0, "sends_info": 0, "sends_fail": 0, "txns_committed": 0,
             "txns_aborted": 0, "txns_info": 0, "polls": 0, "records_read": 0, "faults": 0}
    read_committed_reads = []  # (value, poll event)
    final_values = set()  # values the final drain read
    final_max = {}  # (topic, partition) -> highest offset the final drain read
    drain_end = {}  # (topic, partition) -> end offset (high watermark) the final drain read up to

    for event in events:
        f, type_, value = event["f"], event["type"], event["value"]
        if type_ == "invoke":
            stats["ops"] += 1
            if f == "send":
                invoked_values.add(value["value"])
                send_invoke_index[value["value"]] = event["index"]
            elif f == "txn":
                for _partition, v in value["writes"]:
                    invoked_values.add(v)
            elif event["process"] == "nemesis" and f in FAULTS:
                stats["faults"] += 1
            continue
        if f == "topic":
            transactional[value["topic"]] = bool(value.get("transactional"))
        elif f == "drain-end" and value.get("isolation") == "read_uncommitted":
            for partition, end in value["end_offsets"].items():
                key = (value["topic"], int(partition))
                drain_end[key] = max(drain_end.get(key, -1), end)
        elif f == "send":
            v = value["value"]
            key = (event["process"], value.get("session"), value["topic"], value["partition"])
            stats["sends_" + type_] += 1
            ack = None
            # librdkafka may acknowledge a retried batch of an idempotent producer without an
            # offset (seen after a leader failover, seed 3002 of the first replicated soak): the
            # write is acknowledged, its position is known only from the reads.
            if type_ == "ok" and value["offset"] is not None and value["offset"] >= 0:
                ack = (value["topic"], value["partition"], value["offset"])
                at_position[ack][v].append(event["index"])
                send_order[key].append((send_invoke_index.get(v, event["index"]), value["offset"], event["index"]))
            ops = [i for i in (send_invoke_index.get(v), event["index"]) if i is not None]
            writes[v] = {"status": type_, "ack": ack, "ops": ops, "txn": None,
                         "where": (value["topic"], value["partition"])}
        elif f == "txn":
            record = {"index": event["index"], "type": type_, "outcome": value.get("outcome"),
                      "commit_time": value.get("commit_time"), "values": []}
            committed = type_ == "ok" and value.get("outcome") == "commit"
            aborted = type_ == "fail" or (type_ == "ok" and value.get("outcome") == "abort")
            record["committed"], record["aborted"] = committed, aborted
            stats["txns_committed" if committed else "txns_aborted" if aborted else "txns_info"] += 1
            txns.append(record)
            record["sources"] = []
            for partition, offset, v in value.get("sources", []):
                position = (value["source_topic"], partition, offset)
                at_position[position][v].append(event["index"])
                read_by[v].append(event["index"])
                if offset > max_read.get(position[:2], -1):
                    max_read[position[:2]] = offset
                record["sources"].append(v)
            for partition, offset, v in value["writes"]:
                ack = None
                if offset is not None and offset >= 0:
                    ack = (value["topic"], partition, offset)
                    at_position[ack][v].append(event["index"])
                status = "ok" if committed else "fail" if aborted else "info"
                writes[v] = {"status": status, "ack": ack if committed else None,
                             "position": ack, "ops": [event["index"]], "txn": record}
                record["values"].append(v)
        elif f == "poll" and type_ == "ok":
            stats["polls"] += 1
            topic = value["topic"]
            for partition, offset, v in value["records"]:
                stats["records_read"] += 1
                position = (topic, partition, offset)
                if event["process"].startswith("final-"):
                    final_values.add(v)
                    if offset > final_max.get((topic, partition), -1):
                        final_max[(topic, partition)] = offset
                at_position[position][v].append(event["index"])
                read_by[v].append(event["index"])
                if offset > max_read.get((topic, partition), -1):
                    max_read[(topic, partition)] = offset
                key = (event["process"], value.get("session"), topic, partition)
                previous = sessions.get(key)
                if previous is not None:
                    prev_offset, prev_index = previous
                    if offset <= prev_offset:
                        anomalies.append(_anomaly(
                            "nonmonotonic-poll", [prev_index, event["index"]], topic=topic,
                            partition=partition, process=event["process"], session=value.get("session"),
                            detail=f"offset {offset} polled after {prev_offset}"))
                    elif offset > prev_offset + 1 and not transactional.get(topic, False):
                        anomalies.append(_anomaly(
                            "skipped-poll", [prev_index, event["index"]], topic=topic,
                            partition=partition, process=event["process"], session=value.get("session"),
                            detail=f"offset {offset} polled right after {prev_offset}"))
                sessions[key] = (offset, event["index"])
                if value.get("isolation") == "read_committed":
                    read_committed_reads.append((v, event))

    # Two values at one offset; one value at two offsets.
    positions_of = defaultdict(set)
    for position, values in at_position.items():
        for v in values:
            positions_of[v].add(position)
        if len(values) > 1:
            ops = [i for indexes in values.values() for i in indexes]
            anomalies.append(_anomaly(
                "inconsistent-offset", ops, topic=position[0], partition=position[1],
                offset=position[2], values=sorted(values, key=str),
                detail=f"{len(values)} values at offset {position[2]}"))
    for v, positions in positions_of.items():
        if len(positions) > 1:
            ops = [i for p in positions for i in at_position[p][v]] + writes.get(v, {}).get("ops", [])
            anomalies.append(_anomaly(
                "duplicate", ops, value=v,
                positions=sorted([list(p) for p in positions], key=str),
                detail=f"value {v} at {len(positions)} offsets"))

    # Acknowledged writes nobody read.
    for v, write in writes.items():
        if write["status"] != "ok" or read_by.get(v):
            continue
        if write["ack"] is None:  # acknowledged without an offset (see above)
            (topic, partition), offset = write["where"], None
        else:
            topic, partition, offset = write["ack"]
        highest = max_read.get((topic, partition), -1)
        kind = "lost-write" if offset is not None and offset < highest else "unseen-write"
        anomalies.append(_anomaly(
            kind, write["ops"], topic=topic, partition=partition, offset=offset, value=v,
            detail=(f"acknowledged at offset {offset}" if offset is not None else
                    "acknowledged without an offset (librdkafka's implicit ack of an idempotent "
                    "producer's batch: README, seed 11)")
            + f"; highest offset read in the partition {highest}"))

    # Acknowledged writes read once, then gone from the final drain that read past their offset.
    for v, write in writes.items():
        if write["status"] != "ok" or not read_by.get(v) or v in final_values:
            continue
        where = write["ack"] or min(positions_of.get(v, ()), default=None)
        if where is None:
            continue
        topic, partition, offset = where
        drained = final_max.get((topic, partition), -1)
        end = drain_end.get((topic, partition))
        if drained >= offset:
            detail = f"the final drain read up to offset {drained} without it"
        elif end is not None and end <= offset:
            detail = f"the partition ends at offset {end} (high watermark at the final drain)"
        else:
            continue
        anomalies.append(_anomaly(
            "vanished-write", write["ops"] + read_by[v][:3], topic=topic, partition=partition, offset=offset,
            value=v, detail=f"acknowledged and read at offset {offset}; {detail}"))

    # Values nobody wrote; read_committed readers and transactions.
    for v, indexes in read_by.items():
        if v not in invoked_values:
            anomalies.append(_anomaly("unknown-value", indexes, value=v, detail=f"value {v!r} was never sent"))
    for v, poll in read_committed_reads:
        write = writes.get(v)
        txn = write and write["txn"]
        if not txn:
            continue
        if txn["aborted"]:
            anomalies.append(_anomaly(
                "aborted-read", [txn["index"], poll["index"]], value=v, topic=poll["value"]["topic"],
                process=poll["process"], detail=f"value {v} of an aborted transaction read by a read_committed reader"))
        elif txn["commit_time"] is None:
            anomalies.append(_anomaly(
                "precommitted-read", [txn["index"], poll["index"]], value=v, topic=poll["value"]["topic"],
                process=poll["process"], detail=f"value {v} read committed, but its transaction's commit was never requested"))
        elif poll["time"] < txn["commit_time"]:
            anomalies.append(_anomaly(
                "precommitted-read", [txn["index"], poll["index"]], value=v, topic=poll["value"]["topic"],
                process=poll["process"],
                detail=f"value {v} read committed at {poll['time']} ns, commit requested at {txn['commit_time']} ns"))

    # Consume-transform-produce: each source in at most one visible transaction.
    read_committed_values = {v for v, _poll in read_committed_reads}
    processed = defaultdict(list)
    for txn in txns:
        if txn["sources"] and (txn["committed"] or any(v in read_committed_values for v in txn["values"])):
            for v in txn["sources"]:
                processed[v].append(txn["index"])
    for v, indexes in processed.items():
        if len(indexes) > 1:
            anomalies.append(_anomaly("double-processed", indexes, value=v,
                                      detail=f"source value {v} in the output of {len(indexes)} visible transactions"))

    # Dependency cycles between transactions (sends are one-write transactions).
    process_of = {e["index"]: e["process"] for e in events if e["type"] != "invoke"}
    writer_of = {}
    for v, write in writes.items():
        txn = write["txn"]
        if txn is None:
            if write["status"] == "ok" or (write["status"] == "info" and read_by.get(v)):
                writer_of[v] = write["ops"][-1]
        elif txn["committed"] or (not txn["aborted"] and any(w in read_committed_values for w in txn["values"])):
            writer_of[v] = txn["index"]
    versions = defaultdict(list)
    for (topic, partition, offset), values in at_position.items():
        for v in values:
            versions[(topic, partition)].append((offset, v))
    reads = {txn["index"]: txn["sources"] for txn in txns
             if txn["sources"] and txn["values"] and writer_of.get(txn["values"][0]) == txn["index"]}
    g1c, ww_cycles = dependency_cycles.find(writer_of, versions, reads)

    def name(node):
        return f"op {node} ({process_of.get(node, '?')})"
    for steps in g1c:
        anomalies.append(_anomaly("g1c", [a for a, _b, _l in steps], length=len(steps),
                                  detail=dependency_cycles.describe(steps, name)))
    stats["ww_cycles"] = len(ww_cycles)
    cycles = [{"length": len(steps), "ops": sorted({a for a, _b, _l in steps}),
               "detail": dependency_cycles.describe(steps, name)} for steps in ww_cycles[:20]]

    # A producer session's acknowledged offsets follow its send order per partition.
    for key, sends in send_order.items():
        sends.sort()
        for (i0, o0, k0), (i1, o1, k1) in zip(sends, sends[1:]):
            if o1 <= o0:
                anomalies.append(_anomaly(
                    "nonmonotonic-send", [i0, k0, i1, k1], topic=key[2], partition=key[3], process=key[0],
                    detail=f"sent later, acknowledged at offset {o1} <= {o0}"))

    counts = {kind: 0 for kind in KINDS}
    for entry in anomalies:
        counts[entry["kind"]] += 1
    return {"anomalies": anomalies, "counts": counts, "stats": stats, "cycles": cycles}


def excerpt(events, result, limit=5, context=0):
    """Readable lines: for each anomaly (up to `limit` per kind), the anomaly and its operations."""
    by_index = {e["index"]: e for e in events}
    shown = defaultdict(int)
    lines = []
    for entry in result["anomalies"]:
        kind = entry["kind"]
        shown[kind] += 1
        if shown[kind] > limit:
            continue
        fields = {k: v for k, v in entry.items() if k not in ("kind", "ops")}
        lines.append(f"{kind}: {json.dumps(fields, default=str)}")
        for index in entry["ops"]:
            for i in range(index - context, index + context + 1):
                if i in by_index:
                    event = dict(by_index[i])
                    val = event.get("value")
                    if isinstance(val, dict) and len(val.get("records", [])) > 8:
                        val = dict(val, records=val["records"][:8] + [f"... {len(val['records']) - 8} more"])
                        event["value"] = val
                    lines.append("    " + json.dumps(event, separators=(",", ":"), default=str))
    for kind, n in shown.items():
        if n > limit:
            lines.append(f"{kind}: {n - limit} more not shown")
    return lines


def main(argv):
    from history import load  # noqa: local module when run as a script
    events = load(argv[1])
    result = check(events)
    print(json.dumps({"counts": result["counts"], "stats": result["stats"]}, indent=1))
    for line in excerpt(events, result):
        print(line)
    return 1 if result["anomalies"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
