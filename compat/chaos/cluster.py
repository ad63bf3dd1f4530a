"""Start, stop, kill, pause and restart the brokers under test: dlog (1 or 3 combined
broker+controller nodes, the flags of compat/cluster/run.sh) or Apache Kafka 4.x in KRaft mode
(same shape). Every node advertises the chaos proxy's address, so that clients reach it through
the proxy (proxy.py).

Ports, from a base B (node i = 1..n): client B+10i, controller B+10i+1, inter-broker B+10i+2
(with a network, below), proxy B+10i+3.

With a `network` (netns.Network, for the partition nemeses) each node runs in its own network
namespace at its own address: it listens there for clients (PLAINTEXT, advertised as the proxy's
127.0.0.1 port), for the other brokers (INTERNAL, `inter.broker.listener.name`, advertised as the
node's own address: replication, forwarding and transaction markers go node to node) and for the
quorum (CONTROLLER, the voters' addresses): every kind of node-to-node traffic crosses a cut.
Without one, every node listens on 127.0.0.1 and inter-broker traffic uses the advertised
(proxy) address, as before.
"""

import json
import os
import signal
import socket
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Cluster:
    """What both targets share: the processes, their signals and the port layout."""

    kind = "?"

    def __init__(self, nodes, work_dir, base_port, network=None):
        self.nodes = nodes
        self.work_dir = work_dir
        self.base_port = base_port
        self.network = network
        self.disks = None  # disks.Disks, for the disk nemeses (data directories on tmpfs / LazyFS)
        self.procs = {}
        self.paused = set()
        self.down = set()  # nodes the nemesis stopped on purpose (kill, power loss)
        self.exits = []  # {"node", "code", "during"}: exits nobody asked for
        self.fault = None  # the fault in progress (set by the nemesis), recorded with an exit
        self.fault_node = None
        self.node_sets = {}  # node -> ["key=value", ...] for that node only (broker.rack)
        os.makedirs(work_dir, exist_ok=True)

    def host(self, node):
        """The address the node listens on (its namespace's, with a network)."""
        return self.network.address(node) if self.network else "127.0.0.1"

    def internal_port(self, node):
        return self.base_port + 10 * node + 2

    def client_port(self, node):
        return self.base_port + 10 * node

    def controller_port(self, node):
        return self.base_port + 10 * node + 1

    def proxy_port(self, node):
        return self.base_port + 10 * node + 3

    def node_ids(self):
        return list(range(1, self.nodes + 1))

    def bootstrap(self):
        return ",".join(f"127.0.0.1:{self.proxy_port(i)}" for i in self.node_ids())

    def voters(self):
        return ",".join(f"{i}@{self.host(i)}:{self.controller_port(i)}" for i in self.node_ids())

    def log_path(self, node):
        return os.path.join(self.work_dir, f"node{node}.log")

    def _spawn(self, node, argv, env=None):
        log = open(self.log_path(node), "ab")
        shown = [a if len(a) < 200 else a[:60] + "..." for a in argv]
        log.write(f"=== start {time.strftime('%H:%M:%S')}: {' '.join(shown)}\n".encode())
        log.flush()
        if self.network:
            argv = self.network.exec_prefix(node) + argv
        self.down.discard(node)
        self.procs[node] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
        log.close()

    def wait_port(self, node, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(node)
            if proc is None or proc.poll() is not None:
                self.down.add(node)  # reported by the caller (a failed start), not as a crash
                raise RuntimeError(f"{self.kind} node {node} exited during start; see {self.log_path(node)}")
            if port_open(self.client_port(node), self.host(node)):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} node {node} did not listen within {timeout}s")

    def start(self):
        for node in self.node_ids():
            self.start_node(node)
        for node in self.node_ids():
            self.wait_port(node)

    def alive(self, node):
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def check_exits(self):
        """Records (once) every node that exited while nobody stopped it; returns the new ones."""
        new = []
        for node, proc in self.procs.items():
            code = proc.poll()
            if code is not None and node not in self.down:
                self.down.add(node)
                new.append({"node": node, "code": code, "during": self.fault,
                            "fault_node": self.fault_node})
        self.exits += new
        return new

    def kill(self, node):
        self.check_exits()
        self.down.add(node)
        proc = self.procs.get(node)
        if proc and proc.poll() is None:
            if node in self.paused:
                self.resume(node)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def restart(self, node):
        self.start_node(node)
        self.wait_port(node)

    def restart_all(self, nodes):
        """Starts the nodes together (a quorum that lost every member needs a majority back)."""
        for node in nodes:
            self.start_node(node)
        for node in nodes:
            self.wait_port(node)

    def pause(self, node):
        proc = self.procs.get(node)
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)
            self.paused.add(node)

    def resume(self, node):
        proc = self.procs.get(node)
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
        self.paused.discard(node)

    def heal(self):
        """Every node running and not paused."""
        for node in self.node_ids():
            if node in self.paused:
                self.resume(node)
        dead = [node for node in self.node_ids() if not self.alive(node)]
        if dead:
            self.restart_all(dead)

    def stop(self):
        self.check_exits()
        self.down.update(self.node_ids())
        for node in self.node_ids():
            self.resume(node)
            proc = self.procs.get(node)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for node in self.node_ids():
            proc = self.procs.get(node)
            if proc:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)

    def quorum_state_path(self, node):
        raise NotImplementedError

    def active_controller(self):
        """The leader of the metadata quorum, from the nodes' `quorum-state` files (Kafka's JSON,
        which dlog writes too): the leader id of the highest epoch any node has recorded."""
        if self.nodes == 1:
            return 1
        best = (-1, None)
        for node in self.node_ids():
            try:
                with open(self.quorum_state_path(node), encoding="utf-8") as handle:
                    state = json.load(handle)
            except (OSError, ValueError):
                continue
            epoch, leader = state.get("leaderEpoch", -1), state.get("leaderId", -1)
            if leader is not None and leader >= 1 and epoch > best[0]:
                best = (epoch, leader)
        return best[1]


class DlogCluster(Cluster):
    kind = "dlog"

    def __init__(self, nodes, work_dir, base_port, binary=None, extra_sets=(), network=None):
        super().__init__(nodes, work_dir, base_port, network)
        self.binary = binary or os.environ.get("DLOG_BIN") or os.path.join(ROOT, "target", "release", "dlog")
        self.extra_sets = list(extra_sets)

    def data_dir(self, node):
        if self.disks:
            return os.path.join(self.disks.root(node), "data")
        return os.path.join(self.work_dir, f"node{node}")

    def quorum_state_path(self, node):
        return os.path.join(self.data_dir(node), "__cluster_metadata-0", "quorum-state")

    def start_node(self, node):
        host = self.host(node)
        argv = [self.binary, "--node-id", str(node), "--listen", f"{host}:{self.client_port(node)}",
                "--data-dir", self.data_dir(node), "--set", "group.initial.rebalance.delay.ms=0"]
        if self.network:
            internal = f"INTERNAL://{host}:{self.internal_port(node)}"
            argv += ["--set", f"listeners=PLAINTEXT://{host}:{self.client_port(node)},{internal}",
                     "--set", f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.proxy_port(node)},{internal}",
                     "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,"
                              "CONTROLLER:PLAINTEXT",
                     "--set", "inter.broker.listener.name=INTERNAL"]
        else:
            argv += ["--set", f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.proxy_port(node)}"]
        if self.nodes > 1:
            argv += ["--controller-listen", f"{host}:{self.controller_port(node)}",
                     "--controller-quorum-voters", self.voters()]
        for item in self.extra_sets + self.node_sets.get(node, []):
            argv += ["--set", item]
        self._spawn(node, argv)


class KafkaCluster(Cluster):
    kind = "kafka"

    def __init__(self, nodes, work_dir, base_port, extra_sets=(), network=None):
        super().__init__(nodes, work_dir, base_port, network)
        lib = os.environ.get("KAFKA_LIB") or os.path.join(ROOT, "compat", "kafka", "lib")
        with open(os.path.join(lib, "classpath.txt"), encoding="utf-8") as handle:
            self.classpath = handle.read().strip()
        self.log4j = os.path.join(ROOT, "compat", "kafka", "log4j2.xml")
        self.extra_sets = list(extra_sets)
        self.formatted = False

    def data_dir(self, node):
        if self.disks:
            return os.path.join(self.disks.root(node), "kraft-logs")
        return os.path.join(self.work_dir, f"node{node}", "kraft-logs")

    def properties_path(self, node):
        return os.path.join(self.work_dir, f"node{node}", "server.properties")

    def quorum_state_path(self, node):
        return os.path.join(self.data_dir(node), "__cluster_metadata-0", "quorum-state")

    def _java(self, *args):
        """A short-lived tool JVM (storage format)."""
        return ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.log4j}",
                "-cp", self.classpath, *args]

    def _write_properties(self, node):
        rf = min(self.nodes, 3)  # internal topics replicated like the workload's (run.py)
        lines = [
            "process.roles=broker,controller", f"node.id={node}",
            f"controller.quorum.voters={self.voters()}",
        ] + self._listener_lines(node) + [
            f"log.dirs={self.data_dir(node)}", "num.partitions=1", f"default.replication.factor={rf}",
            "min.insync.replicas=1", "auto.create.topics.enable=true",
            f"offsets.topic.replication.factor={rf}", f"transaction.state.log.replication.factor={rf}",
            "transaction.state.log.min.isr=1", f"share.coordinator.state.topic.replication.factor={rf}",
            "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2", "num.io.threads=4", "num.recovery.threads.per.data.dir=1",
        ] + self.extra_sets + self.node_sets.get(node, [])
        os.makedirs(os.path.dirname(self.properties_path(node)), exist_ok=True)
        with open(self.properties_path(node), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")

    def _listener_lines(self, node):
        host = self.host(node)
        if not self.network:
            return [f"listeners=PLAINTEXT://{host}:{self.client_port(node)},CONTROLLER://{host}:{self.controller_port(node)}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.proxy_port(node)}",
                    "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"]
        internal = f"INTERNAL://{host}:{self.internal_port(node)}"
        return [f"listeners=PLAINTEXT://{host}:{self.client_port(node)},{internal},"
                f"CONTROLLER://{host}:{self.controller_port(node)}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.proxy_port(node)},{internal}",
                "controller.listener.names=CONTROLLER", "inter.broker.listener.name=INTERNAL",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"]

    def start(self):
        if not self.formatted:
            cluster_id = subprocess.run(self._java("kafka.tools.StorageTool", "random-uuid"),
                                        capture_output=True, text=True, timeout=120, check=True).stdout.split()[-1]
            for node in self.node_ids():
                self._write_properties(node)
                subprocess.run(self._java("kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cluster_id,
                                          "-c", self.properties_path(node)),
                               capture_output=True, timeout=120, check=True)
            self.formatted = True
        super().start()

    def start_node(self, node):
        heap = os.environ.get("CHAOS_KAFKA_HEAP", "512m")
        # C1 only: a restart after kill -9 is CPU-bound on these 2 shared cores (the workload is small)
        argv = ["java", f"-Xmx{heap}", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.log4j}",
                "-cp", self.classpath, "kafka.Kafka", self.properties_path(node)]
        self._spawn(node, argv)


def make(target, nodes, work_dir, base_port, extra_sets=(), network=None):
    if target == "dlog":
        return DlogCluster(nodes, work_dir, base_port, extra_sets=extra_sets, network=network)
    if target == "kafka":
        return KafkaCluster(nodes, work_dir, base_port, extra_sets=extra_sets, network=network)
    raise ValueError(f"unknown target {target}")
