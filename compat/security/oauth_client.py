#!/usr/bin/env python3
"""SASL/OAUTHBEARER with signed tokens for compat/security/run.sh (issue 14).

  oauth_client.py keys WORK            writes WORK/jwks.json (the broker's key set, kid
                                       "compat-1") and the private keys that sign tokens
  oauth_client.py serve WORK PORT      the identity provider's JWKS endpoint: serves
                                       WORK/jwks.json at https://127.0.0.1:PORT/jwks.json with
                                       the suite's broker certificate (WORK/broker-chain.pem)
  oauth_client.py run BOOTSTRAP WORK TOPIC GROUP
                                       confluent-kafka (librdkafka) over SASL_PLAINTEXT with
                                       OAUTHBEARER, tokens handed over by oauth_cb:
                                       alice's RS256 token produces and consumes; a token
                                       signed by another key and an expired one are refused.
Prints one JSON object with what happened; exits 0 only when all three behaved.
"""
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "dlog-compat"
ISSUER = "https://issuer.dlog-compat.invalid"
KID = "compat-1"
RECORDS = 20


def keys(work):
    for name in ("signing", "other"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(f"{work}/{name}.pem", "wb") as out:
            out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        if name == "signing":
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            jwk.update(kid=KID, use="sig", alg="RS256")
            with open(f"{work}/jwks.json", "w") as out:
                json.dump({"keys": [jwk]}, out)


def token(work, key_name, sub="alice", lifetime_s=300):
    now = int(time.time())
    claims = {"sub": sub, "aud": AUDIENCE, "iss": ISSUER, "iat": now - 60, "exp": now + lifetime_s,
              "scope": "kafka"}
    with open(f"{work}/{key_name}.pem", "rb") as f:
        private = f.read()
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": KID}), claims["exp"]


def config(bootstrap, make_token, errors):
    def oauth_cb(_config_string):
        value, exp = make_token()
        # librdkafka refuses to hand over a token whose lifetime has passed; the expired
        # token must reach the broker, so the lifetime told to librdkafka is never past.
        return value, float(max(exp, time.time() + 60))
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": oauth_cb,
        "error_cb": lambda e: errors.append(str(e)),
        "socket.timeout.ms": 10000,
        "reconnect.backoff.max.ms": 1000,
    }


def roundtrip(bootstrap, work, topic, group):
    from confluent_kafka import Consumer, Producer
    errors = []
    producer = Producer({**config(bootstrap, lambda: token(work, "signing"), errors), "acks": "all",
                         "message.timeout.ms": 20000})
    delivered = []
    for i in range(RECORDS):
        producer.produce(topic, f"oauth-{i}".encode(),
                         on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(30)
    ok_sent = sum(1 for e in delivered if e is None)
    consumer = Consumer({**config(bootstrap, lambda: token(work, "signing"), errors), "group.id": group,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < RECORDS and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(msg.value().decode())
    consumer.close()
    return {"sent": ok_sent, "consumed": len(got),
            "exact": sorted(got) == sorted(f"oauth-{i}" for i in range(RECORDS)), "errors": errors[:3]}


def refused(bootstrap, make_token):
    """Whether the broker refuses the token: librdkafka reports an authentication error."""
    from confluent_kafka import KafkaError, Producer
    errors = []
    codes = []
    conf = config(bootstrap, make_token, errors)
    conf["error_cb"] = lambda e: (errors.append(str(e)), codes.append(e.code()))
    producer = Producer(conf)
    deadline = time.time() + 15
    while time.time() < deadline and KafkaError._AUTHENTICATION not in codes:
        producer.poll(0.5)
    return {"refused": KafkaError._AUTHENTICATION in codes, "errors": errors[:2]}


def run(bootstrap, work, topic, group):
    result = {
        "alice": roundtrip(bootstrap, work, topic, group),
        "other_key": refused(bootstrap, lambda: token(work, "other")),
        # Expired ten minutes ago: beyond the broker's clock skew (30 s by default).
        "expired": refused(bootstrap, lambda: token(work, "signing", lifetime_s=-600)),
    }
    print(json.dumps(result))
    ok = result["alice"]["exact"] and result["other_key"]["refused"] and result["expired"]["refused"]
    return 0 if ok else 1


def serve(work, port):
    """Answers GET /jwks.json with the key set, over TLS, until killed; counts the requests
    on stdout (a broker reads the set at start, on schedule and for an unknown key id)."""
    import http.server
    import ssl

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/jwks.json":
                self.send_error(404)
                return
            with open(f"{work}/jwks.json", "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            print("served jwks.json", flush=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{work}/broker-chain.pem", f"{work}/broker.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "keys":
        keys(sys.argv[2])
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        sys.exit(run(*sys.argv[2:6]))
