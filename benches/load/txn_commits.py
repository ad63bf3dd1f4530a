# Transactional commits/s (confluent-kafka): python3 benches/load/txn_commits.py HOST:PORT TAG
# One partition, 100-byte records, 10 and 1000 records per transaction, median of 3 runs.
import sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, tag = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": bootstrap})
topic = f"txbench-{tag}"
admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
time.sleep(1)
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txbench-{tag}", "linger.ms": 5})
p.init_transactions(30)
def run(records, txns):
    # warm-up
    for _ in range(3):
        p.begin_transaction(); [p.produce(topic, b"v" * 100, partition=0) for _ in range(records)]; p.commit_transaction(30)
    start = time.time()
    for _ in range(txns):
        p.begin_transaction()
        for _ in range(records):
            p.produce(topic, b"v" * 100, partition=0)
        p.commit_transaction(30)
    return txns / (time.time() - start)
for records, txns in ((10, 300), (1000, 50)):
    rates = [run(records, txns) for _ in range(3)]
    rates.sort()
    print(f"{tag} records_per_txn={records} commits_per_s median={rates[1]:.1f} runs={[round(r,1) for r in rates]}")
