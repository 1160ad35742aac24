"""Opens a transaction, produces records into it, flushes, says READY and waits to be SIGKILLed.
usage: txn_child.py BOOTSTRAP TOPIC TRANSACTIONAL_ID"""
import sys, time
from confluent_kafka import Producer
bootstrap, topic, tid = sys.argv[1:4]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "transaction.timeout.ms": 60000})
p.init_transactions(30)
p.begin_transaction()
for i in range(5):
    p.produce(topic, key=f"z{i}", value=f"zombie-{i}", partition=0)
p.flush(30)
print("READY", flush=True)
time.sleep(600)
