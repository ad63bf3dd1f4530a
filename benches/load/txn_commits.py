# Transactional commits/s (confluent-kafka):
#   python3 benches/load/txn_commits.py HOST:PORT TAG [RECORDS_PER_TXN ...]   (default: 10 1000)
# One partition, 100-byte records, linger.ms=5; per size 3 warm-up transactions, then 3 runs
# (300 transactions of 10 records, 50 of 1000), median. benches/load/eos.sh runs it per broker.
import sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

TRANSACTIONS_PER_RUN = {10: 300, 1000: 50}
bootstrap, tag = sys.argv[1], sys.argv[2]
sizes = [int(s) for s in sys.argv[3:]] or [10, 1000]
admin = AdminClient({"bootstrap.servers": bootstrap})
topic = f"txbench-{tag}"
admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
time.sleep(1)
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txbench-{tag}", "linger.ms": 5})
p.init_transactions(30)


def transaction(records):
    p.begin_transaction()
    for _ in range(records):
        p.produce(topic, b"v" * 100, partition=0)
    p.commit_transaction(30)


def run(records, transactions):
    start = time.time()
    for _ in range(transactions):
        transaction(records)
    return transactions / (time.time() - start)


for records in sizes:
    for _ in range(3):
        transaction(records)
    transactions = TRANSACTIONS_PER_RUN.get(records, max(10, 3000 // records))
    rates = sorted(run(records, transactions) for _ in range(3))
    print(f"{tag} records_per_txn={records} commits_per_s median={rates[1]:.1f} "
          f"runs={[round(r, 1) for r in rates]}", flush=True)
