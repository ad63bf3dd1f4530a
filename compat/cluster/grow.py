#!/usr/bin/env python3
"""A three-node cluster grows to four and `dlog rebalance` spreads the load onto the new
broker (issue 15), black-box, the same scenario against dlog or a three-node Apache Kafka 4.x
(`dlog rebalance` is a client of the protocol and drives both):

  compat/cluster/grow.sh dlog|kafka [OUT_DIR]       (this script: grow.py KIND --out DIR)

1. Starts three combined broker+controller nodes (compat/chaos/cluster.py, as reassign.py does),
   clients through its pass-through proxy, ports from GROW_BASE_PORT (default 23400).
2. `kafka-topics --create`: grow-a (6 partitions, RF 2) and grow-b (4 partitions, RF 3); grow-b
   gets PRELOAD records of 1 KiB (acks=all, each acknowledged offset kept); Kafka's
   VerifiableProducer (idempotent, acks=all) writes to grow-a throughout.
3. Starts a fourth, broker-only node (the same controller quorum) and waits for it in Metadata.
4. `dlog rebalance` (plan only) must propose moves onto broker 4; then `dlog rebalance --execute
   --throttle N --output plan.json` must set the throttles as kafka-reassign-partitions does
   (`kafka-configs --describe`: the rates on broker 4, the topics' throttled replicas).
5. `dlog rebalance --verify --plan plan.json --elect-leaders` until it exits 0: the throttles are
   gone, Metadata shows the plan's replicas with full ISRs, broker 4 holds its share of the
   replicas (per-broker counts within one) and, after the election, of the leaders (within
   one); Kafka's own `kafka-reassign-partitions --verify` of the same JSON says every
   partition is completed; a second `dlog rebalance` finds nothing to move.
6. Stops the producer and reads both topics from the beginning: every acknowledged record
   read exactly once at its acknowledged offset (rolling.py's check for the producer).

Prints one "RESULT <name> PASS|FAIL <detail>" line per check and the run time; exits 1 on any
FAIL. Leaves in OUT: tools.txt (every tool run and its output), java-producer.jsonl,
cluster/node*.log.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "compat", "chaos"))
sys.path.insert(0, HERE)

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

import cluster as clusters  # noqa: E402
from proxy import Proxy  # noqa: E402
from rolling import JavaProducer, Tools, check_java, wait_for  # noqa: E402

TOPICS = {"grow-a": (6, 2), "grow-b": (4, 3)}  # name: (partitions, replication factor)
PRODUCED_TOPIC = "grow-a"
PRELOADED_TOPIC = "grow-b"
PRELOAD = 3000
RECORD_BYTES = 1024
NEW_BROKER = 4
THROTTLE_BYTES_PER_S = 4000000
TOOL_TIMEOUT_S = 120
REBALANCE_TIMEOUT_S = 240
failed = False


def log(message):
    print(f"[grow {time.strftime('%H:%M:%S')}] {message}", flush=True)


def result(name, ok, detail):
    global failed
    failed = failed or not ok
    print(f"RESULT {name} {'PASS' if ok else 'FAIL'} {detail}"[:1200], flush=True)


class Transcript:
    """Every tool run (dlog rebalance, Kafka's tools) and its output, in tools.txt."""

    def __init__(self, out):
        self.path = os.path.join(out, "tools.txt")

    def run(self, label, argv):
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
            rc, text = run.returncode, run.stdout + run.stderr
        except subprocess.TimeoutExpired:
            rc, text = -1, "(timed out)"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"=== {time.strftime('%H:%M:%S')} {label} (rc {rc})\n{text}\n")
        return rc, text


def dlog_binary():
    return os.environ.get("DLOG_BIN") or os.path.join(ROOT, "target", "release", "dlog")


def start_new_broker(kind, cluster):
    """Node 4: a broker only, of the three controllers' quorum, behind the proxy like the others."""
    node, host = NEW_BROKER, "127.0.0.1"
    data = os.path.join(cluster.work_dir, f"node{node}")
    if kind == "dlog":
        argv = [cluster.binary, "--node-id", str(node), "--listen", f"{host}:{cluster.client_port(node)}",
                "--data-dir", data, "--process-roles", "broker",
                "--controller-quorum-voters", cluster.voters(),
                "--set", "group.initial.rebalance.delay.ms=0",
                "--set", f"advertised.listeners=PLAINTEXT://127.0.0.1:{cluster.proxy_port(node)}"]
        for item in cluster.extra_sets:
            argv += ["--set", item]
    else:
        # The cluster id the controllers were formatted with.
        with open(os.path.join(cluster.data_dir(1), "meta.properties"), encoding="utf-8") as handle:
            cluster_id = re.search(r"cluster\.id=(\S+)", handle.read()).group(1)
        logs = os.path.join(data, "kraft-logs")
        properties = os.path.join(data, "server.properties")
        os.makedirs(data, exist_ok=True)
        lines = ["process.roles=broker", f"node.id={node}", f"controller.quorum.voters={cluster.voters()}",
                 f"listeners=PLAINTEXT://{host}:{cluster.client_port(node)}",
                 f"advertised.listeners=PLAINTEXT://127.0.0.1:{cluster.proxy_port(node)}",
                 "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
                 "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                 f"log.dirs={logs}", "num.partitions=1", "default.replication.factor=3",
                 "min.insync.replicas=1", "offsets.topic.replication.factor=3",
                 "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=1",
                 "group.initial.rebalance.delay.ms=0", "num.network.threads=2", "num.io.threads=4",
                 "num.recovery.threads.per.data.dir=1"] + cluster.extra_sets
        with open(properties, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        subprocess.run(cluster._java("kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cluster_id,
                                     "-c", properties), capture_output=True, timeout=120, check=True)
        argv = ["java", "-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={cluster.log4j}",
                "-cp", cluster.classpath, "kafka.Kafka", properties]
    cluster._spawn(node, argv)
    cluster.wait_port(node)


def stop_new_broker(cluster):
    proc = cluster.procs.get(NEW_BROKER)
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def assignment(admin):
    """{(topic, partition): (leader, replicas, sorted isr)} of the scenario's topics, or None."""
    try:
        metadata = admin.list_topics(timeout=5)
    except KafkaException:
        return None
    found = {}
    for name, (partitions, _rf) in TOPICS.items():
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or len(topic.partitions) != partitions:
            return None
        for p, m in topic.partitions.items():
            found[(name, p)] = (m.leader, list(m.replicas), sorted(m.isrs))
    return found


def per_broker(state, brokers):
    replicas = {b: 0 for b in brokers}
    leaders = {b: 0 for b in brokers}
    for leader, members, _isr in state.values():
        for b in members:
            replicas[b] = replicas.get(b, 0) + 1
        leaders[leader] = leaders.get(leader, 0) + 1
    return replicas, leaders


def spread(counts):
    return max(counts.values()) - min(counts.values())


def preload(bootstrap):
    """PRELOAD records of RECORD_BYTES to grow-b, acks=all: {(partition, offset): value}."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "log_level": 3})
    acked, errors = {}, []

    def delivered(error, message):
        if error is not None:
            errors.append(str(error))
        else:
            acked[(message.partition(), message.offset())] = message.value()

    for i in range(PRELOAD):
        value = (f"{i:08d}" * (RECORD_BYTES // 8)).encode()
        while True:
            try:
                producer.produce(PRELOADED_TOPIC, value=value, key=str(i).encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    return acked, errors


def drain(bootstrap, topic, partitions):
    """Every record of `topic`, [(partition, offset, value bytes)], read to the end offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "grow-unused",
                         "enable.auto.commit": False, "log_level": 3})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records, reached = [], {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 120
        while len(reached) < partitions and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is not None:
                    continue
                records.append((message.partition(), message.offset(), message.value()))
                if message.offset() + 1 >= ends[message.partition()]:
                    reached.add(message.partition())
        return len(reached) == partitions, ends, records
    finally:
        consumer.close()


def throttles(transcript, tools, bootstrap, entities):
    """The throttle configs `kafka-configs --describe` lists: {entity name: {config: value}}."""
    found = {}
    for entity_type, name in entities:
        _rc, text = transcript.run(f"kafka-configs --describe {entity_type} {name}",
                                   tools.java("kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap,
                                              "--entity-type", entity_type, "--entity-name", name, "--describe"))
        found[name] = {key: value for key, value in
                       (line.split()[0].split("=", 1) for line in text.splitlines()
                        if "throttled" in line and "=" in line.split()[0])}
    return found


def scenario(kind, cluster, out):
    bootstrap = cluster.bootstrap() + f",127.0.0.1:{cluster.proxy_port(NEW_BROKER)}"
    one = f"127.0.0.1:{cluster.proxy_port(1)}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 3})
    tools = Tools(out)
    transcript = Transcript(out)

    def rebalance(*args):
        return transcript.run("dlog rebalance " + " ".join(args),
                              [dlog_binary(), "rebalance", "--bootstrap-server", one, *args])

    # 2. Topics and data.
    for name, (partitions, rf) in TOPICS.items():
        deadline = time.monotonic() + 60
        while True:
            rc, text = transcript.run(f"kafka-topics --create {name}", tools.java(
                "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", one, "--create", "--topic", name,
                "--partitions", str(partitions), "--replication-factor", str(rf)))
            if rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)  # a broker not registered yet
    full = lambda s: s is not None and all(len(isr) == len(r) and leader in r for leader, r, isr in s.values())  # noqa: E731
    before = wait_for(lambda: (lambda s: s if full(s) else None)(assignment(admin)), 60)
    result("grow-topics-created", before is not None, f"{before}" if before else f"rc {rc}: {text[-300:]}")
    if before is None:
        return
    preloaded, preload_errors = preload(bootstrap)
    result("grow-preloaded", len(preloaded) == PRELOAD and not preload_errors,
           f"{len(preloaded)} of {PRELOAD} acknowledged, errors {preload_errors[:3]}")
    java = JavaProducer(tools, bootstrap, out, topic=PRODUCED_TOPIC)
    try:
        if not wait_for(lambda: java.count() >= 200, 60):
            result("grow-producer-running", False, f"{java.count()} acknowledged after 60 s")
            return
        grow(kind, cluster, admin, tools, transcript, rebalance, bootstrap, one, out)
        time.sleep(2)
    finally:
        java.stop()
    reached, ends, records = drain(bootstrap, PRODUCED_TOPIC, TOPICS[PRODUCED_TOPIC][0])
    ok, detail = check_java(java, [(p, o, int(v)) for p, o, v in records])
    result("grow-no-acknowledged-record-lost", ok and reached, f"{PRODUCED_TOPIC}: ends {ends} reached {reached}; {detail}")
    reached, ends, records = drain(bootstrap, PRELOADED_TOPIC, TOPICS[PRELOADED_TOPIC][0])
    read = {(p, o): v for p, o, v in records}
    missing = [k for k in preloaded if k not in read]
    changed = [k for k, v in preloaded.items() if k in read and read[k] != v]
    result("grow-preloaded-records-intact", reached and not missing and not changed and len(records) == len(preloaded),
           f"{PRELOADED_TOPIC}: ends {ends}, {len(records)} read of {len(preloaded)} acknowledged; "
           f"missing {len(missing)} {missing[:5]}, different {len(changed)} {changed[:5]}")


def grow(kind, cluster, admin, tools, transcript, rebalance, bootstrap, one, out):
    # 3. The fourth broker.
    start_new_broker(kind, cluster)
    seen = wait_for(lambda: NEW_BROKER in (admin.list_topics(timeout=5).brokers or {}), 90)
    result("grow-new-broker-registered", bool(seen), f"brokers {sorted(admin.list_topics(timeout=5).brokers)}")
    if not seen:
        return
    brokers = [1, 2, 3, NEW_BROKER]
    topics = ",".join(TOPICS)

    # 4. Plan, then execute with a throttle.
    rc, text = rebalance("--topics", topics)
    proposed = [line for line in text.splitlines() if line.startswith("{") and '"partitions"' in line]
    plan = json.loads(proposed[-1])["partitions"] if rc == 0 and len(proposed) == 2 else []
    onto_new = sum(1 for p in plan if NEW_BROKER in p["replicas"])
    result("grow-plan", rc == 0 and onto_new > 0 and "Proposed partition reassignment configuration" in text,
           f"rc {rc}: {onto_new} partitions onto broker {NEW_BROKER}; "
           f"{' | '.join(line.strip() for line in text.splitlines() if 'broker ' in line or line.startswith('Plan:'))}")
    path = os.path.join(out, "plan.json")
    rc, text = rebalance("--topics", topics, "--execute", "--throttle", str(THROTTLE_BYTES_PER_S), "--output", path)
    executed = (rc == 0 and "Successfully started partition reassignments" in text
                and f"The inter-broker throttle limit was set to {THROTTLE_BYTES_PER_S} B/s" in text
                and os.path.exists(path))
    result("grow-execute", executed, f"rc {rc}: {' '.join(text.split())[-400:]}")
    if not executed:
        return
    started = time.monotonic()
    with open(path, encoding="utf-8") as handle:
        targets = {(p["topic"], p["partition"]): p["replicas"] for p in json.load(handle)["partitions"]}
    rate = str(THROTTLE_BYTES_PER_S)
    during = throttles(transcript, tools, one, [("brokers", str(NEW_BROKER)), ("topics", "grow-a"), ("topics", "grow-b")])
    follower_lists = [during.get(t, {}).get("follower.replication.throttled.replicas", "") for t in TOPICS]
    result("grow-throttle-set",
           during[str(NEW_BROKER)] == {"leader.replication.throttled.rate": rate,
                                       "follower.replication.throttled.rate": rate}
           and any(f":{NEW_BROKER}" in f for f in follower_lists)
           and all(during.get(t, {}).get("leader.replication.throttled.replicas") for t in TOPICS
                   if any(k[0] == t for k in targets)),
           f"configs {during}")

    # 5. Verify until done (clears the throttles, elects the preferred leaders).
    done = None
    while time.monotonic() - started < REBALANCE_TIMEOUT_S:
        rc, text = rebalance("--verify", "--plan", path, "--elect-leaders")
        if rc == 0 and "Rebalance complete." in text:
            done = text
            break
        if rc not in (0, 3):
            break
        time.sleep(2)
    elapsed = time.monotonic() - started
    result("grow-verify-complete", done is not None and "still in progress" not in done
           and all(f"Reassignment of partition {t}-{p} is completed." in done for t, p in targets),
           f"after {elapsed:.0f} s: rc {rc}: {' '.join((done or text).split())[-400:]}")
    after = throttles(transcript, tools, one, [("brokers", str(b)) for b in brokers]
                      + [("topics", t) for t in TOPICS])
    result("grow-throttle-cleared", done is not None and not any(after.values()), f"configs after {after}")

    def settled(s):
        return (s is not None and full_isr(s) and all(s[k][1] == r for k, r in targets.items())
                and all(leader == r[0] for leader, r, _ in s.values()))

    def full_isr(s):
        return all(len(isr) == len(r) and leader in r for leader, r, isr in s.values())

    s = wait_for(lambda: (lambda s: s if settled(s) else None)(assignment(admin)), 90)
    s = s or assignment(admin)
    replicas, leaders = per_broker(s or {}, brokers)
    result("grow-metadata-replicas", s is not None and settled(s),
           f"{sorted((f'{t}-{p}', l, r, i) for (t, p), (l, r, i) in (s or {}).items())}")
    total = sum(replicas.values())
    result("grow-new-broker-share", spread(replicas) <= 1 and replicas[NEW_BROKER] >= total // len(brokers),
           f"replicas per broker {replicas} (total {total})")
    result("grow-leaders-balanced", spread(leaders) <= 1 and leaders[NEW_BROKER] >= 1,
           f"leaders per broker {leaders}")

    # Kafka's own tool reads the same JSON and agrees.
    rc, text = transcript.run("kafka-reassign-partitions --verify", tools.java(
        "org.apache.kafka.tools.reassign.ReassignPartitionsCommand", "--bootstrap-server", one,
        "--reassignment-json-file", path, "--verify"))
    result("grow-kafka-tool-verify-agrees",
           rc == 0 and text.count("is completed") == len(targets) and "still in progress" not in text,
           f"rc {rc}: {text.count('is completed')} of {len(targets)} completed; {' '.join(text.split())[-300:]}")

    rc, text = rebalance("--topics", topics)
    result("grow-rebalanced-is-balanced", rc == 0 and "nothing to move" in text,
           f"rc {rc}: {' '.join(text.split())[-300:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["dlog", "kafka"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = os.path.abspath(args.out or os.path.join(ROOT, "target", "grow", f"{args.kind}-{time.strftime('%H%M%S')}"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    started = time.monotonic()
    base_port = int(os.environ.get("GROW_BASE_PORT", "23400"))
    cluster = clusters.make(args.kind, 3, os.path.join(out, "cluster"), base_port)
    proxy = Proxy(0)
    for node in cluster.node_ids() + [NEW_BROKER]:
        proxy.listen(cluster.proxy_port(node), cluster.client_port(node))
    log(f"{args.kind}: results in {out}")
    try:
        cluster.start()
        scenario(args.kind, cluster, out)
    except Exception as error:  # a harness failure is a FAIL, not a traceback without a result
        traceback.print_exc()
        result("grow-harness", False, repr(error))
    finally:
        stop_new_broker(cluster)
        cluster.stop()
    log(f"run time {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
