"""A TCP proxy between clients and brokers that delays, duplicates and reorders requests.

Each broker advertises the proxy's address (advertised.listeners), so every client connection
after the bootstrap goes through it too. One asyncio loop in a background thread serves all
listeners. The proxy reads Kafka frames in both directions (a 4-byte big-endian size, then the
frame; a request starts with api_key, api_version and correlation_id, a response with the
correlation_id), so it can act on whole requests. A frame larger than MAX_FRAME_BYTES (or of a
negative size) closes the connection, as a broker does.

Faults, per broker (its listen port), on every connection to it:
  delay      every request forwarded `delay_ms` (plus a seeded jitter) later than it arrived, in
             order: requests such as Produce or EndTxn reach the broker late, after the client
             may have timed out and retried. Responses are forwarded at once.
  duplicate  with probability p (seeded), a request of DUPLICATED_APIS is sent twice: the
             original, then a copy under a correlation id the proxy picks, right behind it or
             `copy_delay_ms` later (the late retry a network duplicated). The broker's answer to
             the copy is dropped: the client sees one answer per request.
  reorder    requests are held in a window of `window` requests (released when it is full, or
             `hold_ms` after the first one arrived, so a lone request is not held for ever) and
             sent in a seeded shuffled order. Clients expect answers in request order (the Java
             client strictly), so the proxy puts the answers back in the order of the requests
             before passing them on.
Answers always reach the client in the order of its requests (a broker answers in order; the
proxy restores it after a reorder); an answer with a correlation id the proxy does not wait for
is passed on as it comes.
"""

import asyncio
import collections
import random
import struct
import threading
import time

# A frame above this closes the connection (Kafka's socket.request.max.bytes is 100 MiB).
MAX_FRAME_BYTES = 100 * 1024 * 1024
# Requests read from a client and not yet written to its broker (delays, reorder windows): the
# client's reads wait above this (TCP back-pressure), so a delayed connection holds at most this.
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# Requests a connection waits answers for; a client with more in flight is cut off (librdkafka and
# the Java client keep at most a handful).
MAX_PENDING_REQUESTS = 1024
# Correlation ids of the copies: from the top of the int32 range, where clients (counting up from
# 0 on each connection) do not get within a run.
COPY_ID_BASE = 0x7FF00000

PRODUCE, INIT_PRODUCER_ID = 0, 22
# Requests a duplicate fault copies: every request a client may retry after a timeout and that the
# broker must treat idempotently (produce sequences, transaction state, offsets, reads). Not
# InitProducerId (a second one bumps the epoch by design and fences the first answer's producer),
# JoinGroup/SyncGroup/LeaveGroup (a second join is a new member) or the handshake.
DUPLICATED_APIS = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 12: "Heartbeat", 24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn",
    28: "TxnOffsetCommit", 68: "ConsumerGroupHeartbeat",
}


def _read_uvarint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def expects_response(frame):
    """False for a Produce with acks=0 (the broker sends no answer), True otherwise."""
    api_key, api_version = struct.unpack_from(">hh", frame, 0)
    if api_key != PRODUCE:
        return True
    try:
        pos = 8
        (client_id_len,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + max(client_id_len, 0)
        flexible = api_version >= 9
        if flexible:  # request header v2: tagged fields
            count, pos = _read_uvarint(frame, pos)
            for _ in range(count):
                _tag, pos = _read_uvarint(frame, pos)
                size, pos = _read_uvarint(frame, pos)
                pos += size
        if api_version >= 3:  # transactional_id
            if flexible:
                length, pos = _read_uvarint(frame, pos)
                pos += max(length - 1, 0)
            else:
                (length,) = struct.unpack_from(">h", frame, pos)
                pos += 2 + max(length, 0)
        (acks,) = struct.unpack_from(">h", frame, pos)
        return acks != 0
    except (struct.error, IndexError):
        return True  # malformed: the broker will answer it or close the connection


async def read_frame(reader):
    """One frame (without its size), or None at the end of the stream. ValueError: bad size."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


class Proxy:
    def __init__(self, seed=0):
        self.delays = {}  # listen port -> (delay_ms, jitter_ms)
        self.duplicates = {}  # listen port -> (probability, copy_delay_ms)
        self.reorders = {}  # listen port -> (window, hold_ms)
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._servers = []
        self._writers = set()
        self.connections = 0
        self.delayed_requests = 0
        self.copies_sent = 0
        self.copies_by_api = collections.Counter()  # API name -> copies sent
        self.request_versions = collections.Counter()  # (api_key, api_version) -> requests seen
        self.copy_answers_dropped = 0
        self.reordered_windows = 0  # windows released in another order than they arrived
        self.answers_held = 0  # answers that came before an earlier request's, held back
        self.closed_bad_frames = 0
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._thread.start()

    def listen(self, listen_port, target_port, host="127.0.0.1", target_host="127.0.0.1"):
        async def start():
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, target_host, listen_port, target_port), host, listen_port,
                reuse_address=True)
            self._servers.append(server)
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    def set_delay(self, listen_port, delay_ms, jitter_ms=0):
        """Delays what clients send to the broker behind `listen_port` (0: no delay)."""
        self.delays[listen_port] = (delay_ms, jitter_ms)

    def set_duplicate(self, listen_port, probability, copy_delay_ms=0):
        """Sends requests to the broker behind `listen_port` twice with `probability` (0: never)."""
        self.duplicates[listen_port] = (probability, copy_delay_ms)

    def set_reorder(self, listen_port, window, hold_ms=50):
        """Shuffles requests to the broker behind `listen_port` in windows of `window` (0: off)."""
        self.reorders[listen_port] = (window, hold_ms)

    def stats(self):
        return {"connections": self.connections, "delayed_requests": self.delayed_requests,
                "copies_sent": self.copies_sent, "copy_answers_dropped": self.copy_answers_dropped,
                "reordered_windows": self.reordered_windows, "answers_held": self.answers_held,
                "closed_bad_frames": self.closed_bad_frames, "copies_by_api": dict(self.copies_by_api)}

    async def _serve(self, client_reader, client_writer, host, listen_port, target_port):
        try:
            broker_reader, broker_writer = await asyncio.open_connection(host, target_port)
        except OSError:
            client_writer.close()
            return
        self.connections += 1
        self._writers.update((client_writer, broker_writer))
        queue = asyncio.Queue()  # (due, frame); bounded by `queued` bytes below
        queued = [0]
        pending = collections.deque()  # correlation ids awaiting an answer, in request order
        waiting = set(pending)
        held_answers = {}  # correlation id -> answer frame that came before an earlier one's
        copies = set()  # correlation ids of the proxy's copies
        next_copy = [COPY_ID_BASE]
        window = []  # reorder: requests held, and when the first came
        window_since = [0.0]
        last_due = [0.0]

        def size_frame(frame):
            return struct.pack(">i", len(frame)) + frame

        async def enqueue(due, frame):
            while queued[0] > MAX_QUEUED_BYTES:
                await asyncio.sleep(0.01)
            queued[0] += len(frame)
            last_due[0] = max(last_due[0], due)
            await queue.put((last_due[0], frame))

        async def release_window(shuffle):
            if not window:
                return
            frames = list(window)
            window.clear()
            if shuffle and len(frames) > 1:
                order = list(range(len(frames)))
                self._random.shuffle(order)
                if order != sorted(order):
                    self.reordered_windows += 1
                frames = [frames[i] for i in order]
            for frame in frames:
                await enqueue(time.monotonic(), frame)

        window_filled = asyncio.Event()

        async def window_timer():
            # Releases a reorder window whose first request waited `hold_ms` (a client waiting for
            # its only request's answer sends no more), and one left when the fault ends.
            while True:
                await window_filled.wait()
                window_filled.clear()
                size, hold_ms = self.reorders.get(listen_port, (0, 0))
                await asyncio.sleep(hold_ms / 1000.0)
                if window and time.monotonic() - window_since[0] >= hold_ms / 1000.0 - 0.001:
                    await release_window(shuffle=bool(size))
                elif window:
                    window_filled.set()  # a newer window: its own wait

        def send_copy(frame):
            copy_id = next_copy[0]
            next_copy[0] = COPY_ID_BASE + (next_copy[0] - COPY_ID_BASE + 1) % 0xFFFFF
            if expects_response(frame):  # else no answer comes to drop, and the id is not kept
                copies.add(copy_id)
            self.copies_sent += 1
            return frame[:4] + struct.pack(">i", copy_id) + frame[8:]

        async def late_copy(copy, delay_s):
            await asyncio.sleep(delay_s)
            if not broker_writer.is_closing():
                broker_writer.write(size_frame(copy))

        async def read_client():
            try:
                while True:
                    frame = await read_frame(client_reader)
                    if frame is None or len(frame) < 8:
                        break
                    (correlation_id,) = struct.unpack_from(">i", frame, 4)
                    self.request_versions[struct.unpack_from(">hh", frame, 0)] += 1
                    if expects_response(frame):
                        if len(pending) >= MAX_PENDING_REQUESTS:
                            break
                        pending.append(correlation_id)
                        waiting.add(correlation_id)
                    due = time.monotonic()
                    delay_ms, jitter_ms = self.delays.get(listen_port, (0, 0))
                    if delay_ms:
                        jitter = self._random.uniform(0, jitter_ms) if jitter_ms else 0
                        due += (delay_ms + jitter) / 1000.0
                        self.delayed_requests += 1
                    outgoing = [frame]
                    probability, copy_delay_ms = self.duplicates.get(listen_port, (0, 0))
                    api_key = struct.unpack_from(">h", frame, 0)[0]
                    if probability and api_key in DUPLICATED_APIS and self._random.random() < probability:
                        copy = send_copy(frame)
                        self.copies_by_api[DUPLICATED_APIS[api_key]] += 1
                        if copy_delay_ms:
                            asyncio.ensure_future(late_copy(copy, self._random.uniform(0, copy_delay_ms) / 1000.0))
                        else:
                            outgoing.append(copy)  # right behind the original
                    size, _hold_ms = self.reorders.get(listen_port, (0, 0))
                    for request in outgoing:
                        if size:
                            if not window:
                                window_since[0] = time.monotonic()
                                window_filled.set()
                            window.append(request)
                            if len(window) >= size:
                                await release_window(shuffle=True)
                        else:
                            await release_window(shuffle=False)  # what a fault that just ended held
                            await enqueue(due, request)
            except ValueError:
                self.closed_bad_frames += 1
            except (OSError, asyncio.IncompleteReadError):
                pass
            await release_window(shuffle=False)
            await queue.put((0, None))

        async def write_broker():
            try:
                while True:
                    due, frame = await queue.get()
                    if frame is None:
                        break
                    queued[0] -= len(frame)
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    broker_writer.write(size_frame(frame))
                    await broker_writer.drain()
            except OSError:
                pass
            broker_writer.close()

        async def read_broker():
            try:
                while True:
                    frame = await read_frame(broker_reader)
                    if frame is None or len(frame) < 4:
                        break
                    (correlation_id,) = struct.unpack_from(">i", frame, 0)
                    if correlation_id in copies:
                        copies.discard(correlation_id)
                        self.copy_answers_dropped += 1
                        continue
                    if correlation_id not in waiting:
                        client_writer.write(size_frame(frame))  # not ours to order
                    elif pending and pending[0] != correlation_id:
                        held_answers[correlation_id] = frame
                        self.answers_held += 1
                    else:
                        pending.popleft()
                        waiting.discard(correlation_id)
                        client_writer.write(size_frame(frame))
                        # Answers of later requests that came first, now in their turn.
                        while pending and pending[0] in held_answers:
                            waiting.discard(pending[0])
                            client_writer.write(size_frame(held_answers.pop(pending.popleft())))
                    await client_writer.drain()
            except ValueError:
                self.closed_bad_frames += 1
            except OSError:
                pass
            client_writer.close()

        timer = asyncio.ensure_future(window_timer())
        tasks = [asyncio.ensure_future(t()) for t in (read_client, write_broker, read_broker)]
        # A client that hangs up still has its delayed requests delivered (write_broker drains
        # the queue first): the late request a timed-out client no longer waits for.
        await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_writer, broker_writer):
            writer.close()
        await asyncio.wait(tasks, timeout=5)
        for task in tasks + [timer]:
            task.cancel()
        self._writers.discard(client_writer)
        self._writers.discard(broker_writer)

    def drop_connections(self):
        """Closes every proxied connection (clients reconnect)."""
        def close_all():
            for writer in list(self._writers):
                writer.close()
        self._loop.call_soon_threadsafe(close_all)

    def close(self):
        async def stop():
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.close()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
