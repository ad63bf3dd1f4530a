"""A TCP proxy between clients and brokers that can delay requests.

Each broker advertises the proxy's address (advertised.listeners), so every client connection
after the bootstrap goes through it too. One asyncio loop in a background thread serves all
listeners. While a delay is set, every chunk read from a client is forwarded `delay_ms` (plus a
seeded jitter) later than it arrived, in order (a TCP stream cannot be reordered): requests such
as Produce or EndTxn reach the broker late, after the client may have timed out and retried.
Responses are forwarded at once.
"""

import asyncio
import random
import threading
import time


class Proxy:
    def __init__(self, seed=0):
        self.delays = {}  # listen port -> (delay_ms, jitter_ms)
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._servers = []
        self._writers = set()
        self.connections = 0
        self.delayed_chunks = 0
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

    async def _serve(self, client_reader, client_writer, host, listen_port, target_port):
        try:
            broker_reader, broker_writer = await asyncio.open_connection(host, target_port)
        except OSError:
            client_writer.close()
            return
        self.connections += 1
        self._writers.update((client_writer, broker_writer))
        queue = asyncio.Queue(maxsize=1024)

        async def read_client():
            last_due = 0.0
            try:
                while True:
                    data = await client_reader.read(65536)
                    if not data:
                        break
                    due = time.monotonic()
                    delay_ms, jitter_ms = self.delays.get(listen_port, (0, 0))
                    if delay_ms:
                        jitter = self._random.uniform(0, jitter_ms) if jitter_ms else 0
                        due += (delay_ms + jitter) / 1000.0
                        self.delayed_chunks += 1
                    last_due = max(last_due, due)
                    await queue.put((last_due, data))
            except (OSError, asyncio.IncompleteReadError):
                pass
            await queue.put((0, None))

        async def write_broker():
            try:
                while True:
                    due, data = await queue.get()
                    if data is None:
                        break
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    broker_writer.write(data)
                    await broker_writer.drain()
            except OSError:
                pass
            broker_writer.close()

        async def read_broker():
            try:
                while True:
                    data = await broker_reader.read(65536)
                    if not data:
                        break
                    client_writer.write(data)
                    await client_writer.drain()
            except OSError:
                pass
            client_writer.close()

        tasks = [asyncio.ensure_future(t()) for t in (read_client, write_broker, read_broker)]
        # A client that hangs up still has its delayed requests delivered (write_broker drains
        # the queue first): the late request a timed-out client no longer waits for.
        await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_writer, broker_writer):
            writer.close()
        await asyncio.wait(tasks, timeout=5)
        for task in tasks:
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
