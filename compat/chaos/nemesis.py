"""Faults, scheduled from a seed (the same seed gives the same schedule: replayable).

kinds:
  kill             kill -9 of a broker, restarted (same data directory) after the fault's length
  kill-controller  the same, of the active controller of the metadata quorum (chosen when the
                   fault starts, from the nodes' quorum-state files)
  pause            SIGSTOP of a broker, SIGCONT after the fault's length
  delay            the proxy delays every request sent to one broker by 50 ms to 4 s (+ up to
                   50 % jitter), in order; longer than the clients' 5 s request timeout at the top
  duplicate        the proxy sends requests to one broker twice with probability 0.1-0.6, the
                   copy right behind the original (a retry the broker sees at once), and drops
                   the answers to the copies (proxy.py)
  duplicate-late   the same, the copy 0-100 ms or 0-1 s later: it may land in the producer's
                   next transaction (a late EndTxn; README: it commits that transaction on
                   dlog as on Kafka with transaction.version 1 clients)
  reorder          the proxy shuffles requests to one broker in windows of 2-5 requests per
                   connection (held at most 20 or 100 ms) and puts the answers back in order
  partition-node   (3+ nodes, network namespaces: netns.py) one node cut from every other node
                   (with 3 nodes, also the majority/minority split); clients reach every node
                   through the proxy all along
  partition-controller  the same, of the active controller (chosen when the fault starts)
  partition-bridge the nodes but one split in two halves that cannot reach each other; the
                   remaining node (the bridge) reaches both
  disk-full        (disks.py) one node's data disk (its own tmpfs) filled by a filler file until
                   ENOSPC; after the fault's length the filler is deleted and the node, if it
                   exited meanwhile, restarted (its exit is a finding, not an invalid run)
  power-loss       (disks.py, lazyfs.py) one node loses power: kill -9, every write it did not
                   fsync is reverted, its file system mounted anew; restarted after the length
  power-loss-all   every node at once (a power cut of the whole cluster); restarted together
"""

import random
import threading
import time

KINDS = ["kill", "kill-controller", "pause", "delay", "duplicate", "duplicate-late", "reorder", "partition-node", "partition-controller", "partition-bridge",
         "disk-full", "power-loss", "power-loss-all"]
DISK_FULL = ["disk-full"]
POWER = ["power-loss", "power-loss-all"]
PARTITIONS = ["partition-node", "partition-controller", "partition-bridge"]
MULTI_NODE = ["kill-controller"] + PARTITIONS  # kinds that need more than one node


def schedule(seed, kinds, nodes, count=40):
    """`count` faults of 2-5 s, each after 1.5-3 s of calm (the first after 2-3 s). The first
    len(kinds) faults take each kind once, in a seeded order; then kinds at random. Times are
    relative to the end of the previous fault (a broker's restart takes what it takes), so a
    replay runs the same faults in the same order on the same nodes."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    faults = []
    for i in range(count if kinds else 0):
        kind = order[i] if i < len(order) else rng.choice(kinds)
        fault = {"gap": round(rng.uniform(2, 3) if i == 0 else rng.uniform(1.5, 3), 2), "kind": kind,
                 "length": round(rng.uniform(2, 5), 2)}
        if kind in ("kill", "pause", "delay", "duplicate", "duplicate-late", "reorder", "partition-node", "disk-full",
                    "power-loss"):
            fault["node"] = rng.randint(1, nodes)
        if kind == "partition-bridge":
            fault["node"] = rng.randint(1, nodes)  # the bridge
            others = [n for n in range(1, nodes + 1) if n != fault["node"]]
            rng.shuffle(others)
            fault["halves"] = [sorted(others[:len(others) // 2]), sorted(others[len(others) // 2:])]
        if kind == "delay":
            fault["delay_ms"] = rng.choice([50, 200, 1000, 4000])
            fault["jitter_ms"] = fault["delay_ms"] // 2
        if kind in ("duplicate", "duplicate-late"):
            fault["probability"] = rng.choice([0.1, 0.3, 0.6])
            fault["copy_delay_ms"] = rng.choice([100, 1000]) if kind == "duplicate-late" else 0
        if kind == "reorder":
            fault["window"] = rng.choice([2, 3, 5])
            fault["hold_ms"] = rng.choice([20, 100])
        faults.append(fault)
    return faults


class Nemesis(threading.Thread):
    def __init__(self, faults, cluster, proxy, history, deadline, min_faults):
        """Runs faults until `deadline` (an Event) is set and at least `min_faults` ran."""
        super().__init__(name="nemesis", daemon=True)
        self.faults, self.cluster, self.proxy, self.history = faults, cluster, proxy, history
        self.deadline, self.min_faults = deadline, min_faults
        self.injected = 0
        self.errors = []

    def _done(self):
        return self.deadline.is_set() and self.injected >= self.min_faults

    def check_exits(self):
        """Records in the history every node that exited without the nemesis asking."""
        for exit_ in self.cluster.check_exits():
            self.history.complete("nemesis", "info", "exit", exit_)

    def _sleep(self, seconds, whole=False):
        """Sleeps; False when the run ended meanwhile (whole: a fault's length, always slept)."""
        until = time.monotonic() + seconds
        while whole or not self._done():
            self.check_exits()
            left = until - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.1))
        return False

    def _act(self, f, value, action):
        self.history.invoke("nemesis", f, value)
        try:
            action()
            self.history.complete("nemesis", "ok", f, value)
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on and heals at the end
            self.errors.append(f"{f} {value}: {exc}")
            self.history.complete("nemesis", "info", f, dict(value, error=str(exc)[:200]))

    def run(self):
        for fault in self.faults:
            if not self._sleep(fault["gap"]):
                return
            kind = fault["kind"]
            node = fault.get("node")
            value = dict(fault)
            if kind in ("kill-controller", "partition-controller"):
                node = self.cluster.active_controller()
                value["controller_from"] = "quorum-state" if node else "unknown: node 1"
                node = node or 1
            value["node"] = node
            self.injected += 1
            self.cluster.fault, self.cluster.fault_node = kind, node
            if kind in ("kill", "kill-controller"):
                self._act(kind, value, lambda: self.cluster.kill(node))
                self._sleep(fault["length"], whole=True)
                self._act("restart", {"node": node}, lambda: self.cluster.restart(node))
            elif kind == "pause":
                self._act("pause", value, lambda: self.cluster.pause(node))
                self._sleep(fault["length"], whole=True)
                self._act("resume", {"node": node}, lambda: self.cluster.resume(node))
            elif kind == "delay":
                port = self.cluster.proxy_port(node)
                self._act("delay", value, lambda: self.proxy.set_delay(port, fault["delay_ms"], fault["jitter_ms"]))
                self._sleep(fault["length"], whole=True)
                self._act("undelay", {"node": node}, lambda: self.proxy.set_delay(port, 0))
            elif kind in ("duplicate", "duplicate-late"):
                port = self.cluster.proxy_port(node)
                before = self.proxy.stats()
                self._act(kind, value,
                          lambda: self.proxy.set_duplicate(port, fault["probability"], fault["copy_delay_ms"]))
                self._sleep(fault["length"], whole=True)
                self._act("unduplicate", {"node": node}, lambda: self.proxy.set_duplicate(port, 0))
                self._proxy_counts(before)
            elif kind == "reorder":
                port = self.cluster.proxy_port(node)
                before = self.proxy.stats()
                self._act("reorder", value, lambda: self.proxy.set_reorder(port, fault["window"], fault["hold_ms"]))
                self._sleep(fault["length"], whole=True)
                self._act("unreorder", {"node": node}, lambda: self.proxy.set_reorder(port, 0))
                self._proxy_counts(before)
            elif kind in PARTITIONS:
                network = self.cluster.network
                if kind == "partition-bridge":
                    groups = fault["halves"]
                else:
                    groups = [[node], [n for n in self.cluster.node_ids() if n != node]]
                value["groups"] = groups
                self._act(kind, value, lambda: network.partition(groups))
                self._sleep(fault["length"], whole=True)
                self._act("heal-partition", {"groups": groups}, network.heal)
            elif kind == "disk-full":
                disks = self.cluster.disks
                self._act("disk-full", value, lambda: value.update(filler_bytes=disks.fill(node)))
                self._sleep(fault["length"], whole=True)
                self.check_exits()
                self._act("disk-free", {"node": node}, lambda: disks.unfill(node))
                if not self.cluster.alive(node):
                    self._act("restart", {"node": node}, lambda: self.cluster.restart(node))
            elif kind == "power-loss":
                disks = self.cluster.disks

                def fail():
                    self.cluster.kill(node)
                    value["lazyfs"] = disks.power_fail(node)
                self._act("power-loss", value, fail)
                self._sleep(fault["length"], whole=True)
                self._act("restart", {"node": node}, lambda: self.cluster.restart(node))
            elif kind == "power-loss-all":
                disks = self.cluster.disks
                nodes = self.cluster.node_ids()

                def fail_all():
                    for n in nodes:
                        self.cluster.kill(n)
                    value["lazyfs"] = {n: disks.power_fail(n) for n in nodes}
                self._act("power-loss-all", value, fail_all)
                self._sleep(fault["length"], whole=True)
                self._act("restart", {"nodes": nodes}, lambda: self.cluster.restart_all(nodes))
            self.cluster.fault, self.cluster.fault_node = None, None

    def _proxy_counts(self, before):
        """Records what the proxy did during a request-level fault (copies sent, windows shuffled),
        so that a run shows the fault took effect."""
        after = self.proxy.stats()
        counts = {k: after[k] - before[k] for k in after if k != "copies_by_api" and after[k] != before[k]}
        copies = {api: n - before["copies_by_api"].get(api, 0) for api, n in after["copies_by_api"].items()
                  if n != before["copies_by_api"].get(api, 0)}
        if copies:
            counts["copies_by_api"] = copies
        self.history.complete("nemesis", "info", "proxy-counts", counts)

    def heal(self):
        self.check_exits()
        for node in self.cluster.node_ids():
            self.proxy.set_delay(self.cluster.proxy_port(node), 0)
            self.proxy.set_duplicate(self.cluster.proxy_port(node), 0)
            self.proxy.set_reorder(self.cluster.proxy_port(node), 0)
        if self.cluster.network:
            self.cluster.network.heal()
        if self.cluster.disks:
            self._act("heal-disks", {}, self.cluster.disks.ensure)
        self._act("heal", {}, self.cluster.heal)
