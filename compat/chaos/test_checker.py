"""The checker on small hand-made histories: each anomaly is found, and a clean history is clean.
    python3 -m pytest -q compat/chaos/test_checker.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from checker import check  # noqa: E402


class Builder:
    def __init__(self):
        self.events = []
        self.time = 0

    def add(self, process, type_, f, value):
        self.time += 10
        self.events.append({"index": len(self.events), "process": process, "type": type_,
                            "f": f, "value": value, "time": self.time})
        return len(self.events) - 1

    def topic(self, topic, transactional=False):
        self.add("harness", "ok", "topic", {"topic": topic, "transactional": transactional})

    def send(self, v, partition, offset, type_="ok", topic="q", process="p0", session=0):
        base = {"topic": topic, "partition": partition, "value": v, "session": session}
        self.add(process, "invoke", "send", base)
        done = dict(base)
        if type_ == "ok":
            done["offset"] = offset
        return self.add(process, type_, "send", done)

    def poll(self, records, topic="q", process="c0", session=0, isolation="read_uncommitted"):
        base = {"topic": topic, "isolation": isolation, "session": session}
        self.add(process, "invoke", "poll", base)
        return self.add(process, "ok", "poll", dict(base, records=[list(r) for r in records]))

    def txn(self, writes, outcome, type_="ok", commit_time=None, topic="t", process="tx0"):
        intent = "commit" if outcome == "commit" else "abort"
        self.add(process, "invoke", "txn", {"topic": topic, "intent": intent, "session": 0,
                                            "writes": [[p, v] for p, _o, v in writes]})
        return self.add(process, type_, "txn", {"topic": topic, "intent": intent, "session": 0,
                                                "writes": [list(w) for w in writes],
                                                "commit_time": commit_time, "outcome": outcome})


def kinds(result):
    return {k: n for k, n in result["counts"].items() if n}


def test_clean_queue_history():
    h = Builder()
    h.topic("q")
    h.send(1, 0, 0)
    h.send(2, 0, 1)
    h.send(3, 1, 0)
    h.send(4, 1, 1, type_="info")  # indeterminate and never read: fine
    h.poll([(0, 0, 1), (0, 1, 2)])
    h.poll([(1, 0, 3)])
    result = check(h.events)
    assert kinds(result) == {}
    assert result["stats"]["sends_ok"] == 3 and result["stats"]["records_read"] == 3


def test_lost_write_below_highest_read():
    h = Builder()
    h.topic("q")
    h.send(1, 0, 0)
    lost = h.send(2, 0, 1)
    h.send(3, 0, 2)
    h.poll([(0, 0, 1)], session=0)
    h.poll([(0, 2, 3)], session=1)  # another session: no skip, but 2 is below offset 2
    result = check(h.events)
    assert kinds(result) == {"lost-write": 1}
    anomaly = result["anomalies"][0]
    assert anomaly["value"] == 2 and anomaly["offset"] == 1 and lost in anomaly["ops"]


def test_unseen_write_at_the_tail():
    h = Builder()
    h.topic("q")
    h.send(1, 0, 0)
    h.send(2, 0, 1)
    h.poll([(0, 0, 1)])
    assert kinds(check(h.events)) == {"unseen-write": 1}


def test_duplicate_value_at_two_offsets():
    h = Builder()
    h.topic("q")
    h.send(1, 0, 0)
    h.poll([(0, 0, 1), (0, 1, 1)])
    result = check(h.events)
    assert kinds(result) == {"duplicate": 1}
    assert result["anomalies"][0]["positions"] == [["q", 0, 0], ["q", 0, 1]]


def test_inconsistent_offset_between_ack_and_read():
    h = Builder()
    h.topic("q")
    h.send(1, 0, 0)
    h.send(2, 0, 1)
    h.poll([(0, 0, 1), (0, 1, 3)], process="c0")
    h.send(3, 0, 2, type_="info")
    result = check(h.events)
    # offset 1 holds 2 (ack) and 3 (read); 2 is never read (lost? no: nothing above offset 1 read);
    # 3 sits at offset 1 while ... only one position, so no duplicate.
    assert result["counts"]["inconsistent-offset"] == 1
    assert result["counts"]["duplicate"] == 0
    assert result["counts"]["unseen-write"] == 1


def test_nonmonotonic_poll_in_one_session_only():
    h = Builder()
    h.topic("q")
    h.send(1, 0, 0)
    h.send(2, 0, 1)
    h.poll([(0, 0, 1), (0, 1, 2)], session=0)
    h.poll([(0, 0, 1)], session=0)  # back to 0 in the same session
    h.poll([(0, 0, 1)], session=1)  # a new session may start again
    result = check(h.events)
    assert kinds(result) == {"nonmonotonic-poll": 1}


def test_skipped_poll_only_on_non_transactional_topics():
    h = Builder()
    h.topic("q")
    h.topic("t", transactional=True)
    h.send(1, 0, 0)
    h.send(2, 0, 1)
    h.send(3, 0, 2)
    h.poll([(0, 0, 1), (0, 2, 3)])
    h.poll([(0, 1, 2)], session=1)
    h.txn([(0, 0, 10)], "commit", commit_time=0)
    h.txn([(0, 2, 11)], "commit", commit_time=0)
    h.poll([(0, 0, 10), (0, 2, 11)], topic="t")  # offset 1 is the commit marker: no anomaly
    assert kinds(check(h.events)) == {"skipped-poll": 1}


def test_nonmonotonic_send():
    h = Builder()
    h.topic("q")
    h.send(1, 0, 5)
    h.send(2, 0, 4)
    h.poll([(0, 4, 2), (0, 5, 1)])
    assert kinds(check(h.events)) == {"nonmonotonic-send": 1}


def test_aborted_read_and_read_uncommitted_may_see_aborted():
    h = Builder()
    h.topic("t", transactional=True)
    h.txn([(0, 0, 10), (1, 0, 11)], "abort")
    h.txn([(0, 2, 12)], None, type_="fail")
    h.poll([(0, 0, 10), (0, 2, 12)], topic="t", isolation="read_uncommitted", process="ru")
    h.poll([(1, 0, 11)], topic="t", isolation="read_committed", process="rc")
    result = check(h.events)
    assert kinds(result) == {"aborted-read": 1}
    assert result["anomalies"][0]["value"] == 11


def test_precommitted_read():
    h = Builder()
    h.topic("t", transactional=True)
    h.poll([(0, 0, 10)], topic="t", isolation="read_committed", process="rc")  # time 40
    h.txn([(0, 0, 10)], "commit", commit_time=1000)
    h.txn([(0, 2, 20)], None, type_="info")  # commit never requested
    h.poll([(0, 2, 20)], topic="t", isolation="read_committed", process="rc", session=1)
    result = check(h.events)
    assert kinds(result) == {"precommitted-read": 2}


def test_committed_txn_write_lost_and_unknown_value():
    h = Builder()
    h.topic("t", transactional=True)
    h.txn([(0, 0, 10), (0, 1, 11)], "commit", commit_time=0)
    h.txn([(0, 3, 12)], "commit", commit_time=0)
    h.poll([(0, 0, 10), (0, 3, 12), (0, 4, 99)], topic="t", isolation="read_committed")
    result = check(h.events)
    assert kinds(result) == {"lost-write": 1, "unknown-value": 1}


def test_double_processed_consume_transform_produce():
    h = Builder()
    h.topic("q")
    h.topic("out", transactional=True)
    h.send(1, 0, 0)
    h.send(2, 0, 1)

    def ctp(writes, sources, outcome, type_="ok"):
        h.add("ctp", "invoke", "txn", {"topic": "out", "intent": "commit", "writes": [[p, v] for p, _o, v in writes],
                                       "sources": sources, "source_topic": "q"})
        h.add("ctp", type_, "txn", {"topic": "out", "intent": "commit", "writes": [list(w) for w in writes],
                                    "sources": sources, "source_topic": "q", "commit_time": 0, "outcome": outcome})

    ctp([(0, 0, 10)], [[0, 0, 1]], "commit")
    ctp([(0, 2, 11)], [[0, 0, 1], [0, 1, 2]], None, type_="info")  # indeterminate, but read below
    ctp([(0, 4, 12)], [[0, 1, 2]], None, type_="fail")  # aborted: not visible
    h.poll([(0, 0, 10), (0, 2, 11)], topic="out", isolation="read_committed")
    result = check(h.events)
    # 1 is in two visible transactions; 2 in one visible (the other aborted); the sources count as reads.
    assert kinds(result) == {"double-processed": 1}
    assert result["anomalies"][0]["value"] == 1


def test_acknowledged_without_offset_is_neither_a_duplicate_nor_out_of_order():
    # librdkafka acknowledges a retried batch the broker already had without an offset.
    b = Builder()
    b.topic("q")
    b.send(1, 0, 0)
    b.send(2, 0, None)
    b.send(3, 0, 2)
    b.poll([(0, 0, 1), (0, 1, 2), (0, 2, 3)])
    assert kinds(check(b.events)) == {}
    # Never read: unseen, with its offset unknown.
    b.send(4, 0, None)
    assert kinds(check(b.events)) == {"unseen-write": 1}


def test_vanished_write_read_then_missing_from_the_final_drain():
    # Acknowledged at offset 1 and read; after a power loss of every replica the log lost it and
    # offset 1 went to a new value: the final drain reads past offset 1 without it.
    b = Builder()
    b.topic("q")
    b.send(1, 0, 0)
    b.send(2, 0, 1)
    b.poll([(0, 0, 1), (0, 1, 2)])
    b.send(3, 0, 1, process="p1")
    b.poll([(0, 0, 1), (0, 1, 3)], process="final-q-read_uncommitted", session="final.0")
    result = check(b.events)
    assert kinds(result) == {"vanished-write": 1, "inconsistent-offset": 1}
    vanished = [a for a in result["anomalies"] if a["kind"] == "vanished-write"][0]
    assert vanished["value"] == 2 and vanished["offset"] == 1


def test_no_vanished_write_when_the_drain_stops_before_its_offset_or_saw_it():
    b = Builder()
    b.topic("q")
    b.send(1, 0, 0)
    b.send(2, 0, 1)
    b.poll([(0, 0, 1), (0, 1, 2)])
    b.poll([(0, 0, 1)], process="final-q-read_uncommitted", session="final.0")
    assert kinds(check(b.events)) == {}
    b.poll([(0, 1, 2)], process="final-q-read_uncommitted", session="final.0")
    assert kinds(check(b.events)) == {}


def test_vanished_write_when_the_partition_ends_below_it():
    b = Builder()
    b.topic("q")
    b.send(1, 0, 0)
    b.send(2, 0, 1)
    b.poll([(0, 0, 1), (0, 1, 2)])
    # After the loss the partition holds offset 0 only; a read_committed end below is ignored.
    b.add("final-q-read_committed", "ok", "drain-end", {"topic": "q", "isolation": "read_committed",
                                                        "end_offsets": {"0": 0}})
    b.add("final-q-read_uncommitted", "ok", "drain-end", {"topic": "q", "isolation": "read_uncommitted",
                                                          "end_offsets": {"0": 1}})
    b.poll([(0, 0, 1)], process="final-q-read_uncommitted", session="final.0")
    result = check(b.events)
    assert kinds(result) == {"vanished-write": 1}
    assert "ends at offset 1" in result["anomalies"][0]["detail"]


def test_new_fault_kinds_are_counted():
    b = Builder()
    for f in ("partition-node", "partition-bridge", "disk-full", "power-loss-all"):
        b.add("nemesis", "invoke", f, {})
    b.add("nemesis", "invoke", "heal-partition", {})
    assert check(b.events)["stats"]["faults"] == 4


def ctp(h, writes, sources, topic="out", source_topic="in", process="ctp", type_="ok", outcome="commit"):
    """A consume-transform-produce transaction: read `sources` [partition, offset, value], wrote `writes`."""
    base = {"topic": topic, "intent": "commit", "writes": [[p, v] for p, _o, v in writes],
            "sources": [list(s) for s in sources], "source_topic": source_topic}
    h.add(process, "invoke", "txn", base)
    return h.add(process, type_, "txn", dict(base, writes=[list(w) for w in writes], commit_time=0, outcome=outcome))


def test_g1c_cycle_of_write_read_dependencies():
    # T1 read 20 (T2's) and wrote 10; T2 read 10 (T1's) and wrote 20: circular information flow.
    h = Builder()
    h.topic("a", transactional=True)
    h.topic("b", transactional=True)
    t1 = ctp(h, [(0, 0, 10)], [[0, 0, 20]], topic="a", source_topic="b", process="ctp-1")
    t2 = ctp(h, [(0, 0, 20)], [[0, 0, 10]], topic="b", source_topic="a", process="ctp-2")
    result = check(h.events)
    assert kinds(result) == {"g1c": 1}
    anomaly = result["anomalies"][0]
    assert anomaly["ops"] == sorted([t1, t2]) and anomaly["length"] == 2
    assert f"op {t1} (ctp-1) wrote 10, which op {t2} (ctp-2) read" in anomaly["detail"]
    assert f"op {t2} (ctp-2) wrote 20, which op {t1} (ctp-1) read" in anomaly["detail"]


def test_g1c_three_transactions_and_the_shortest_cycle():
    # 1 -> 2 -> 3 -> 1 by wr, and 1 -> 3 (3 also read 11, 1's other write): 1 -> 3 -> 1 is the
    # shortest cycle of the component, two transactions instead of three.
    h = Builder()
    h.topic("a", transactional=True)
    t1 = ctp(h, [(0, 0, 10), (3, 0, 11)], [[1, 0, 30]], topic="a", source_topic="a")
    t2 = ctp(h, [(2, 0, 20)], [[0, 0, 10]], topic="a", source_topic="a")
    t3 = ctp(h, [(1, 0, 30)], [[2, 0, 20], [3, 0, 11]], topic="a", source_topic="a")
    result = check(h.events)
    assert kinds(result) == {"g1c": 1}
    assert result["anomalies"][0]["ops"] == sorted([t1, t3]) and result["anomalies"][0]["length"] == 2
    assert t2 not in result["anomalies"][0]["ops"]


def test_g1c_near_cycles_are_not_reported():
    h = Builder()
    h.topic("a", transactional=True)
    # A chain 1 -> 2 -> 3 (each read the previous one's write), no way back.
    ctp(h, [(0, 0, 10)], [], topic="a", source_topic="a")
    ctp(h, [(0, 1, 20)], [[0, 0, 10]], topic="a", source_topic="a")
    ctp(h, [(0, 2, 30)], [[0, 1, 20]], topic="a", source_topic="a")
    # The way back through an aborted transaction, and through a transaction that read its own write.
    ctp(h, [(1, 0, 40)], [[0, 2, 30]], topic="a", source_topic="a", type_="fail", outcome="abort")
    ctp(h, [(1, 1, 50)], [[1, 1, 50], [1, 0, 40]], topic="a", source_topic="a")
    h.poll([(0, 0, 10), (0, 1, 20), (0, 2, 30), (1, 1, 50)], topic="a", isolation="read_committed")
    result = check(h.events)
    assert result["counts"]["g1c"] == 0 and result["stats"]["ww_cycles"] == 0


def test_write_cycles_from_offsets_are_counted_not_anomalies():
    # G0: T1 before T2 in partition 0, T2 before T1 in partition 1 (two transactions interleaving
    # their writes, which Kafka allows).
    h = Builder()
    h.topic("t", transactional=True)
    t1 = h.txn([(0, 0, 10), (1, 1, 11)], "commit", commit_time=0, process="tx0")
    t2 = h.txn([(0, 1, 20), (1, 0, 21)], "commit", commit_time=0, process="tx1")
    h.poll([(0, 0, 10), (0, 1, 20), (1, 0, 21), (1, 1, 11)], topic="t", isolation="read_committed")
    result = check(h.events)
    assert kinds(result) == {}
    assert result["stats"]["ww_cycles"] == 1
    cycle = result["cycles"][0]
    assert cycle["ops"] == sorted([t1, t2])
    assert "wrote 10 at t/0 offset 0, before" in cycle["detail"] and "(ww)" in cycle["detail"]


def soak_sized(transactions):
    """A history the size of a long soak run: queue sends and reads, and a chain of
    consume-transform-produce transactions each reading the previous one's output (a long path,
    no cycle), with transactions interleaving in two partitions of the output."""
    h = Builder()
    h.topic("q")
    h.topic("out", transactional=True)
    offsets = [0, 0]
    previous = None
    for i in range(transactions):
        h.send(i, i % 6, i // 6)
        partition = i % 2
        written = 1_000_000 + i
        sources = [[i % 6, i // 6, i]] + ([previous] if previous else [])
        ctp(h, [(partition, offsets[partition], written)], sources, source_topic="out")
        previous = [partition, offsets[partition], written]
        offsets[partition] += 1
    return h


def test_cycle_search_is_linear_ish_on_a_soak_sized_history():
    import time
    timings = []
    for n in (1_000, 4_000):
        h = soak_sized(n)
        best = None
        for _ in range(2):  # the best of two: a loaded machine's pauses are not the checker's
            started = time.perf_counter()
            result = check(h.events)
            elapsed = time.perf_counter() - started
            best = elapsed if best is None else min(best, elapsed)
        timings.append(best)
        assert result["counts"]["g1c"] == 0 and result["stats"]["ww_cycles"] == 0
    # Four times the history: well under sixteen times the time (quadratic), with slack for noise.
    assert timings[1] < 8 * timings[0] + 1.0, timings
    # A ring closing the chain: one g1c cycle of 4 000 transactions (no recursion limit).
    h = soak_sized(4_000)
    h.events[5]["value"]["sources"].append([1, 1_999, 1_000_000 + 3_999])  # the first txn read the last
    result = check(h.events)
    assert result["counts"]["g1c"] == 1
    assert result["anomalies"][-1]["length"] == 4_000
