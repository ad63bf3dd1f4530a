"""Faults, scheduled from a seed (the same seed gives the same schedule: replayable).

kinds:
  kill             kill -9 of a broker, restarted (same data directory) after the fault's length
  kill-controller  the same, of the active controller of the metadata quorum (chosen when the
                   fault starts, from the nodes' quorum-state files)
  pause            SIGSTOP of a broker, SIGCONT after the fault's length
  delay            the proxy delays every request sent to one broker by 50 ms to 4 s (+ up to
                   50 % jitter), in order; longer than the clients' 5 s request timeout at the top
"""

import random
import threading
import time

KINDS = ["kill", "kill-controller", "pause", "delay"]


def schedule(seed, kinds, nodes, duration_s):
    """Faults of 2-5 s separated by 1.5-3 s of calm, from t=2-3 s until 2 s before the end.
    The first len(kinds) faults take each kind once, in a seeded order; then kinds at random."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    faults = []
    at = rng.uniform(2, 3)
    while kinds:
        length = rng.uniform(2, 5)
        if at + length > duration_s - 2:
            break
        kind = order[len(faults)] if len(faults) < len(order) else rng.choice(kinds)
        fault = {"at": round(at, 2), "kind": kind, "length": round(length, 2)}
        if kind in ("kill", "pause", "delay"):
            fault["node"] = rng.randint(1, nodes)
        if kind == "delay":
            fault["delay_ms"] = rng.choice([50, 200, 1000, 4000])
            fault["jitter_ms"] = fault["delay_ms"] // 2
        faults.append(fault)
        at += length + rng.uniform(1.5, 3)
    return faults


class Nemesis(threading.Thread):
    def __init__(self, faults, cluster, proxy, history, stop):
        super().__init__(name="nemesis", daemon=True)
        self.faults, self.cluster, self.proxy, self.history, self.stop_event = faults, cluster, proxy, history, stop
        self.injected = 0
        self.errors = []

    def _sleep_until(self, start, at):
        while not self.stop_event.is_set():
            left = start + at - time.monotonic()
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
        start = time.monotonic()
        for fault in self.faults:
            if not self._sleep_until(start, fault["at"]):
                return
            kind = fault["kind"]
            node = fault.get("node")
            if kind == "kill-controller":
                node = self.cluster.active_controller() or 1
            value = dict(fault, node=node)
            self.injected += 1
            if kind in ("kill", "kill-controller"):
                self._act(kind, value, lambda: self.cluster.kill(node))
                self._sleep_until(start, fault["at"] + fault["length"])
                self._act("restart", {"node": node}, lambda: self.cluster.restart(node))
            elif kind == "pause":
                self._act("pause", value, lambda: self.cluster.pause(node))
                self._sleep_until(start, fault["at"] + fault["length"])
                self._act("resume", {"node": node}, lambda: self.cluster.resume(node))
            elif kind == "delay":
                port = self.cluster.proxy_port(node)
                self._act("delay", value, lambda: self.proxy.set_delay(port, fault["delay_ms"], fault["jitter_ms"]))
                self._sleep_until(start, fault["at"] + fault["length"])
                self._act("undelay", {"node": node}, lambda: self.proxy.set_delay(port, 0))

    def heal(self):
        for node in self.cluster.node_ids():
            self.proxy.set_delay(self.cluster.proxy_port(node), 0)
        self._act("heal", {}, self.cluster.heal)
