"""Network partitions between the nodes of a cluster: one network namespace per node, joined by
veth pairs to one bridge in the root namespace. A cut between two nodes a and b is a pair of
permanent neighbour (ARP) entries: in a's namespace b's address resolves to a MAC address no
interface has, and the other way round, so every frame either sends to the other is dropped by
the bridge's peers. The drop is silent, as packet loss on a real network: a connect() hangs until
its timeout and an established connection stalls (no reset, no error). Why not blackhole routes:
they fail a local connect() at once with EINVAL, which no real partition does; why not tc or
iptables: this kernel has no prio/u32 qdisc modules and iptables is not installed.

  root namespace:   bridge chb<base> 10.213.K.1/24  (the proxy and the clients live here)
                     |-- veth chv<base>n1 <-> eth0 10.213.K.11 in namespace chaos-<base>-n1
                     |-- veth chv<base>n2 <-> eth0 10.213.K.12 in namespace chaos-<base>-n2
                     ...
K = (base port / 100) mod 256, so concurrent invocations with different CHAOS_BASE_PORT values do
not share a subnet or a name. Only iproute2 is needed. The proxy (root namespace) reaches every
node whatever is cut: only node-to-node neighbour entries are poisoned.

Names: namespaces chaos-<base>-n<i>, links chv<base>n<i> and chb<base>; cleanup() removes every
leftover of this base (a crashed earlier run), setup() calls it first.
"""

import subprocess


def _ip(*args, check=True):
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class Network:
    DEAD_MAC = "02:00:00:00:de:ad"  # no interface has it: frames sent to it are dropped

    def __init__(self, base_port, nodes):
        self.base = int(base_port)
        self.nodes = nodes
        self.subnet = f"10.213.{(self.base // 100) % 256}"
        self.host_ip = f"{self.subnet}.1"
        self.bridge = f"chb{self.base}"
        self.cuts = set()  # frozenset({a, b}) of nodes that cannot reach each other
        self.up = False

    def namespace(self, node):
        return f"chaos-{self.base}-n{node}"

    def address(self, node):
        return f"{self.subnet}.{10 + node}"

    def _veth(self, node):
        return f"chv{self.base}n{node}"

    def exec_prefix(self, node):
        """argv prefix that runs a command inside the node's namespace."""
        return ["ip", "netns", "exec", self.namespace(node)]

    def cleanup(self):
        prefix = f"chaos-{self.base}-"
        for line in _ip("netns", "list", check=False).splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(prefix):
                _ip("netns", "delete", name, check=False)
        for line in _ip("-o", "link", "show", check=False).splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if name.startswith(f"chv{self.base}n") or name == self.bridge:
                    _ip("link", "delete", name, check=False)
        self.cuts.clear()
        self.up = False

    def setup(self):
        self.cleanup()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for node in range(1, self.nodes + 1):
                ns, veth, peer = self.namespace(node), self._veth(node), f"chp{self.base}n{node}"
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
                _ip("link", "set", peer, "netns", ns)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", peer, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{self.address(node)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
            self.up = True
        except Exception:
            self.cleanup()
            raise

    def cut(self, a, b):
        """Drops traffic between nodes a and b, both ways."""
        if a == b or frozenset((a, b)) in self.cuts:
            return
        for x, y in ((a, b), (b, a)):
            _ip("-n", self.namespace(x), "neigh", "replace", self.address(y), "lladdr", self.DEAD_MAC, "dev", "eth0",
                "nud", "permanent")
        self.cuts.add(frozenset((a, b)))

    def partition(self, groups):
        """Cuts every pair of nodes that are in different groups (a node in no group keeps its
        links: a "bridge" between the groups)."""
        for i, left in enumerate(groups):
            for right in groups[i + 1:]:
                for a in left:
                    for b in right:
                        self.cut(a, b)

    def heal(self):
        for pair in list(self.cuts):
            a, b = sorted(pair)
            for x, y in ((a, b), (b, a)):
                _ip("-n", self.namespace(x), "neigh", "del", self.address(y), "dev", "eth0", check=False)
            self.cuts.discard(pair)
