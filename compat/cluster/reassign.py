#!/usr/bin/env python3
"""Moving partitions and leaders with Kafka's own tools under a running producer (issue 15),
black-box, the same scenario against dlog or a three-node Apache Kafka 4.x (the reference):

  compat/cluster/reassign.sh dlog|kafka [OUT_DIR]       (this script: reassign.py KIND --out DIR)

1. Starts three combined broker+controller nodes (compat/chaos/cluster.py, as rolling.py does:
   dlog from DLOG_BIN, Kafka 4.1.1 from KAFKA_LIB), clients through its pass-through proxy,
   ports from REASSIGN_BASE_PORT (default 23000, below the ephemeral port range: node i listens on base+10i, controller +1,
   proxy +3). A long broker session (30 s) keeps a paused broker registered (step 5).
2. `kafka-topics --create --replica-assignment 1:2,1:2,2:1`: three partitions, RF 2, on
   brokers 1 and 2; Kafka's VerifiableProducer (idempotent, acks=all) writes to it throughout.
3. `kafka-reassign-partitions --generate` (brokers 2,3) must propose a plan; then `--execute`
   of partition 0 → [2,3], 1 → [3,1], 2 → [2,3] and `--verify` until every reassignment is
   complete. Metadata must show the target replicas with full ISRs, and the brokers that lost
   a replica must have deleted its directory (Kafka renames it `*-delete` at once).
4. `kafka-leader-election --election-type preferred --all-topic-partitions`: partition 1 was
   led by 1 and its preferred replica is 3; afterwards every partition is led by its first
   replica.
5. Cancellation: a broker that is not the active controller paused (SIGSTOP), a partition
   reassigned to add it (it cannot catch up), `--verify` says it is in progress, `--cancel
   --preserve-throttles` reverts it; the broker resumed, every ISR full again.
6. Replication throttles (KIP-73): `--execute --throttle N` of partition 0 → [3,1] must set
   `leader/follower.replication.throttled.rate=N` on every broker of the move and the topic's
   `leader.replication.throttled.replicas` (its current replicas) and
   `follower.replication.throttled.replicas` (the one added), as `kafka-configs --describe`
   shows them; `--verify` until complete must then remove all of them.
7. Stops the producer, reads the topic from the beginning: every acknowledged record read
   exactly once at its acknowledged offset, in send order per partition (rolling.py's check).

Prints one "RESULT <name> PASS|FAIL <detail>" line per check and the run time; exits 1 on any
FAIL. Leaves in OUT: tools.txt (every tool run and its output), java-producer.jsonl,
cluster/node*.log.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "compat", "chaos"))
sys.path.insert(0, HERE)

from confluent_kafka import Consumer, KafkaException, TopicPartition, OFFSET_BEGINNING  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

import cluster as clusters  # noqa: E402
from proxy import Proxy  # noqa: E402
from rolling import JavaProducer, Tools, check_java, wait_for  # noqa: E402

TOPIC = "reassign"
PARTITIONS = 3
SESSION = ["broker.session.timeout.ms=30000", "broker.heartbeat.interval.ms=1000"]
TARGETS = {0: [2, 3], 1: [3, 1], 2: [2, 3]}
THROTTLED_TARGETS = {0: [3, 1]}
# Current replicas [2,3] → leader throttles 0:2,0:3; added replica 1 → follower throttle 0:1.
THROTTLED_REPLICAS = {"leader.replication.throttled.replicas": "0:2,0:3",
                      "follower.replication.throttled.replicas": "0:1"}
THROTTLE_BYTES_PER_S = 1000000
TOOL_TIMEOUT_S = 120
REASSIGN_TIMEOUT_S = 120
failed = False


def log(message):
    print(f"[reassign {time.strftime('%H:%M:%S')}] {message}", flush=True)


def result(name, ok, detail):
    global failed
    failed = failed or not ok
    print(f"RESULT {name} {'PASS' if ok else 'FAIL'} {detail}"[:900], flush=True)


class Cli:
    """kafka-reassign-partitions and kafka-leader-election (and kafka-topics), each run logged."""

    def __init__(self, tools, bootstrap, out):
        self.tools, self.bootstrap, self.out = tools, bootstrap, out
        self.transcript = os.path.join(out, "tools.txt")

    def run(self, cls, *args):
        argv = self.tools.java(cls, "--bootstrap-server", self.bootstrap, *args)
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
            rc, text = run.returncode, run.stdout + run.stderr
        except subprocess.TimeoutExpired:
            rc, text = -1, "(timed out)"
        with open(self.transcript, "a", encoding="utf-8") as handle:
            handle.write(f"=== {time.strftime('%H:%M:%S')} {cls.rsplit('.', 1)[-1]} {' '.join(args)} (rc {rc})\n"
                         f"{text}\n")
        return rc, text

    def reassign(self, *args):
        return self.run("org.apache.kafka.tools.reassign.ReassignPartitionsCommand", *args)

    def configs(self, *args):
        return self.run("kafka.admin.ConfigCommand", *args)

    def elect(self, *args):
        return self.run("org.apache.kafka.tools.LeaderElectionCommand", *args)

    def plan(self, name, targets):
        path = os.path.join(self.out, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "partitions": [{"topic": TOPIC, "partition": p, "replicas": r}
                                                    for p, r in sorted(targets.items())]}, handle)
        return path


def state(admin):
    """{partition: (leader, replicas, sorted isr)} from Metadata, or None."""
    try:
        topic = admin.list_topics(topic=TOPIC, timeout=5).topics.get(TOPIC)
    except KafkaException:
        return None
    if topic is None or topic.error is not None or len(topic.partitions) != PARTITIONS:
        return None
    return {p: (m.leader, list(m.replicas), sorted(m.isrs)) for p, m in topic.partitions.items()}


def settled(expected):
    """The replicas are `expected` ({partition: replicas}), every replica in sync, a leader."""
    return lambda s: s is not None and all(s[p][1] == r and s[p][2] == sorted(r) and s[p][0] in r
                                           for p, r in expected.items())


def summary(s):
    return ", ".join(f"p{p} leader {l} replicas {r} isr {i}" for p, (l, r, i) in sorted((s or {}).items()))


def drain(bootstrap):
    """Every record of the topic, [(partition, offset, value)], read to the end offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reassign-unused",
                         "enable.auto.commit": False, "log_level": 3})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
                for p in range(PARTITIONS)}
        consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        records, reached = [], {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 90
        while len(reached) < PARTITIONS and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is not None:
                    continue
                records.append((message.partition(), message.offset(), int(message.value())))
                if message.offset() + 1 >= ends[message.partition()]:
                    reached.add(message.partition())
        return len(reached) == PARTITIONS, ends, records
    finally:
        consumer.close()


def partition_dirs(cluster, node):
    """Names of this topic's partition directories on `node` (exact names: not `*-delete`)."""
    try:
        names = os.listdir(cluster.data_dir(node))
    except OSError:
        return set()
    return {n for n in names if n.rsplit("-", 1)[0] == TOPIC and n.rsplit("-", 1)[-1].isdigit()}


def scenario(kind, cluster, out):
    bootstrap = cluster.bootstrap()
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 3})
    tools = Tools(out)
    cli = Cli(tools, bootstrap.split(",")[1], out)

    # 2. The topic on brokers 1 and 2, and the producer.
    deadline = time.monotonic() + 60
    while True:
        rc, text = cli.run("org.apache.kafka.tools.TopicCommand", "--create", "--topic", TOPIC,
                           "--replica-assignment", "1:2,1:2,2:1")
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)  # a broker not registered yet
    before = {0: [1, 2], 1: [1, 2], 2: [2, 1]}
    s = wait_for(lambda: (lambda s: s if settled(before)(s) else None)(state(admin)), 60)
    result("reassign-topic-created", s is not None, summary(s) if s else f"rc {rc}: {text[-300:]}")
    if s is None:
        return
    java = JavaProducer(tools, bootstrap, out, topic=TOPIC)
    try:
        if not wait_for(lambda: java.count() >= 200, 60):
            result("reassign-producer-running", False, f"{java.count()} acknowledged after 60 s")
            return
        moved(cli, cluster, admin)
        preferred(cli, admin)
        cancelled(cli, cluster, admin)
        throttled(cli, admin)
        time.sleep(2)
    finally:
        java.stop()
    reached, ends, records = drain(bootstrap)
    ok, detail = check_java(java, records)
    result("reassign-no-acknowledged-record-lost", ok and reached, f"ends {ends} reached {reached}; {detail}")


def moved(cli, cluster, admin):
    # 3. --generate, --execute, --verify until done.
    topics = os.path.join(cli.out, "topics-to-move.json")
    with open(topics, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "topics": [{"topic": TOPIC}]}, handle)
    rc, text = cli.reassign("--topics-to-move-json-file", topics, "--broker-list", "2,3", "--generate")
    proposed = [line for line in text.splitlines() if line.startswith("{") and '"partitions"' in line]
    ok = rc == 0 and "Proposed partition reassignment configuration" in text and len(proposed) == 2
    if ok:
        plan = json.loads(proposed[1])["partitions"]
        ok = len(plan) == PARTITIONS and all(set(p["replicas"]) <= {2, 3} for p in plan)
    result("reassign-generate", ok, f"rc {rc}: proposed {proposed[-1] if proposed else text[-300:]}")

    plan = cli.plan("move.json", TARGETS)
    rc, text = cli.reassign("--reassignment-json-file", plan, "--execute")
    ok = rc == 0 and "Successfully started partition reassignment" in text
    result("reassign-execute", ok, f"rc {rc}: {' '.join(text.split())[-300:]}")
    started = time.monotonic()
    done = None
    while time.monotonic() - started < REASSIGN_TIMEOUT_S:
        rc, text = cli.reassign("--reassignment-json-file", plan, "--verify")
        if rc == 0 and text.count("is completed") == PARTITIONS:
            done = text
            break
        time.sleep(1)
    lines = [line for line in (done or text).splitlines() if "Reassignment of partition" in line]
    result("reassign-verify-complete", done is not None,
           f"after {time.monotonic() - started:.0f} s: {' | '.join(lines)}" if done else f"rc {rc}: {text[-400:]}")
    s = wait_for(lambda: (lambda s: s if settled(TARGETS)(s) else None)(state(admin)), 60)
    result("reassign-metadata-replicas", s is not None, summary(s or state(admin)))
    # Broker 1 lost partitions 0 and 2, broker 2 partition 1.
    gone = {1: {f"{TOPIC}-0", f"{TOPIC}-2"}, 2: {f"{TOPIC}-1"}}
    left = wait_for(lambda: all(not (partition_dirs(cluster, n) & names) for n, names in gone.items()), 90)
    result("reassign-removed-replicas-deleted", bool(left),
           "; ".join(f"node {n}: {sorted(partition_dirs(cluster, n))}" for n in cluster.node_ids()))


def preferred(cli, admin):
    # 4. A preferred election puts every leader back on its first replica.
    s = state(admin)
    off = sorted(p for p, (leader, replicas, _) in (s or {}).items() if leader != replicas[0])
    rc, text = cli.elect("--election-type", "preferred", "--all-topic-partitions")
    after = wait_for(lambda: (lambda s: s if s and all(l == r[0] for l, r, _ in s.values()) else None)(state(admin)), 30)
    names = [f"{TOPIC}-{p}" for p in off]
    said = rc == 0 and all(n in text for n in names) and ("Successfully completed leader election" in text or not off)
    result("reassign-preferred-election", said and after is not None,
           f"led off their first replica before: {names}; tool rc {rc}: {' '.join(text.split())[-300:]}; "
           f"after: {summary(after or state(admin))}")


def cancelled(cli, cluster, admin):
    # 5. A reassignment that cannot complete (its new broker paused), cancelled. The paused
    # broker is not the active controller, whose pause would stall the metadata quorum too.
    controller = cluster.active_controller()
    node = next(n for n in (1, 2, 3) if n != controller)
    partition = next(p for p, r in TARGETS.items() if node not in r)
    stuck = TARGETS[partition] + [node]
    # The tools go through a running broker (dlog names itself the controller in Metadata,
    # where the admin client sends reassignment requests).
    usual, cli.bootstrap = cli.bootstrap, f"127.0.0.1:{cluster.proxy_port(controller)}"
    cluster.pause(node)
    try:
        plan = cli.plan("stuck.json", {partition: stuck})
        rc, text = cli.reassign("--reassignment-json-file", plan, "--execute")
        executed = rc == 0 and "Successfully started partition reassignment" in text
        rc, verify = cli.reassign("--reassignment-json-file", plan, "--verify")
        in_progress = "is still in progress" in verify
        # --preserve-throttles: clearing them would alter the paused broker's configs, which the
        # admin client sends to that broker.
        rc, cancel = cli.reassign("--reassignment-json-file", plan, "--cancel", "--preserve-throttles")
        cancelled_ok = rc == 0 and "Successfully cancelled partition reassignment" in cancel
        s = wait_for(lambda: (lambda s: s if s and s[partition][1] == TARGETS[partition] else None)(state(admin)), 30)
    finally:
        cluster.resume(node)
        cli.bootstrap = usual
    result("reassign-cancel", executed and in_progress and cancelled_ok and s is not None,
           f"broker {node} paused (controller {controller}), partition {partition} -> {stuck}: execute {executed}, "
           f"verify in progress {in_progress} ({' '.join(verify.split())[-160:]}), "
           f"cancel {' '.join(cancel.split())[-200:]}; after: {summary(s or state(admin))}")
    back = wait_for(lambda: (lambda s: s if settled(TARGETS)(s) else None)(state(admin)), 90)
    result("reassign-cluster-recovered", back is not None, summary(back or state(admin)))


def throttles(cli):
    """The throttle configs `kafka-configs --describe` lists: {entity: {name: value}}."""
    found = {}
    for entity_type, name in [("brokers", "1"), ("brokers", "2"), ("brokers", "3"), ("topics", TOPIC)]:
        rc, text = cli.configs("--entity-type", entity_type, "--entity-name", name, "--describe")
        found[name] = {key: value for key, value in
                       (line.split()[0].split("=", 1) for line in text.splitlines()
                        if "throttled" in line and "=" in line.split()[0])}
    return found


def throttled(cli, admin):
    # 6. --execute --throttle sets the rates and throttled replicas; --verify removes them.
    plan = cli.plan("throttled.json", THROTTLED_TARGETS)
    rc, text = cli.reassign("--reassignment-json-file", plan, "--execute", "--throttle", str(THROTTLE_BYTES_PER_S))
    executed = (rc == 0 and "Successfully started partition reassignment" in text
                and f"The inter-broker throttle limit was set to {THROTTLE_BYTES_PER_S} B/s" in text)
    rates = {"leader.replication.throttled.rate": str(THROTTLE_BYTES_PER_S),
             "follower.replication.throttled.rate": str(THROTTLE_BYTES_PER_S)}
    expected = {"1": rates, "2": rates, "3": rates, TOPIC: THROTTLED_REPLICAS}
    during = throttles(cli)
    result("reassign-throttle-set", executed and during == expected,
           f"execute rc {rc}: {' '.join(text.split())[-200:]}; configs {during}")
    started = time.monotonic()
    done = None
    while time.monotonic() - started < REASSIGN_TIMEOUT_S:
        rc, text = cli.reassign("--reassignment-json-file", plan, "--verify")
        if rc == 0 and "is completed" in text and "still in progress" not in text:
            done = text
            break
        time.sleep(1)
    after = throttles(cli)
    cleared = not any(after.values())
    expected_state = {**TARGETS, **THROTTLED_TARGETS}
    s = wait_for(lambda: (lambda s: s if settled(expected_state)(s) else None)(state(admin)), 60)
    result("reassign-throttle-verify-clears", done is not None and cleared and s is not None,
           f"after {time.monotonic() - started:.0f} s: {' '.join((done or text).split())[-300:]}; "
           f"configs after {after}; {summary(s or state(admin))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["dlog", "kafka"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = os.path.abspath(args.out or os.path.join(ROOT, "target", "reassign", f"{args.kind}-{time.strftime('%H%M%S')}"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    started = time.monotonic()
    base_port = int(os.environ.get("REASSIGN_BASE_PORT", "23000"))
    cluster = clusters.make(args.kind, 3, os.path.join(out, "cluster"), base_port, SESSION)
    proxy = Proxy(0)
    for node in cluster.node_ids():
        proxy.listen(cluster.proxy_port(node), cluster.client_port(node))
    log(f"{args.kind}: results in {out}")
    try:
        cluster.start()
        scenario(args.kind, cluster, out)
    except Exception as error:  # a harness failure is a FAIL, not a traceback without a result
        traceback.print_exc()
        result("reassign-harness", False, repr(error))
    finally:
        cluster.stop()
    log(f"run time {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
