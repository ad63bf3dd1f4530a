#!/usr/bin/env python3
"""Fetching from the closest replica (KIP-392) with the Java consumer, black-box, the same
scenario against dlog or a three-node Apache Kafka 4.x (the reference):

  compat/cluster/closest.sh dlog|kafka [OUT_DIR]       (this script: closest.py KIND --out DIR)

1. Starts three combined broker+controller nodes (compat/chaos/cluster.py: dlog from DLOG_BIN,
   Kafka 4.1.1 from KAFKA_LIB), node i with `broker.rack=rack-i`, every node with
   `replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector`; clients
   through its pass-through proxy; ports from CLOSEST_BASE_PORT (default 23200, below the
   ephemeral port range: node i listens on base+10i, controller +1, proxy +3, dlog's metrics
   +4).
2. `kafka-topics --create --replica-assignment 1:2:3`: one partition, RF 3, led by broker 1;
   waits for the full ISR.
3. Kafka's VerifiableProducer (acks=all) writes RECORDS values 0..RECORDS-1.
4. Kafka's console consumer (a group, `client.rack=rack-2`, from the beginning, at most
   RECORDS records) reads them, with the Java client's fetch logging at DEBUG.
5. Checks: every value read exactly once; the client's log says the leader named broker 2 its
   preferred read replica ("Updating preferred read replica for partition closest-0 to 2")
   and fetches went to broker 2 after that; on dlog, the brokers' own counters agree
   (dlog_preferred_read_replica_answers_total on broker 1, dlog_follower_fetches_total and
   dlog_follower_fetch_bytes_total on broker 2; Kafka's are JMX only: SKIP there).

Prints one "RESULT <name> PASS|FAIL|SKIP <detail>" line per check and the run time; exits 1 on
any FAIL. Leaves in OUT: tools.txt (the tool runs), consumer.log (the client's DEBUG log),
cluster/node*.log.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "compat", "chaos"))
sys.path.insert(0, HERE)

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

import cluster as clusters  # noqa: E402
from proxy import Proxy  # noqa: E402
from rolling import Tools, wait_for  # noqa: E402

TOPIC = "closest"
RECORDS = 2000
SELECTOR = "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector"
SESSION = ["broker.session.timeout.ms=30000", "broker.heartbeat.interval.ms=1000"]
LEADER, FOLLOWER = 1, 2
TOOL_TIMEOUT_S = 120
failed = False


def log(message):
    print(f"[closest {time.strftime('%H:%M:%S')}] {message}", flush=True)


def result(name, outcome, detail):
    global failed
    if outcome is True or outcome is False:
        outcome = "PASS" if outcome else "FAIL"
    failed = failed or outcome == "FAIL"
    print(f"RESULT {name} {outcome} {detail}"[:900], flush=True)


def run_tool(tools, out, argv, timeout_s=TOOL_TIMEOUT_S, **kwargs):
    """Runs one tool JVM; its command and output go to tools.txt. (rc, stdout, stderr)."""
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, **kwargs)
        rc, stdout, stderr = run.returncode, run.stdout, run.stderr
    except subprocess.TimeoutExpired as expired:
        rc = -1
        stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        stderr = (expired.stderr.decode() if isinstance(expired.stderr, bytes) else (expired.stderr or "")) + \
            "\n(timed out)"
    with open(os.path.join(out, "tools.txt"), "a", encoding="utf-8") as handle:
        shown = " ".join(a if len(a) < 200 else a[:40] + "..." for a in argv)  # not the class path
        handle.write(f"=== {time.strftime('%H:%M:%S')} {shown} (rc {rc})\n{stdout[-2000:]}\n{stderr[-4000:]}\n")
    return rc, stdout, stderr


def state(admin):
    """(leader, replicas, sorted isr) of partition 0, or None."""
    try:
        topic = admin.list_topics(topic=TOPIC, timeout=5).topics.get(TOPIC)
    except KafkaException:
        return None
    if topic is None or topic.error is not None or 0 not in topic.partitions:
        return None
    p = topic.partitions[0]
    return p.leader, list(p.replicas), sorted(p.isrs)


def scrape(port):
    """{metric name: summed value} from dlog's /metrics on `port`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        try:
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[-1])
        except ValueError:
            pass
    return values


def metrics_port(cluster, node):
    return cluster.base_port + 10 * node + 4


def scenario(kind, cluster, out):
    bootstrap = cluster.bootstrap()
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 3})
    tools = Tools(out)

    # 2. One partition on all three brokers, led by broker 1.
    deadline = time.monotonic() + 60
    while True:
        rc, stdout, stderr = run_tool(tools, out, tools.java(
            "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create", "--topic", TOPIC,
            "--replica-assignment", f"{LEADER}:{FOLLOWER}:3"))
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)  # a broker not registered yet
    s = wait_for(lambda: (lambda s: s if s and s[0] == LEADER and s[2] == [1, 2, 3] else None)(state(admin)), 60)
    result("closest-topic-created", s is not None, f"partition 0: {s or state(admin)} (rc {rc})")
    if s is None:
        return

    # 3. The records, acknowledged by every replica.
    rc, stdout, stderr = run_tool(tools, out, tools.java(
        "org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server", bootstrap, "--topic", TOPIC,
        "--max-messages", str(RECORDS), "--throughput", "-1", "--acks", "-1", heap="384m"))
    acked = sum(1 for line in stdout.splitlines() if '"producer_send_success"' in line)
    result("closest-produced", acked == RECORDS, f"{acked} of {RECORDS} acknowledged (rc {rc})")
    if acked != RECORDS:
        return

    # 4. A consumer in broker 2's rack.
    env = dict(os.environ)
    argv = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={os.path.join(HERE, 'log4j2-fetch-debug.xml')}", "-cp", tools.classpath,
            "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bootstrap, "--topic", TOPIC,
            "--group", "closest-rack-2", "--from-beginning", "--max-messages", str(RECORDS),
            "--timeout-ms", "60000", "--consumer-property", f"client.rack=rack-{FOLLOWER}"]
    started = time.monotonic()
    rc, stdout, stderr = run_tool(tools, out, argv, env=env)
    took = time.monotonic() - started
    with open(os.path.join(out, "consumer.log"), "w", encoding="utf-8") as handle:
        handle.write(stderr)
    values = [line.strip() for line in stdout.splitlines() if line.strip().isdigit()]
    read = sorted(int(v) for v in values)
    result("closest-every-record-read", read == list(range(RECORDS)),
           f"{len(values)} read, {len(set(values))} distinct of {RECORDS} in {took:.1f} s (rc {rc})")

    # 5. Where the fetches went, from the client's DEBUG log.
    lines = stderr.splitlines()
    told = [i for i, line in enumerate(lines)
            if f"Updating preferred read replica for partition {TOPIC}-0 to {FOLLOWER}" in line]
    # Fetches naming the partition (the empty ones at close only end fetch sessions).
    to_node = lambda node: re.compile(rf"Sending \S+ .*{TOPIC}-0.* to broker \S+ \(id: {node} ")  # noqa: E731
    after = lines[told[0]:] if told else []
    to_follower = sum(1 for line in after if to_node(FOLLOWER).search(line))
    to_leader_after = sum(1 for line in after if to_node(LEADER).search(line))
    to_leader_before = sum(1 for line in lines[:told[0] if told else len(lines)] if to_node(LEADER).search(line))
    result("closest-preferred-read-replica", bool(told),
           f"client told {len(told)} time(s) to read {TOPIC}-0 from broker {FOLLOWER}; "
           f"{to_leader_before} fetch(es) to the leader before")
    result("closest-fetches-from-follower", to_follower > 0,
           f"after that: {to_follower} fetch(es) to broker {FOLLOWER}, {to_leader_after} to the leader {LEADER}")

    if kind != "dlog":
        result("closest-broker-counters", "SKIP", "Kafka's broker metrics are JMX only (the client's log is the evidence)")
        return
    leader_metrics = scrape(metrics_port(cluster, LEADER))
    follower_metrics = scrape(metrics_port(cluster, FOLLOWER))
    redirects = leader_metrics.get("dlog_preferred_read_replica_answers_total", 0)
    served = follower_metrics.get("dlog_follower_fetches_total", 0)
    served_bytes = follower_metrics.get("dlog_follower_fetch_bytes_total", 0)
    leader_served = leader_metrics.get("dlog_follower_fetches_total", 0)
    result("closest-broker-counters", redirects > 0 and served > 0 and served_bytes > 0,
           f"broker {LEADER}: {redirects:.0f} preferred-read-replica answers, {leader_served:.0f} follower reads; "
           f"broker {FOLLOWER}: {served:.0f} follower reads, {served_bytes:.0f} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["dlog", "kafka"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = os.path.abspath(args.out or os.path.join(ROOT, "target", "closest", f"{args.kind}-{time.strftime('%H%M%S')}"))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    started = time.monotonic()
    base_port = int(os.environ.get("CLOSEST_BASE_PORT", "23200"))
    cluster = clusters.make(args.kind, 3, os.path.join(out, "cluster"), base_port, [SELECTOR] + SESSION)
    for node in cluster.node_ids():
        cluster.node_sets[node] = [f"broker.rack=rack-{node}"]
        if args.kind == "dlog":
            cluster.node_sets[node].append(f"metrics.listen=127.0.0.1:{metrics_port(cluster, node)}")
    proxy = Proxy(0)
    for node in cluster.node_ids():
        proxy.listen(cluster.proxy_port(node), cluster.client_port(node))
    log(f"{args.kind}: results in {out}")
    try:
        cluster.start()
        scenario(args.kind, cluster, out)
    except Exception as error:  # a harness failure is a FAIL, not a traceback without a result
        traceback.print_exc()
        result("closest-harness", False, repr(error))
    finally:
        cluster.stop()
    log(f"run time {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
