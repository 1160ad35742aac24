"""Side finding: high watermark after one multi-record batch (memory vs sqlite)."""
import time
from confluent_kafka import Producer, Consumer, TopicPartition
from common import broker
for st in ("memory", "sqlite"):
    with broker(st) as b:
        b.create_topic("w", 1)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 100})
        for i in range(10): p.produce("w", value=str(i), partition=0)
        p.flush(10)
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "w"})
        wm1 = c.get_watermark_offsets(TopicPartition("w", 0), timeout=5)
        p.produce("w", value="x", partition=0); p.flush(10)
        wm2 = c.get_watermark_offsets(TopicPartition("w", 0), timeout=5)
        c.assign([TopicPartition("w", 0, 0)]); n = 0; t0 = time.time()
        while time.time() - t0 < 3:
            m = c.poll(0.2); n += m is not None and not m.error()
        c.close()
        print(f"{st}: after one 10-record batch watermarks={wm1}; after +1 record={wm2}; consumer read {n} records")
