#!/usr/bin/env python3
"""Reads throttle_time_ms from a broker's Metadata answers, over a plain TCP socket.

    request_quota.py HOST:PORT CLIENT_ID REQUESTS_MAX [USER PASSWORD]

With USER and PASSWORD it logs in first with SASL PLAIN (SaslHandshake v1, SaslAuthenticate v0)
on a SASL_PLAINTEXT listener, so the requests are a client's, not the inter-broker listener's.

Sends Metadata v4 requests (no topics: the cheapest answer) one after the other with
CLIENT_ID in the request header, and prints
    requests=<answered> throttled=<answers with throttle_time_ms > 0> first_throttle_ms=<ms>
stopping at the third throttled answer or after REQUESTS_MAX answers (or 20 s). A client whose
request_percentage quota is tiny sees throttled answers; another client id sees none.
"""
import socket
import struct
import sys
import time


def read_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def call(sock, api_key, version, correlation_id, client_id, body):
    """Sends one request (header v1) and returns its response body after the correlation id."""
    frame = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", read_exact(sock, 4))[0]
    response = read_exact(sock, size)
    got_correlation = struct.unpack(">i", response[:4])[0]
    assert got_correlation == correlation_id, (got_correlation, correlation_id)
    return response[4:]


def sasl_plain(sock, client_id, user, password):
    mechanism = b"PLAIN"
    answer = call(sock, 17, 1, -2, client_id, struct.pack(">h", len(mechanism)) + mechanism)
    assert struct.unpack(">h", answer[:2])[0] == 0, "SaslHandshake refused"
    token = b"\0" + user.encode() + b"\0" + password.encode()
    answer = call(sock, 36, 0, -1, client_id, struct.pack(">i", len(token)) + token)
    error = struct.unpack(">h", answer[:2])[0]
    assert error == 0, f"SaslAuthenticate error {error}"


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    client_id = sys.argv[2].encode()
    requests_max = int(sys.argv[3])
    sock = socket.create_connection((host, int(port)), timeout=15)
    if len(sys.argv) > 5:
        sasl_plain(sock, client_id, sys.argv[4], sys.argv[5])
    answered = throttled = 0
    first_throttle_ms = 0
    deadline = time.monotonic() + 20
    while answered < requests_max and throttled < 3 and time.monotonic() < deadline:
        correlation_id = answered + 1
        # Metadata v4: an empty topic array, allow_auto_topic_creation false; the answer
        # starts with throttle_time_ms.
        answer = call(sock, 3, 4, correlation_id, client_id, struct.pack(">i?", 0, False))
        throttle_ms = struct.unpack(">i", answer[:4])[0]
        answered += 1
        if throttle_ms > 0:
            throttled += 1
            first_throttle_ms = first_throttle_ms or throttle_ms
    print(f"requests={answered} throttled={throttled} first_throttle_ms={first_throttle_ms}")


if __name__ == "__main__":
    main()
