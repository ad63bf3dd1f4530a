#!/usr/bin/env python3
"""Capture real client request frames as fuzz seeds.

    capture.py proxy  --listen 127.0.0.1:PORT_A --upstream 127.0.0.1:PORT_B --out RAW_DIR
    capture.py select --raw RAW_DIR --frames CORPUS/request_frame --batches CORPUS/batch

`proxy` forwards every connection on PORT_A to the broker at PORT_B and writes each request
frame the client sends (header and body, without the 4-byte size prefix) to RAW_DIR, named
`<api key>-v<version>-<size>.bin`, so frames of the same api key, version and size are kept
once. Responses are forwarded untouched. Start the broker with
`--set advertised.listeners=PLAINTEXT://127.0.0.1:PORT_A` so that clients stay on the proxy.
Stop it with SIGINT/SIGTERM.

`select` copies a bounded seed corpus out of RAW_DIR: per (api key, version) the smallest, the
largest and a few sizes in between, at most MAX_FILES files and MAX_BYTES bytes in all. It
also scans the frames for v2 record batches (magic 2 and a matching CRC32C) and writes each
distinct one, as the `batch` target's seeds.
"""

import argparse
import asyncio
import hashlib
import os
import shutil
import signal
import struct
import sys
from collections import defaultdict

FRAME_SIZE_MAX = 100 * 1024 * 1024
MAX_FILES = 280
MAX_BYTES = 2 * 1024 * 1024
PER_API_VERSION = 6
BATCH_FILES_MAX = 120
BATCH_FILE_BYTES_MAX = 64 * 1024


# --------------------------------------------------------------------------------------------
# proxy
# --------------------------------------------------------------------------------------------


def save_frame(out_dir, frame):
    if len(frame) < 4:
        return
    api_key, version = struct.unpack(">hh", frame[:4])
    name = f"{api_key:02d}-v{version:02d}-{len(frame):07d}.bin"
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(frame)
        os.replace(path + ".tmp", path)


async def client_to_broker(reader, writer, out_dir):
    try:
        while True:
            size_bytes = await reader.readexactly(4)
            (size,) = struct.unpack(">i", size_bytes)
            if size < 0 or size > FRAME_SIZE_MAX:
                # Not a Kafka client: pass it on raw and stop parsing.
                writer.write(size_bytes)
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                break
            frame = await reader.readexactly(size)
            save_frame(out_dir, frame)
            writer.write(size_bytes + frame)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def broker_to_client(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def proxy(listen, upstream, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    up_host, up_port = upstream.rsplit(":", 1)

    async def handle(client_reader, client_writer):
        try:
            broker_reader, broker_writer = await asyncio.open_connection(up_host, int(up_port))
        except OSError as error:
            print(f"capture: cannot reach {upstream}: {error}", file=sys.stderr)
            client_writer.close()
            return
        await asyncio.gather(
            client_to_broker(client_reader, broker_writer, out_dir),
            broker_to_client(broker_reader, client_writer),
        )

    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"capture: {listen} -> {upstream}, frames to {out_dir}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


# --------------------------------------------------------------------------------------------
# select
# --------------------------------------------------------------------------------------------


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def find_batches(frame):
    """Every v2 record batch inside a frame: magic 2 at +16, a sane length, a valid CRC32C."""
    found = []
    position = 0
    while position + 61 <= len(frame):
        if frame[position + 16] == 2:
            (length,) = struct.unpack(">i", frame[position + 8 : position + 12])
            end = position + 12 + length
            if 49 <= length and end <= len(frame):
                (stored,) = struct.unpack(">I", frame[position + 17 : position + 21])
                if crc32c(frame[position + 21 : end]) == stored:
                    found.append(frame[position:end])
                    position = end
                    continue
        position += 1
    return found


def select(raw_dir, frames_dir, batches_dir):
    groups = defaultdict(list)
    for name in sorted(os.listdir(raw_dir)):
        if not name.endswith(".bin"):
            continue
        api, version, _ = name[:-4].split("-")
        groups[(api, version)].append((os.path.getsize(os.path.join(raw_dir, name)), name))

    chosen = []
    for key in sorted(groups):
        items = sorted(groups[key])
        if len(items) <= PER_API_VERSION:
            picks = items
        else:
            # Smallest, largest, and evenly spaced sizes between.
            step = (len(items) - 1) / (PER_API_VERSION - 1)
            picks = [items[round(i * step)] for i in range(PER_API_VERSION)]
        chosen.extend(picks)
    # Within the byte budget, prefer small files: drop the largest first.
    chosen.sort()
    total = 0
    kept = []
    for size, name in chosen:
        if len(kept) >= MAX_FILES or total + size > MAX_BYTES:
            continue
        kept.append(name)
        total += size

    for directory in (frames_dir, batches_dir):
        os.makedirs(directory, exist_ok=True)
        for old in os.listdir(directory):
            os.remove(os.path.join(directory, old))
    for name in kept:
        shutil.copyfile(os.path.join(raw_dir, name), os.path.join(frames_dir, name))
    print(f"select: {len(kept)} frames, {total} bytes -> {frames_dir}")

    # Batches from produce frames (api key 0): one file per distinct batch.
    batches = {}
    for name in sorted(os.listdir(raw_dir)):
        if not name.startswith("00-"):
            continue
        with open(os.path.join(raw_dir, name), "rb") as f:
            frame = f.read()
        for batch in find_batches(frame):
            if len(batch) > BATCH_FILE_BYTES_MAX:
                continue
            # Group by attributes (codec etc.) and size so that the set stays varied.
            attributes = struct.unpack(">h", batch[21:23])[0]
            key = (attributes, len(batch))
            batches.setdefault(key, batch)
    total = 0
    written = 0
    for (attributes, size), batch in sorted(batches.items(), key=lambda kv: kv[0][1]):
        if written >= BATCH_FILES_MAX or total + size > MAX_BYTES // 2:
            break
        digest = hashlib.sha1(batch).hexdigest()[:12]
        with open(os.path.join(batches_dir, f"attr{attributes:02x}-{size:06d}-{digest}.bin"), "wb") as f:
            f.write(batch)
        written += 1
        total += size
    print(f"select: {written} batches, {total} bytes -> {batches_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("proxy")
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--out", required=True)
    s = commands.add_parser("select")
    s.add_argument("--raw", required=True)
    s.add_argument("--frames", required=True)
    s.add_argument("--batches", required=True)
    args = parser.parse_args()
    if args.command == "proxy":
        asyncio.run(proxy(args.listen, args.upstream, args.out))
    else:
        select(args.raw, args.frames, args.batches)


if __name__ == "__main__":
    main()
