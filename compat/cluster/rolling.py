#!/usr/bin/env python3
"""Rolling kill -9 of a three-node RF 3 cluster under load (issue 12's CI proof), black-box, the
same scenario against dlog or a three-node Apache Kafka 4.x (the reference):

  compat/cluster/rolling.sh dlog|kafka [OUT_DIR]        (this script: rolling.py KIND --out DIR)

1. Starts three combined broker+controller nodes with the chaos harness's cluster code
   (compat/chaos/cluster.py: dlog from DLOG_BIN, default target/release/dlog; Kafka 4.1.1 from
   KAFKA_LIB, default compat/kafka/lib), clients going through its (fault-free) proxy. Both
   kinds get the same lowered `broker.session.timeout.ms` / `broker.heartbeat.interval.ms`
   (FENCING below: 6 s, 1 s) so that a killed broker is fenced, and leaves the ISR, within seconds.
2. Creates three topics with `kafka-topics --create --replication-factor 3 --config
   min.insync.replicas=2`, PARTITIONS partitions each.
3. Runs, for the whole scenario: Kafka's VerifiableProducer (Java, idempotent, acks=all) on
   `rolling-java`; a librdkafka idempotent acks=all producer (confluent-kafka, the chaos
   QueueProducer) on `rolling-rdk`; a consumer group reading `rolling-rdk` and committing after
   each poll (chaos GroupReader, classic protocol); two transformers consuming `rolling-rdk` and
   producing to `rolling-ctp` in transactions that commit their offsets
   (send_offsets_to_transaction; chaos Transformer) and a read_committed reader of `rolling-ctp`.
4. Kills with `kill -9` nodes 1, 2, 3 in turn, then the active controller; each time waits
   until every partition's ISR dropped the node (Metadata), records `kafka-topics --describe`,
   restarts the node, waits until it is back in every ISR and records `kafka-topics --describe`
   again; the next kill starts only then.
5. Stops the producers, lets the group and the transformers finish the input, stops them, reads
   every topic from the beginning (read_uncommitted, and read_committed for the output) and
   checks: every record the Java producer had acknowledged read exactly once at its
   acknowledged offset, each partition in send order; the librdkafka history clean (the chaos
   checker: no lost, unseen or duplicated write, acknowledged offsets in send order); the
   group's committed offsets at the end offsets and its polls monotonic and gapless; every input
   record in the output of exactly one visible transaction, and the read_committed output
   exactly the writes of those transactions.

Prints one "RESULT <name> PASS|FAIL <detail>" line per check (names are the same for both
kinds, so compat/diff.sh compares them) and the run time; exits 1 if any FAIL. Leaves in OUT:
history.jsonl (librdkafka clients), java-producer.jsonl, describe.txt (the kafka-topics
outputs), check.json, cluster/node*.log.
"""

import argparse
import faulthandler
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "compat", "chaos"))

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

import checker  # noqa: E402
import cluster as clusters  # noqa: E402
import workloads  # noqa: E402
from history import History  # noqa: E402
from proxy import Proxy  # noqa: E402

PARTITIONS = 3
JAVA_TOPIC, RDK_TOPIC, CTP_TOPIC = "rolling-java", "rolling-rdk", "rolling-ctp"
TOPICS = [JAVA_TOPIC, RDK_TOPIC, CTP_TOPIC]
GROUP, CTP_GROUP = "rolling-group", "rolling-ctp"
# Fencing within ~6 s of a kill -9 instead of Kafka's default 9 s, on both kinds alike (4 s fenced live
# debug-build nodes stalled by a compile on this two-core machine).
FENCING = ["broker.session.timeout.ms=6000", "broker.heartbeat.interval.ms=1000"]
JAVA_RATE_PER_S = 150
SHRINK_TIMEOUT_S = 60
RECOVER_TIMEOUT_S = 120  # a Kafka broker restarting after kill -9 takes 10-30 s on this machine
DOWN_AFTER_SHRINK_S = 3  # load runs on the two remaining replicas (ISR = min.insync.replicas)
CATCH_UP_TIMEOUT_S = 90

failed = False


def log(message):
    print(f"[rolling {time.strftime('%H:%M:%S')}] {message}", flush=True)


def result(name, ok, detail):
    global failed
    failed = failed or not ok
    print(f"RESULT {name} {'PASS' if ok else 'FAIL'} {detail}"[:900], flush=True)


class Tools:
    """Kafka's own command-line tools (kafka-topics), run as `java -cp <jars> <class>`."""

    def __init__(self, out_dir):
        lib = os.environ.get("KAFKA_LIB") or os.path.join(ROOT, "compat", "kafka", "lib")
        with open(os.path.join(lib, "classpath.txt"), encoding="utf-8") as handle:
            self.classpath = handle.read().strip()
        self.log4j = os.path.join(ROOT, "benches", "load", "log4j2-client.xml")  # warnings, on stderr
        self.describe_log = os.path.join(out_dir, "describe.txt")

    def java(self, *args, heap="256m"):
        # C1 only and serial GC: the tools are short-lived and the machine has two shared cores.
        return ["java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.log4j}", "-cp", self.classpath, *args]

    def topics(self, bootstrap, *args, timeout_s=120):
        run = subprocess.run(self.java("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, *args),
                             capture_output=True, text=True, timeout=timeout_s)
        return run.returncode, run.stdout + run.stderr

    def describe(self, bootstrap, label):
        """`kafka-topics --describe` of the scenario's topics, appended to describe.txt; returns
        {(topic, partition): (leader, [isr])} parsed from the tool's output."""
        try:
            _rc, text = self.topics(bootstrap, "--describe", "--topic", "rolling-.*")
        except subprocess.TimeoutExpired:
            text = "(kafka-topics --describe timed out)"
        with open(self.describe_log, "a", encoding="utf-8") as handle:
            handle.write(f"=== {time.strftime('%H:%M:%S')} {label} (kafka-topics --bootstrap-server {bootstrap} "
                         f"--describe --topic 'rolling-.*')\n{text}\n")
        parsed = {}
        for line in text.splitlines():
            fields = dict(zip(line.split()[0::2], line.split()[1::2]))
            if "Topic:" in fields and "Partition:" in fields and "Isr:" in fields:
                isr = [int(x) for x in fields["Isr:"].split(",") if x.strip().lstrip("-").isdigit()]
                parsed[(fields["Topic:"], int(fields["Partition:"]))] = (int(fields.get("Leader:", "-1")), isr)
        return parsed


class JavaProducer:
    """Kafka's VerifiableProducer (idempotent, acks=all) at a fixed rate until stopped; its JSON
    lines (one per acknowledged or failed send) are kept in java-producer.jsonl and in memory."""

    def __init__(self, tools, bootstrap, out_dir, topic=JAVA_TOPIC):
        config = os.path.join(out_dir, "java-producer.properties")
        with open(config, "w", encoding="utf-8") as handle:
            # retries: the tool sets 0, which idempotence refuses; the file's values win.
            handle.write("enable.idempotence=true\nacks=all\nretries=2147483647\nlinger.ms=5\nrequest.timeout.ms=10000\n"
                         "delivery.timeout.ms=120000\nmetadata.max.age.ms=5000\nreconnect.backoff.max.ms=1000\n")
        self.path = os.path.join(out_dir, "java-producer.jsonl")
        self.acked = []  # (value, partition, offset) in acknowledgement order
        self.errors = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            tools.java("org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server", bootstrap,
                       "--topic", topic, "--max-messages", "-1", "--throughput", str(JAVA_RATE_PER_S),
                       "--acks", "-1", "--producer.config", config, heap="384m"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, name="java-producer", daemon=True)
        self.reader.start()

    def _read(self):
        with open(self.path, "w", encoding="utf-8") as out:
            for line in self.proc.stdout:
                out.write(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                with self.lock:
                    if event.get("name") == "producer_send_success":
                        self.acked.append((int(event["value"]), event["partition"], event["offset"]))
                    elif event.get("name") == "producer_send_error":
                        self.errors.append(event)

    def count(self):
        with self.lock:
            return len(self.acked)

    def stop(self):
        """SIGTERM: the tool's shutdown hook closes the producer, which waits for every send
        in flight to be acknowledged or to fail."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(150)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.errors.append({"name": "harness", "message": "VerifiableProducer did not stop within 150 s"})
        self.reader.join(10)


def isr_state(admin):
    """{(topic, partition): (leader, [isr])} of the scenario's topics from Metadata, or None."""
    try:
        metadata = admin.list_topics(timeout=5)
    except KafkaException:
        return None
    state = {}
    for name in TOPICS:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or len(topic.partitions) != PARTITIONS:
            return None
        for p, partition in topic.partitions.items():
            state[(name, p)] = (partition.leader, sorted(partition.isrs))
    return state


def wait_for(predicate, timeout_s, interval_s=0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return None


def shrunk_without(node):
    return lambda s: s is not None and all(leader not in (-1, node) and node not in isr and len(isr) >= 2
                                           for leader, isr in s.values())


def recovered():
    return lambda s: s is not None and all(leader >= 1 and len(isr) == 3 for leader, isr in s.values())


def committed_offsets(bootstrap, group, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in
                consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)}
    finally:
        consumer.close()


def end_offsets(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "rolling-unused", "enable.auto.commit": False})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def caught_up(bootstrap, group, topic):
    try:
        committed, ends = committed_offsets(bootstrap, group, topic), end_offsets(bootstrap, topic)
    except KafkaException:
        return None
    return (committed, ends) if all(committed.get(p) == ends[p] for p in ends) else None


def drain(bootstrap, topic, isolation, history):
    """Reads every partition from the beginning to its end offset; the polls go into `history`."""
    reached, ends, positions = workloads.final_drain(history, bootstrap, topic, PARTITIONS, isolation,
                                                     timeout_s=60, idle_s=10)
    records = []
    for event in history.events():
        if event["f"] == "poll" and event["type"] == "ok" and event["value"]["topic"] == topic and \
                event["value"]["isolation"] == isolation and event["process"].startswith("final-"):
            records += event["value"]["records"]
    return reached, ends, positions, records


def check_java(producer, records):
    """Every acknowledged value read exactly once, at its acknowledged offset; every partition's
    values in send order (the producer sends 0, 1, 2, ...: idempotence keeps each partition in
    that order across retries and leader changes)."""
    read_at = {}
    duplicates, disorder = [], []
    last = {}
    for partition, offset, value in sorted(records, key=lambda r: (r[0], r[1])):
        if value in read_at:
            duplicates.append(value)
        read_at[value] = (partition, offset)
        if partition in last and value <= last[partition]:
            disorder.append((partition, offset, value, last[partition]))
        last[partition] = value
    acked = producer.acked
    missing = [v for v, _p, _o in acked if v not in read_at]
    moved = [(v, p, o, read_at[v]) for v, p, o in acked if v in read_at and read_at[v] != (p, o)]
    ok = len(acked) > 0 and not missing and not moved and not duplicates and not disorder
    detail = (f"{len(acked)} acknowledged ({len(producer.errors)} send errors), {len(records)} read; "
              f"missing {len(missing)} {missing[:5]}, at another offset {len(moved)} {moved[:3]}, "
              f"duplicated {len(duplicates)} {duplicates[:5]}, out of order {len(disorder)} {disorder[:3]}")
    return ok, detail


def check_ctp(events, input_records, output_records):
    """Exactly once: each input record is a source of exactly one visible transaction (committed,
    or with its writes in the read_committed output), each visible transaction's writes are all
    in the output and nothing else is."""
    output = {}
    for partition, offset, value in output_records:
        output.setdefault(value, []).append((partition, offset))
    visible, partial = [], []
    for event in events:
        v = event["value"]
        if event["f"] != "txn" or event["type"] == "invoke" or not v.get("sources"):
            continue
        writes = [w[2] for w in v["writes"]]
        seen = [w for w in writes if w in output]
        committed = event["type"] == "ok" and v.get("outcome") == "commit"
        if committed or seen:
            visible.append((event["index"], v["sources"], writes))
            if len(seen) != len(writes):
                partial.append((event["index"], len(seen), len(writes)))
    processed = {}
    for index, sources, _writes in visible:
        for _p, _o, value in sources:
            processed.setdefault(value, []).append(index)
    inputs = [r[2] for r in input_records]
    unprocessed = [v for v in inputs if v not in processed]
    twice = {v: ix for v, ix in processed.items() if len(ix) > 1}
    expected = {w for _i, _s, writes in visible for w in writes}
    stray = [v for v in output if v not in expected]
    repeated = [v for v, at in output.items() if len(at) > 1]
    ok = len(inputs) > 0 and not unprocessed and not twice and not stray and not repeated and not partial
    detail = (f"{len(inputs)} input records, {len(visible)} visible transactions, {len(output_records)} output "
              f"records read_committed; unprocessed {len(unprocessed)} {unprocessed[:5]}, processed twice "
              f"{len(twice)} {list(twice.items())[:3]}, output not from a visible transaction {len(stray)} "
              f"{stray[:5]}, repeated in the output {len(repeated)}, partially visible transactions {partial[:3]}")
    return ok, detail


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["dlog", "kafka"])
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the nodes' data directories")
    args = parser.parse_args()
    out = os.path.abspath(args.out or os.path.join(ROOT, "target", "rolling", f"{args.kind}-{time.strftime('%H%M%S')}"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    started = time.monotonic()
    base_port = int(os.environ.get("ROLLING_BASE_PORT", "22000"))
    cluster = clusters.make(args.kind, 3, os.path.join(out, "cluster"), base_port, FENCING)
    proxy = Proxy(0)  # no delays: a pass-through the nodes advertise (cluster.py)
    for node in cluster.node_ids():
        proxy.listen(cluster.proxy_port(node), cluster.client_port(node))
    tools = Tools(out)
    history = History(os.path.join(out, "history.jsonl"))
    log(f"{args.kind}: results in {out}")
    java = None
    producers, consumers = [], []
    stop_producers, stop_consumers = threading.Event(), threading.Event()
    try:
        cluster.start()
        bootstrap = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 3})

        # Topics through kafka-topics, in parallel (a JVM each).
        def create(topic):
            deadline = time.monotonic() + 60
            while True:
                rc, text = tools.topics(cluster_bootstrap_one(cluster, 1), "--create", "--topic", topic,
                                        "--partitions", str(PARTITIONS), "--replication-factor", "3",
                                        "--config", "min.insync.replicas=2")
                if rc == 0 or "already exists" in text or time.monotonic() > deadline:
                    return rc == 0 or "already exists" in text, text
                time.sleep(1)  # e.g. a broker not yet registered: RF 3 needs all three
        creations = {}
        threads = [threading.Thread(target=lambda t=t: creations.__setitem__(t, create(t))) for t in TOPICS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        state = wait_for(lambda: (lambda s: s if recovered()(s) else None)(isr_state(admin)), 60)
        up_ok = all(ok for ok, _ in creations.values()) and state is not None
        result("rolling-cluster-up", up_ok,
               f"{args.kind} x3, {len(TOPICS)} topics x {PARTITIONS} partitions created by kafka-topics with "
               f"--replication-factor 3 --config min.insync.replicas=2, every ISR full after "
               f"{time.monotonic() - started:.0f} s" if up_ok else
               f"creations {[(t, ok, text[-200:]) for t, (ok, text) in creations.items()]} state {state}")
        if not up_ok:
            return 1
        tools.describe(bootstrap, "before the first kill")
        for topic, transactional in ((RDK_TOPIC, False), (CTP_TOPIC, True)):
            history.complete("harness", "ok", "topic", {"topic": topic, "transactional": transactional})

        rng = random.Random(12)

        def sub():
            return random.Random(rng.random())
        java = JavaProducer(tools, bootstrap, out)
        producers = [workloads.QueueProducer("producer-rdk", history, bootstrap, stop_producers, sub(), RDK_TOPIC,
                                             PARTITIONS)]
        group = workloads.GroupReader("group", history, bootstrap, stop_consumers, sub(), RDK_TOPIC, GROUP, "classic")
        consumers = [group,
                     workloads.Transformer("ctp-0", history, bootstrap, stop_consumers, sub(), RDK_TOPIC, CTP_TOPIC,
                                           PARTITIONS, CTP_GROUP, "rolling-ctp-0"),
                     workloads.Transformer("ctp-1", history, bootstrap, stop_consumers, sub(), RDK_TOPIC, CTP_TOPIC,
                                           PARTITIONS, CTP_GROUP, "rolling-ctp-1"),
                     workloads.AssignReader("ctp-reader", history, bootstrap, stop_consumers, sub(), CTP_TOPIC,
                                            PARTITIONS, "read_committed")]
        for client in producers + consumers:
            client.start()

        def progress():
            events = history.events()
            return {"java": java.count(),
                    "rdk": sum(1 for e in events if e["f"] == "send" and e["type"] == "ok"),
                    "group": group.commits_ok,
                    "ctp": sum(1 for e in events if e["f"] == "txn" and e["type"] == "ok"
                               and e["value"].get("outcome") == "commit")}

        # Warm-up: every client working before the first fault.
        warm = wait_for(lambda: all(v > 0 for v in progress().values()), 60)
        log(f"load running: {progress()}" + ("" if warm else " (not every client made progress within 60 s)"))

        steps = [("rolling-kill-broker-1", 1), ("rolling-kill-broker-2", 2), ("rolling-kill-broker-3", 3),
                 ("rolling-kill-controller", None)]
        for name, node in steps:
            before = progress()
            controller = cluster.active_controller()
            if node is None:
                node = controller
            if node is None:
                result(name, False, "no active controller found in the quorum-state files")
                continue
            others = [n for n in cluster.node_ids() if n != node]
            history.invoke("nemesis", "kill", {"node": node})
            cluster.kill(node)
            killed_at = time.monotonic()
            history.complete("nemesis", "ok", "kill", {"node": node})
            shrunk = wait_for(lambda: shrunk_without(node)(isr_state(admin)), SHRINK_TIMEOUT_S)
            shrink_s = time.monotonic() - killed_at
            at_shrink = tools.describe(cluster_bootstrap_one(cluster, others[0]),
                                       f"node {node} killed (kill -9){' — the active controller' if node == controller else ''}")
            new_controller = None
            if node == controller:
                new_controller = wait_for(lambda: (lambda c: c if c not in (None, node) else None)(
                    cluster.active_controller()), 30)
            time.sleep(DOWN_AFTER_SHRINK_S)
            during = progress()
            cluster.restart(node)
            history.complete("nemesis", "ok", "restart", {"node": node})
            back = wait_for(lambda: recovered()(isr_state(admin)), RECOVER_TIMEOUT_S)
            recover_s = time.monotonic() - killed_at
            at_recover = tools.describe(cluster_bootstrap_one(cluster, node), f"node {node} restarted")
            after = progress()
            tool_shrunk = bool(at_shrink) and all(node not in isr for _l, isr in at_shrink.values())
            tool_back = bool(at_recover) and all(sorted(isr) == [1, 2, 3] for _l, isr in at_recover.values())
            gained = {k: during[k] - before[k] for k in before}
            ok = bool(shrunk) and bool(back) and tool_shrunk and tool_back and gained["java"] > 0 and gained["rdk"] > 0 \
                and (node != controller or new_controller is not None)
            isr_seen = sorted({",".join(map(str, isr)) for _l, isr in at_shrink.values()})
            result(name, ok,
                   f"node {node}{' (active controller; node ' + str(new_controller) + ' took over)' if node == controller else ''}"
                   f" killed: ISR without it after {shrink_s:.1f} s (kafka-topics: {'shrunk' if tool_shrunk else 'NOT shrunk'}, "
                   f"ISRs {isr_seen}), every ISR full again {recover_s:.1f} s after the kill "
                   f"(kafka-topics: {'recovered' if tool_back else 'NOT recovered'}); progress from the kill to the "
                   f"restart: java +{gained['java']} acked, librdkafka +{gained['rdk']} acked, group +{gained['group']} "
                   f"commits, ctp +{gained['ctp']} transactions; to recovery: "
                   f"{ {k: after[k] - before[k] for k in before} }")
            if not back:
                break  # the next kill would take a second replica: min.insync.replicas cannot hold

        # End of load: producers first, then the group and the transformers finish the input.
        stop_producers.set()
        java.stop()
        for client in producers:
            client.join(60)
        caught = wait_for(lambda: caught_up(bootstrap, CTP_GROUP, RDK_TOPIC) and caught_up(bootstrap, GROUP, RDK_TOPIC),
                          CATCH_UP_TIMEOUT_S, interval_s=2)
        stop_consumers.set()
        for client in consumers:
            client.join(60)
        hung = [c.process for c in producers + consumers if c.is_alive()]
        if hung:
            faulthandler.dump_traceback(all_threads=True)  # where they hang, on stderr

        # Final reads and checks.
        scratch = History(None)  # the Java producer's values are not the librdkafka history's
        java_reached, java_ends, _pos, java_records = drain(bootstrap, JAVA_TOPIC, "read_uncommitted", scratch)
        ok, detail = check_java(java, java_records)
        result("rolling-java-producer-exactly-once", ok and java_reached, f"{detail}; drain reached the end: {java_reached}")

        rdk_reached, rdk_ends, _pos, rdk_records = drain(bootstrap, RDK_TOPIC, "read_uncommitted", history)
        ctp_reached, ctp_ends, _pos, ctp_records = drain(bootstrap, CTP_TOPIC, "read_committed", history)
        events = history.events()
        check = checker.check(events)
        with open(os.path.join(out, "check.json"), "w", encoding="utf-8") as handle:
            json.dump({"counts": check["counts"], "stats": check["stats"], "anomalies": check["anomalies"]}, handle,
                      indent=1, default=str)
        for line in checker.excerpt(events, check, limit=3):
            print("    " + line[:600], flush=True)

        def anomalies(kinds, topic):
            return [a for a in check["anomalies"] if a["kind"] in kinds and a.get("topic", topic) == topic]
        rdk_bad = anomalies({"lost-write", "unseen-write", "duplicate", "inconsistent-offset", "nonmonotonic-send",
                             "unknown-value"}, RDK_TOPIC)
        sends = [e for e in events if e["f"] == "send" and e["type"] != "invoke"]
        acked = sum(1 for e in sends if e["type"] == "ok")
        result("rolling-librdkafka-producer-exactly-once", acked > 0 and not rdk_bad and rdk_reached and
               "producer-rdk" not in hung,
               f"{acked} acknowledged ({sum(1 for e in sends if e['type'] == 'info')} indeterminate, "
               f"{sum(1 for e in sends if e['type'] == 'fail')} purged unsent), {len(rdk_records)} read once each in "
               f"acknowledged order; checker anomalies {len(rdk_bad)} {[a['kind'] for a in rdk_bad][:5]}; "
               f"drain reached the end: {rdk_reached}")

        group_bad = [a for a in check["anomalies"] if a["kind"] in ("nonmonotonic-poll", "skipped-poll")
                     and a.get("process") == "group"]
        try:
            committed = committed_offsets(bootstrap, GROUP, RDK_TOPIC)
        except KafkaException as exc:
            committed = {"error": str(exc)}
        sane = len(rdk_ends) == PARTITIONS and all(committed.get(p) == rdk_ends[p] for p in range(PARTITIONS))
        result("rolling-group-consumer", sane and not group_bad and "group" not in hung and group.commits_ok > 0,
               f"{group.commits_ok} synchronous commits, {group.crashes} client restarts; committed offsets "
               f"{committed} = end offsets {rdk_ends}: {sane}; polls non-monotonic or skipping: {len(group_bad)}")

        ctp_ok, ctp_detail = check_ctp(events, rdk_records, ctp_records)
        ctp_bad = [a for a in check["anomalies"] if a["kind"] in ("double-processed", "aborted-read",
                                                                  "precommitted-read")] + \
            anomalies({"lost-write", "unseen-write", "duplicate", "inconsistent-offset"}, CTP_TOPIC)
        try:
            ctp_committed = committed_offsets(bootstrap, CTP_GROUP, RDK_TOPIC)
        except KafkaException as exc:
            ctp_committed = {"error": str(exc)}
        result("rolling-ctp-exactly-once", ctp_ok and not ctp_bad and ctp_reached and not
               any(c.startswith("ctp") for c in hung) and len(rdk_ends) == PARTITIONS and
               all(ctp_committed.get(p) == rdk_ends[p] for p in range(PARTITIONS)),
               f"{ctp_detail}; group offsets {ctp_committed}; checker anomalies {len(ctp_bad)} "
               f"{[a['kind'] for a in ctp_bad][:5]}; caught up before stopping: {bool(caught)}; hung clients {hung}")
    except Exception as exc:  # noqa: BLE001 - reported as a failed scenario
        result("rolling-harness", False, f"{type(exc).__name__}: {exc}")
    finally:
        stop_producers.set()
        stop_consumers.set()
        if java is not None and java.proc.poll() is None:
            java.proc.kill()
        history.close()
        try:
            cluster.stop()
        except Exception as exc:  # noqa: BLE001
            log(f"stop: {exc}")
        proxy.close()
        if not args.keep:
            for node in cluster.node_ids():
                shutil.rmtree(os.path.join(out, "cluster", f"node{node}"), ignore_errors=True)
    log(f"{args.kind}: run time {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def cluster_bootstrap_one(cluster, node):
    """One node's advertised (proxy) address: kafka-topics through a node known to be up."""
    return f"127.0.0.1:{cluster.proxy_port(node)}"


if __name__ == "__main__":
    sys.exit(main())
