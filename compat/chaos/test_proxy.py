"""The proxy's request-level faults against a stand-in broker (answers each request with its
correlation id and payload, in the order it reads them):
    python3 -m pytest -q compat/chaos/test_proxy.py
Ports: CHAOS_TEST_PORT (default 21970) and the next one.
"""

import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import proxy as proxies  # noqa: E402

BASE = int(os.environ.get("CHAOS_TEST_PORT", "21970"))


class Broker(threading.Thread):
    """Reads Kafka-framed requests on one connection at a time; answers corr id + payload."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.seen = []  # (correlation id, payload) in arrival order
        self.server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.server.settimeout(10)

    def run(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        with conn:
            while True:
                head = recv_exactly(conn, 4)
                if head is None:
                    return
                body = recv_exactly(conn, struct.unpack(">i", head)[0])
                if body is None:
                    return
                correlation_id = struct.unpack_from(">i", body, 4)[0]
                self.seen.append((correlation_id, body[8:]))
                answer = struct.pack(">i", correlation_id) + body[8:]
                conn.sendall(struct.pack(">i", len(answer)) + answer)


def recv_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def request(api_key, correlation_id, payload):
    body = struct.pack(">hhi", api_key, 0, correlation_id) + payload
    return struct.pack(">i", len(body)) + body


def answers(conn, n):
    got = []
    for _ in range(n):
        head = recv_exactly(conn, 4)
        assert head is not None, f"connection closed after {got}"
        body = recv_exactly(conn, struct.unpack(">i", head)[0])
        got.append((struct.unpack_from(">i", body, 0)[0], body[4:]))
    return got


def setup(offset):
    broker = Broker(BASE + offset)
    broker.start()
    proxy = proxies.Proxy(seed=offset)
    proxy.listen(BASE + offset + 1, BASE + offset)
    return broker, proxy, BASE + offset + 1


def test_duplicate_sends_copies_and_drops_their_answers():
    broker, proxy, port = setup(0)
    try:
        proxy.set_duplicate(port, 1.0)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            for i in range(20):
                conn.sendall(request(26, i, b"end-txn-%d" % i))  # EndTxn: duplicated
            conn.sendall(request(22, 20, b"init"))  # InitProducerId: never duplicated
            got = answers(conn, 21)
            assert got == [(i, b"end-txn-%d" % i) for i in range(20)] + [(20, b"init")]
            conn.settimeout(0.5)
            try:
                assert conn.recv(1) == b"", "an answer to a copy reached the client"
            except socket.timeout:
                pass
        copies = [(c, p) for c, p in broker.seen if c >= proxies.COPY_ID_BASE]
        assert sorted(p for _c, p in copies) == sorted(b"end-txn-%d" % i for i in range(20))
        assert len(broker.seen) == 41 and proxy.copy_answers_dropped == 20
    finally:
        proxy.close()
        broker.server.close()


def test_reorder_shuffles_requests_and_restores_the_answers_order():
    broker, proxy, port = setup(10)
    try:
        proxy.set_reorder(port, 4, hold_ms=30)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            # One write: the proxy reads the 40 back to back, so the windows fill (not the timer).
            conn.sendall(b"".join(request(0, i, b"produce-%d" % i) for i in range(40)))
            assert answers(conn, 40) == [(i, b"produce-%d" % i) for i in range(40)]
            # A lone request is released after hold_ms, not held for ever.
            started = time.monotonic()
            conn.sendall(request(1, 40, b"fetch"))
            assert answers(conn, 1) == [(40, b"fetch")]
            assert time.monotonic() - started < 2
        order = [c for c, _p in broker.seen]
        assert sorted(order) == list(range(41)) and order != sorted(order)
        assert proxy.reordered_windows > 0 and proxy.answers_held > 0
    finally:
        proxy.close()
        broker.server.close()


def test_oversized_or_negative_frame_closes_the_connection():
    broker, proxy, port = setup(20)
    try:
        for size in (proxies.MAX_FRAME_BYTES + 1, -5):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(struct.pack(">i", size) + b"\0" * 64)
                assert recv_exactly(conn, 1) is None
        assert proxy.closed_bad_frames == 2 and broker.seen == []
    finally:
        proxy.close()
        broker.server.close()


def test_produce_with_acks_0_expects_no_answer():
    def produce(version, acks, txn_id=b""):
        header = struct.pack(">hhi", 0, version, 7) + struct.pack(">h", 3) + b"cli"
        if version >= 9:
            header += b"\0"  # no tagged fields
            body = bytes([len(txn_id) + 1]) + txn_id + struct.pack(">h", acks)
        else:
            body = struct.pack(">h", len(txn_id)) + txn_id + struct.pack(">h", acks)
        return header + body
    assert not proxies.expects_response(produce(9, 0))
    assert proxies.expects_response(produce(9, -1, b"tx"))
    assert not proxies.expects_response(produce(3, 0, b"tx"))
    assert proxies.expects_response(produce(8, 1))
    assert proxies.expects_response(struct.pack(">hhi", 26, 3, 1))
