#!/usr/bin/env python3
"""The chaos runner: a fresh cluster per run, the queue and transaction workloads against it
while a seeded nemesis injects faults, then heal, a final drain, and the checker.

  compat/chaos/run.py short [--target dlog|kafka] [--nodes 1|3]     fixed seeds, for CI
  compat/chaos/run.py soak --runs N [--target T] [--nodes N] [--seed S] [--duration S] [--kinds-per-run K]
  compat/chaos/run.py once --seed S [--nemeses kill,pause,delay,kill-controller] [--nodes N] [--target T]
      nemeses: kill, kill-controller, pause, delay, duplicate, duplicate-late, reorder, partition-node, partition-controller,
      partition-bridge (default set; the last four need 3 nodes), and on request disk-full,
      power-loss, power-loss-all (--writeback S: see README)
  compat/chaos/run.py table DIR...       one summary table over the runs.jsonl of earlier outputs

Environment: DLOG_BIN (default target/release/dlog), KAFKA_LIB (default compat/kafka/lib, holding
classpath.txt), CHAOS_BASE_PORT (default 21000), CHAOS_OUT (default target/chaos), CHAOS_DISK_MB
(default 256). Partitions and the disk nemeses need root (namespaces, mounts).
Exit code: 0 when every run is clean and valid; 1 on any anomaly or invalid run (a harness
problem, e.g. nothing was acknowledged or a node could not restart).
Each run leaves in its directory: history.jsonl, check.json (every anomaly with its operations),
schedule.json, and the node logs (data directories are removed unless --keep).
"""

import argparse
import faulthandler
import json
import os
import random
import shutil
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import checker  # noqa: E402
import cluster as clusters  # noqa: E402
import disks as disk_layer  # noqa: E402
import nemesis as nemeses  # noqa: E402
import netns  # noqa: E402
import workloads  # noqa: E402
from history import History  # noqa: E402
from proxy import Proxy  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PARTITIONS = 6
ALL_1 = ["kill", "pause", "delay", "duplicate"]
ALL_3 = ["kill", "kill-controller", "pause", "delay", "duplicate", "partition-node", "partition-controller",
         "partition-bridge"]

# disk-full: each node's disk is a tmpfs of this size (the workload writes a few MB per node).
DISK_MB = int(os.environ.get("CHAOS_DISK_MB", "256"))

# The CI run: fixed seeds, every nemesis at least once (schedule() takes each kind once first).
SHORT = [
    {"nodes": 1, "seed": 1, "nemeses": ALL_1, "duration": 22},
    {"nodes": 3, "seed": 2, "nemeses": ALL_3, "duration": 30},
]


def log(message):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_leaders(bootstrap, topics, timeout_s=90):
    """Every partition of `topics` has a leader in the metadata (RF 1: a killed or fenced
    broker's partitions have none until it is back)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    deadline = time.monotonic() + timeout_s
    missing = topics
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(timeout=5)
            missing = []
            for name in topics:
                topic = metadata.topics.get(name)
                if topic is None or topic.error is not None or len(topic.partitions) != PARTITIONS or \
                        any(p.leader < 0 for p in topic.partitions.values()):
                    missing.append(name)
            if not missing:
                return True
        except KafkaException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"partitions without a leader after {timeout_s}s: {missing}")


def replication_factor(nodes):
    """Topics are replicated on every node of a cluster (up to 3), with min.insync.replicas 2, as
    users configure them: a kill -9 of one node then must neither lose nor block acknowledged
    writes."""
    return min(nodes, 3)


def create_topics(bootstrap, names, nodes):
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    deadline = time.monotonic() + 60
    rf = replication_factor(nodes)
    configs = {"min.insync.replicas": "2"} if rf >= 3 else {}
    while True:
        futures = admin.create_topics([NewTopic(n, PARTITIONS, rf, config=configs) for n in names],
                                      operation_timeout=30)
        try:
            for name, future in futures.items():
                try:
                    future.result(40)
                except KafkaException as exc:
                    if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                        raise
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    wait_leaders(bootstrap, names)


def run_once(target, nodes, seed, kinds, duration_s, out_dir, base_port, keep=False, extra_sets=(), ctp=False,
             writeback_s=0.0):
    os.makedirs(out_dir, exist_ok=True)
    work = os.path.join(out_dir, "cluster")
    disk_layer.unmount_all(work)
    shutil.rmtree(work, ignore_errors=True)
    rng = random.Random(seed)
    faults = nemeses.schedule(seed, kinds, nodes)
    with open(os.path.join(out_dir, "schedule.json"), "w", encoding="utf-8") as handle:
        json.dump({"target": target, "nodes": nodes, "seed": seed, "nemeses": kinds, "duration_s": duration_s,
                   "sets": list(extra_sets), "writeback_s": writeback_s, "faults": faults}, handle, indent=1)
    network = netns.Network(base_port, nodes) if any(k in nemeses.PARTITIONS for k in kinds) else None
    cluster = clusters.make(target, nodes, work, base_port, extra_sets, network=network)
    if any(k in nemeses.DISK_FULL + nemeses.POWER for k in kinds):
        cluster.disks = disk_layer.Disks(work, nodes, size_mb=DISK_MB if "disk-full" in kinds else None,
                                         lazy=any(k in nemeses.POWER for k in kinds), writeback_s=writeback_s)
    proxy = Proxy(seed)
    for node in cluster.node_ids():
        proxy.listen(cluster.proxy_port(node), cluster.client_port(node), target_host=cluster.host(node))
    history = History(os.path.join(out_dir, "history.jsonl"))
    problems = []
    notes = []
    findings = []
    summary = {"target": target, "nodes": nodes, "seed": seed, "nemeses": kinds, "dir": out_dir,
               "sets": list(extra_sets), "writeback_s": writeback_s}
    started = time.monotonic()
    nem = None
    hook = threading.excepthook
    try:
        if network:
            network.setup()
        if cluster.disks:
            cluster.disks.setup()
        cluster.start()
        bootstrap = cluster.bootstrap()
        queue_topic, txn_topic, ctp_topic = f"chaos-queue-{seed}", f"chaos-txn-{seed}", f"chaos-ctp-{seed}"
        topics = [queue_topic, txn_topic] + ([ctp_topic] if ctp else [])
        create_topics(bootstrap, topics, nodes)
        history.complete("harness", "ok", "topic", {"topic": queue_topic, "transactional": False})
        history.complete("harness", "ok", "topic", {"topic": txn_topic, "transactional": True})
        if ctp:
            history.complete("harness", "ok", "topic", {"topic": ctp_topic, "transactional": True})
        log(f"{target} x{nodes} seed {seed}: cluster up in {time.monotonic() - started:.1f}s; "
            f"{duration_s}s of faults from {', '.join(f['kind'] for f in faults[:len(kinds)])}, ...")

        stop = threading.Event()

        def sub_rng():
            return random.Random(rng.random())
        clients = [
            workloads.QueueProducer("producer-0", history, bootstrap, stop, sub_rng(), queue_topic, PARTITIONS),
            workloads.QueueProducer("producer-1", history, bootstrap, stop, sub_rng(), queue_topic, PARTITIONS),
            workloads.AssignReader("assign-0", history, bootstrap, stop, sub_rng(), queue_topic, PARTITIONS,
                                   "read_uncommitted"),
            workloads.GroupReader("group-classic", history, bootstrap, stop, sub_rng(), queue_topic,
                                  f"chaos-classic-{seed}", "classic"),
            workloads.GroupReader("group-consumer", history, bootstrap, stop, sub_rng(), queue_topic,
                                  f"chaos-consumer-{seed}", "consumer"),
            workloads.TxnProducer("txn-0", history, bootstrap, stop, sub_rng(), txn_topic, PARTITIONS, f"chaos-tx0-{seed}"),
            workloads.TxnProducer("txn-1", history, bootstrap, stop, sub_rng(), txn_topic, PARTITIONS, f"chaos-tx1-{seed}"),
            workloads.AssignReader("txn-rc", history, bootstrap, stop, sub_rng(), txn_topic, PARTITIONS, "read_committed"),
            workloads.AssignReader("txn-ru", history, bootstrap, stop, sub_rng(), txn_topic, PARTITIONS, "read_uncommitted"),
        ]
        if ctp:
            clients += [workloads.Transformer(f"ctp-{k}", history, bootstrap, stop, sub_rng(), queue_topic, ctp_topic,
                                              PARTITIONS, f"chaos-ctp-{seed}", f"chaos-ctp{k}-{seed}") for k in (0, 1)]
        # A client thread that dies of an exception makes the run invalid (its operations stop).
        def died(args):
            problems.append(f"client {args.thread.name} died: {args.exc_type.__name__}: {str(args.exc_value)[:200]}")
            hook(args)
        threading.excepthook = died
        for client in clients:
            client.start()
        deadline = threading.Event()
        nem = nemeses.Nemesis(faults, cluster, proxy, history, deadline, min_faults=len(kinds))
        nem.start()
        time.sleep(duration_s)
        deadline.set()  # the nemesis ends its current fault, or goes on until each kind ran once
        nem.join(240)
        nem.heal()
        problems += nem.errors
        summary["faults"] = nem.injected
        summary["proxy"] = proxy.stats()
        stop.set()
        for client in clients:
            client.join(90)
            if client.is_alive():
                problems.append(f"client {client.process} did not stop")
        if any(client.is_alive() for client in clients):
            faulthandler.dump_traceback(all_threads=True)  # where they hang, on stderr
        wait_leaders(bootstrap, topics)
        drains = {}
        for topic, isolation in ((queue_topic, "read_uncommitted"), (txn_topic, "read_committed"),
                                 (txn_topic, "read_uncommitted")) + (((ctp_topic, "read_committed"),) if ctp else ()):
            reached, ends, positions = workloads.final_drain(history, bootstrap, topic, PARTITIONS, isolation)
            drains[f"{topic}/{isolation}"] = {"reached_end": reached, "end_offsets": ends, "positions": positions}
            if len(ends) < PARTITIONS:
                problems.append(f"final drain of {topic} ({isolation}): no end offsets for every partition {ends}")
            elif not reached:
                # Not an anomaly by itself (an acknowledged write nobody read is one: unseen-write);
                # noted because a consumer's position should reach the end offset (README).
                notes.append(f"final drain of {topic} ({isolation}) stopped short of the end offsets: "
                             f"{ {p: (positions.get(p), e) for p, e in ends.items() if positions.get(p, -1) < e} } "
                             f"(partition: (position, end))")
        summary["drains"] = drains
        summary["client_crashes"] = sum(c.crashes for c in clients)
    except Exception as exc:  # noqa: BLE001 - an invalid run, reported as such
        problems.append(f"harness: {type(exc).__name__}: {exc}")
    finally:
        threading.excepthook = hook
        history.close()
        try:
            cluster.stop()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"stop: {exc}")
        proxy.close()
        if network:
            network.cleanup()
        if cluster.disks:
            try:
                if keep:  # the disks are tmpfs or FUSE mounts: copy the data before unmounting
                    for node in cluster.node_ids():
                        shutil.copytree(cluster.data_dir(node), os.path.join(work, f"node{node}-data"),
                                        dirs_exist_ok=True, ignore_dangling_symlinks=True)
                cluster.disks.cleanup()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"disk cleanup: {exc}")
        if not keep:
            for node in cluster.node_ids():
                for name in (f"node{node}", f"disk{node}", f"fs{node}"):
                    shutil.rmtree(os.path.join(work, name), ignore_errors=True)

    # A node that exited without the nemesis asking (the heal restarted it): a crash, hence an
    # invalid run; during a disk-full fault a finding (the run goes on, README).
    for exit_ in cluster.exits:
        code = exit_["code"]
        how = f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited with code {code}"
        message = (f"node {exit_['node']} {how} during "
                   f"{exit_['during'] or 'no fault'}; see {cluster.log_path(exit_['node'])}")
        on_full_disk = exit_["during"] == "disk-full" and exit_.get("fault_node") == exit_["node"]
        (findings if on_full_disk else problems).append(message)
    summary["node_exits"] = cluster.exits
    summary["findings"] = findings

    events = history.events()
    result = checker.check(events)
    stats = result["stats"]
    if stats["sends_ok"] == 0:
        problems.append("no acknowledged send")
    if stats["txns_committed"] == 0:
        problems.append("no committed transaction")
    if stats["records_read"] == 0:
        problems.append("nothing read")
    summary.update({"stats": stats, "counts": result["counts"], "problems": problems, "notes": notes,
                    "seconds": round(time.monotonic() - started, 1)})
    summary.setdefault("faults", 0)
    with open(os.path.join(out_dir, "check.json"), "w", encoding="utf-8") as handle:
        json.dump({"summary": summary, "anomalies": result["anomalies"], "cycles": result.get("cycles", [])}, handle,
                  indent=1, default=str)
    anomalies = sum(result["counts"].values())
    log(f"{target} x{nodes} seed {seed}: {summary['seconds']}s, {summary['faults']} faults, {stats['ops']} ops, "
        f"sends ok/info/fail {stats['sends_ok']}/{stats['sends_info']}/{stats['sends_fail']}, txns "
        f"commit/abort/info {stats['txns_committed']}/{stats['txns_aborted']}/{stats['txns_info']}, "
        f"{stats['records_read']} records read; anomalies {anomalies} "
        f"{ {k: v for k, v in result['counts'].items() if v} }")
    for line in checker.excerpt(events, result, limit=3):
        print("    " + line[:600], flush=True)
    for note in notes:
        log(f"note: {note}")
    for finding in findings:
        log(f"FINDING: {finding}")
    for problem in problems:
        log(f"INVALID RUN: {problem}")
    summary["ok"] = anomalies == 0 and not problems
    return summary


def table(summaries):
    """Markdown: one row per (target, nodes), totals over runs."""
    kinds = checker.KINDS
    header = ["target", "nodes", "runs", "invalid runs", "findings", "faults", "ops", "sends ok/info", "txns commit/abort/info",
              "records read"] + kinds
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = {}
    for s in summaries:
        groups.setdefault((s["target"], s["nodes"]), []).append(s)
    for (target, nodes), runs in sorted(groups.items()):
        def total(key):
            return sum(r.get("stats", {}).get(key, 0) for r in runs)
        cells = [target, str(nodes), str(len(runs)), str(sum(1 for r in runs if r["problems"])),
                 str(sum(len(r.get("findings", [])) for r in runs)),
                 str(sum(r.get("faults", 0) for r in runs)), str(total("ops")),
                 f"{total('sends_ok')}/{total('sends_info')}",
                 f"{total('txns_committed')}/{total('txns_aborted')}/{total('txns_info')}", str(total("records_read"))]
        cells += [str(sum(r.get("counts", {}).get(k, 0) for r in runs)) for k in kinds]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["short", "soak", "once", "table"])
    parser.add_argument("dirs", nargs="*", help="table: output directories of earlier runs")
    parser.add_argument("--target", default="dlog", choices=["dlog", "kafka"])
    parser.add_argument("--nodes", type=int, default=None, help="1 or 3 (short: only the runs of that size)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=25, help="seconds of workload under faults per run")
    parser.add_argument("--nemeses", default=None, help="comma-separated; default every kind for the size")
    parser.add_argument("--kinds-per-run", type=int, default=None, metavar="K",
                        help="soak: each run takes K of the kinds, chosen by its seed (default: all of them; "
                             "fewer kinds make shorter runs, since a run lasts until each of its kinds ran)")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="broker property KEY=VALUE for every node (repeatable)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--writeback", type=float, default=0.0, metavar="S",
                        help="power-loss: data dirty for longer than S seconds counts as written back by the "
                             "kernel (0, the default: only fsync makes data durable; README)")
    parser.add_argument("--ctp", action="store_true",
                        help="add the consume-transform-produce workload (off by default until it is in the "
                             "short and soak results; see README on the librdkafka hang it works around)")
    args = parser.parse_args()
    if args.mode == "table":
        summaries = []
        for directory in args.dirs:
            with open(os.path.join(directory, "runs.jsonl"), encoding="utf-8") as handle:
                summaries += [json.loads(line) for line in handle if line.strip()]
        print(table(summaries))
        return 0

    out = args.out or os.path.join(os.environ.get("CHAOS_OUT", os.path.join(ROOT, "target", "chaos")),
                                   f"{args.mode}-{args.target}-{time.strftime('%Y%m%d-%H%M%S')}")
    base_port = int(os.environ.get("CHAOS_BASE_PORT", "21000"))
    # Leftovers of an earlier invocation that died: mounts under the output root, namespaces and
    # links of this base port (each run's own setup removes those of its port too).
    disk_layer.unmount_all(os.environ.get("CHAOS_OUT", os.path.join(ROOT, "target", "chaos")))
    for k in range(8):
        netns.Network(base_port + 100 * k, 1).cleanup()
    plans = []
    if args.mode == "short":
        plans = [dict(p) for p in SHORT if args.nodes in (None, p["nodes"])]
    else:
        nodes = args.nodes or 1
        kinds = args.nemeses.split(",") if args.nemeses else (ALL_3 if nodes > 1 else ALL_1)
        for unknown in set(kinds) - set(nemeses.KINDS):
            parser.error(f"unknown nemesis {unknown}")
        if nodes < 3 and set(kinds) & set(nemeses.MULTI_NODE):
            parser.error(f"{', '.join(sorted(set(kinds) & set(nemeses.MULTI_NODE)))} need 3 nodes (--nodes 3)")
        count = 1 if args.mode == "once" else args.runs
        plans = [{"nodes": nodes, "seed": args.seed + i, "nemeses": kinds, "duration": args.duration}
                 for i in range(count)]
        if args.kinds_per_run:
            for plan in plans:
                # A separate stream of the seed: the run's own schedule stays schedule(seed, kinds).
                plan["nemeses"] = sorted(random.Random(f"kinds-{plan['seed']}").sample(
                    kinds, min(args.kinds_per_run, len(kinds))))
    log(f"{args.mode}: {len(plans)} runs against {args.target}, results in {out}")
    summaries = []
    for plan in plans:
        run_dir = os.path.join(out, f"{args.target}-n{plan['nodes']}-seed{plan['seed']}")
        summaries.append(run_once(args.target, plan["nodes"], plan["seed"], plan["nemeses"], plan["duration"],
                                  run_dir, base_port + 100 * (len(summaries) % 8), keep=args.keep,
                                  extra_sets=args.sets, ctp=args.ctp, writeback_s=args.writeback))
        with open(os.path.join(out, "runs.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(summaries[-1], default=str) + "\n")
    markdown = table(summaries)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n")
    print(markdown)
    bad = [s for s in summaries if not s["ok"]]
    for s in bad:
        log(f"FAILED: {s['target']} x{s['nodes']} seed {s['seed']}: anomalies "
            f"{ {k: v for k, v in s['counts'].items() if v} } problems {s['problems']} ({s['dir']})")
    log(f"{len(summaries) - len(bad)}/{len(summaries)} runs clean")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
