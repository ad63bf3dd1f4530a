"""What the standalone probes (endtxn_copy.py, reorder_first.py) share: one broker (dlog or
Kafka) in a scratch directory, behind the chaos proxy, with the probe's topics created; stopped
and removed afterwards. Ports from CHAOS_BASE_PORT (each probe has its own default)."""

import contextlib
import os
import shutil
import tempfile

from confluent_kafka.admin import AdminClient, NewTopic

import cluster as clusters
import proxy as proxies


@contextlib.contextmanager
def one_broker(target, default_base_port, seed, topics, prefix="probe-"):
    """Yields (cluster, proxy, bootstrap); `topics`: [(name, partitions)], replication factor 1."""
    work = tempfile.mkdtemp(prefix=prefix)
    base = int(os.environ.get("CHAOS_BASE_PORT", str(default_base_port)))
    cluster = (clusters.DlogCluster if target == "dlog" else clusters.KafkaCluster)(1, work, base)
    proxy = proxies.Proxy(seed)
    proxy.listen(cluster.proxy_port(1), cluster.client_port(1))
    try:
        cluster.start()
        boot = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": boot})
        for future in admin.create_topics([NewTopic(name, n, 1) for name, n in topics]).values():
            future.result(60)
        yield cluster, proxy, boot
    finally:
        cluster.kill(1)
        proxy.close()
        shutil.rmtree(work, ignore_errors=True)
