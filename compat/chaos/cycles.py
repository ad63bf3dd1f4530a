"""Dependency cycles between transactions (Adya's G0 / G1c; Jepsen's Kafka checker, via Elle).

The checker (checker.py) hands over what it gathered from a history:
  writer_of  value -> node: the operation that wrote it (a send acknowledged, or indeterminate
             but read; a transaction committed, or visible to a read_committed reader)
  versions   (topic, partition) -> [(offset, value), ...]: the log's order, from producer
             acknowledgements and reads together
  reads      node -> [value, ...]: what a writing transaction read (consume-transform-produce
             sources)
A node is the index of the operation's completion event in the history.

Edges, as `jepsen.tests.kafka` infers them:
  ww  T1 -> T2 when T2 wrote a value at the next offset (in one partition) after a value T1 wrote
      (offsets holding no committed write, e.g. aborted records and markers, are skipped)
  wr  T1 -> T2 when T2 read a value T1 wrote
No rw (anti-dependency) edges: Jepsen's checker leaves its rw graph out too, and rw edges make
G-single/G2, not G1c. Readers that write nothing (polls) have no outgoing edge, so they cannot be
on a cycle and are not nodes.

A cycle of wr edges alone is G1c in the strict sense, circular information flow: each
transaction saw a committed write of the next. Kafka forbids it (a read_committed reader sees a
transaction's writes only after its commit, so T1 committed before T2 read and vice versa), and
the checker reports it as the anomaly `g1c`. Cycles that need ww edges (G0, write cycles, and
G1c with ww edges) are what Kafka's transactions allow: two transactions that interleave their
writes to two partitions order differently in each, and Jepsen lists them as allowed for Kafka
(its `--no-ww-deps` flag exists to hunt the pure wr cycles). They are counted and shown
(`ww_cycles` in the stats, `cycles` in the result), not failed on.

Cost: building the graph is linear in the history; Tarjan's SCC is linear in the graph; each
strongly connected component gets one breadth-first search (a shortest cycle through its first
node), linear in the component.
"""

from collections import defaultdict, deque


def build(writer_of, versions, reads):
    """Returns (adjacency over every edge, adjacency over wr edges); adjacency: u -> {v: label}."""
    every = defaultdict(dict)
    wr = defaultdict(dict)
    for (topic, partition), entries in versions.items():
        by_offset = defaultdict(set)
        for offset, value in entries:
            if value in writer_of:
                by_offset[offset].add(value)
        previous = []  # (offset, value, writer) of the last offset holding committed writes
        for offset in sorted(by_offset):
            current = [(offset, v, writer_of[v]) for v in sorted(by_offset[offset], key=str)]
            for o1, v1, w1 in previous:
                for o2, v2, w2 in current:
                    if w1 != w2 and w2 not in every[w1]:
                        every[w1][w2] = {"type": "ww", "topic": topic, "partition": partition,
                                         "offset": o1, "value": v1, "offset2": o2, "value2": v2}
            previous = current
    for reader, values in reads.items():
        for value in values:
            writer = writer_of.get(value)
            if writer is None or writer == reader:
                continue
            label = {"type": "wr", "value": value}
            wr[writer][reader] = label
            if every[writer].get(reader, {}).get("type") != "wr":
                every[writer][reader] = label  # the wr reason explains the pair best
    return every, wr


def components(adjacency):
    """Tarjan's strongly connected components (iterative: no recursion limit), those of 2+ nodes."""
    index_of, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in list(adjacency):
        if root in index_of:
            continue
        work = [(root, iter(adjacency.get(root, ())))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(adjacency.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cycle_in(adjacency, component):
    """A shortest cycle through the component's first node, [n0, n1, ..., n0]: one breadth-first
    search from it inside the component; the first node reached with an edge back closes it."""
    allowed = set(component)
    start = component[0]
    parent = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        children = adjacency.get(node, {})
        if start in children:
            path = [node]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            return path[::-1] + [start]
        for child in children:
            if child in allowed and child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError("a strongly connected component without a cycle")


def find(writer_of, versions, reads):
    """Returns (g1c cycles, ww cycles): each a list of steps [(from, to, label), ...]."""
    every, wr = build(writer_of, versions, reads)
    g1c = []
    for component in components(wr):
        cycle = cycle_in(wr, component)
        g1c.append([(a, b, wr[a][b]) for a, b in zip(cycle, cycle[1:])])
    ww = []
    for component in components(every):
        cycle = cycle_in(every, component)
        steps = [(a, b, every[a][b]) for a, b in zip(cycle, cycle[1:])]
        if any(label["type"] == "ww" for _a, _b, label in steps):
            ww.append(steps)
    return g1c, ww


def describe(steps, name):
    """Readable: 'T1 (op 12, txn-0) wrote 5 at t/0 offset 3, before T2 (op 40) wrote 9 at offset 4; ...'."""
    parts = []
    for a, b, label in steps:
        if label["type"] == "wr":
            parts.append(f"{name(a)} wrote {label['value']}, which {name(b)} read (wr)")
        else:
            parts.append(f"{name(a)} wrote {label['value']} at {label['topic']}/{label['partition']} offset "
                         f"{label['offset']}, before {name(b)} wrote {label['value2']} at offset {label['offset2']} (ww)")
    return "; ".join(parts)
