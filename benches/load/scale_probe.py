#!/usr/bin/env python3
"""Client side of the scale bench (benches/load/scale.sh): many topics, many connections.

  scale_probe.py create BOOTSTRAP PREFIX TOPICS PARTITIONS
      creates TOPICS topics PREFIX-0000… of PARTITIONS partitions each (100 per CreateTopics
      request, as an operator's script would) and waits until every partition has a leader;
      prints create_s=… (requests answered) ready_s=… (all leaders in the metadata).
  scale_probe.py ready BOOTSTRAP PARTITIONS TIMEOUT_S
      waits until the metadata lists at least PARTITIONS partitions, each with a leader;
      prints ready_s=… (from the call) or exits 1 at the timeout.
  scale_probe.py metadata BOOTSTRAP RUNS
      times RUNS full Metadata requests (every topic); prints metadata_ms_median=… partitions=….
  scale_probe.py connections HOST PORT COUNT
      opens COUNT TCP connections, each sending one ApiVersions v0 request and reading its
      answer (a client that connected and went idle), as fast as the broker accepts them (at
      most 200 connects in flight); prints open_s=… accept_per_s=… failed=…, then holds them
      open until its standard input closes.
"""

import asyncio
import statistics
import struct
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

CREATE_BATCH_TOPICS = 100
CONNECTS_IN_FLIGHT_MAX = 200


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 60000})


def leaders_ready(client, partitions_min):
    metadata = client.list_topics(timeout=60)
    count = 0
    for topic in metadata.topics.values():
        if topic.error is not None:
            return False
        for partition in topic.partitions.values():
            if partition.leader < 0:
                return False
            count += 1
    return count >= partitions_min


def wait_ready(client, partitions_min, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if leaders_ready(client, partitions_min):
                return True
        except KafkaException:
            pass
        time.sleep(0.2)
    return False


def create(bootstrap, prefix, topics, partitions):
    client = admin(bootstrap)
    names = [f"{prefix}-{i:04d}" for i in range(topics)]
    started = time.monotonic()
    for first in range(0, len(names), CREATE_BATCH_TOPICS):
        batch = [NewTopic(n, partitions, 1) for n in names[first:first + CREATE_BATCH_TOPICS]]
        for name, future in client.create_topics(batch, operation_timeout=120, request_timeout=180).items():
            try:
                future.result(300)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
    created_s = time.monotonic() - started
    if not wait_ready(client, topics * partitions, 600):
        sys.exit("partitions without a leader after 600 s")
    print(f"create_s={created_s:.2f} ready_s={time.monotonic() - started:.2f}")


def ready(bootstrap, partitions, timeout_s):
    started = time.monotonic()
    if not wait_ready(admin(bootstrap), partitions, timeout_s):
        sys.exit(f"not ready after {timeout_s} s")
    print(f"ready_s={time.monotonic() - started:.2f}")


def metadata(bootstrap, runs):
    client = admin(bootstrap)
    timings_ms = []
    count = 0
    for _ in range(runs):
        started = time.monotonic()
        result = client.list_topics(timeout=60)
        timings_ms.append((time.monotonic() - started) * 1000)
        count = sum(len(t.partitions) for t in result.topics.values())
    print(f"metadata_ms_median={statistics.median(timings_ms):.1f} partitions={count}")


# ApiVersions v0: header v1 (api key 18, version 0, correlation id, client id), empty body.
CLIENT_ID = b"scale-probe"
API_VERSIONS_V0 = struct.pack(">hhih", 18, 0, 1, len(CLIENT_ID)) + CLIENT_ID
API_VERSIONS_FRAME = struct.pack(">i", len(API_VERSIONS_V0)) + API_VERSIONS_V0
RESPONSE_BYTES_MAX = 1 << 20


async def open_one(host, port, gate, held):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
            writer.write(API_VERSIONS_FRAME)
            size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 30))[0]
            if not 0 < size <= RESPONSE_BYTES_MAX:
                raise ValueError(f"response size {size}")
            await asyncio.wait_for(reader.readexactly(size), 30)
            held.append(writer)
            return True
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            return False


async def connections(host, port, count):
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT_MAX)
    held = []
    started = time.monotonic()
    results = await asyncio.gather(*(open_one(host, port, gate, held) for _ in range(count)))
    open_s = time.monotonic() - started
    opened = sum(results)
    print(f"open_s={open_s:.2f} accept_per_s={opened / open_s:.0f} opened={opened} failed={count - opened}",
          flush=True)
    # Hold them until told to stop (the caller measures the broker's memory meanwhile).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for writer in held:
        writer.close()


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "create":
        create(args[0], args[1], int(args[2]), int(args[3]))
    elif command == "ready":
        ready(args[0], int(args[1]), float(args[2]))
    elif command == "metadata":
        metadata(args[0], int(args[1]))
    elif command == "connections":
        asyncio.run(connections(args[0], int(args[1]), int(args[2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
