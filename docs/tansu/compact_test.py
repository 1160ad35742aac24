"""Q4: cleanup.policy=compact: create with configs, DescribeConfigs, tombstones, does Tansu compact?
usage: compact_test.py memory|sqlite [STORAGE_QUERY e.g. ?maintenance_interval=3s] [WAIT_S]"""
import sys, time
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource
from common import broker

storage = sys.argv[1]
query = sys.argv[2] if len(sys.argv) > 2 else ""
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 10
log = lambda *a: print(*a, flush=True)


def read_all(bs, topic):
    c = Consumer({"bootstrap.servers": bs, "group.id": f"r{time.time()}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out, last = [], time.time()
    while time.time() - last < 2.5:
        m = c.poll(0.2)
        if m is not None and not m.error():
            out.append((m.offset(), m.key().decode(), None if m.value() is None else m.value().decode())); last = time.time()
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
    c.close()
    return out, (lo, hi)


with broker(storage, query) as b:
    log(f"storage {storage}{query}")
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = a.create_topics([NewTopic("compacted", 1, 1, config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01",
                                                                "segment.ms": "100"})])
    for t, f in fs.items():
        try:
            f.result(); log("create_topics with cleanup.policy=compact: OK")
        except Exception as e:
            log("create_topics with configs FAILED:", e)
    res = ConfigResource("topic", "compacted")
    try:
        cfg = a.describe_configs([res])[res].result()
        log("describe_configs:", {k: v.value for k, v in cfg.items()})
    except Exception as e:
        log("describe_configs FAILED:", repr(e))
    p = Producer({"bootstrap.servers": b.bootstrap})
    for v in range(3):
        for k in ("a", "b", "c"):
            p.produce("compacted", key=k, value=f"{k}{v}", partition=0)
    p.produce("compacted", key="b", value=None, partition=0)  # tombstone
    errs = []
    p.produce("compacted", key="d", value="d0", partition=0, on_delivery=lambda e, m: e and errs.append(str(e)))
    log("flush:", p.flush(10), "delivery errors:", errs)
    recs, wm = read_all(b.bootstrap, "compacted")
    log(f"before waiting: {len(recs)} records, watermarks {wm}: {recs}")
    time.sleep(wait)
    recs, wm = read_all(b.bootstrap, "compacted")
    log(f"after {wait}s: {len(recs)} records, watermarks {wm}: {recs}")
    # a config change via IncrementalAlterConfigs
    from confluent_kafka.admin import ConfigEntry, AlterConfigOpType
    r2 = ConfigResource("topic", "compacted", incremental_configs=[ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    try:
        a.incremental_alter_configs([r2])[r2].result(); log("incremental_alter_configs retention.ms: OK")
        cfg = a.describe_configs([res])[res].result(); log("describe_configs after alter:", {k: v.value for k, v in cfg.items()})
    except Exception as e:
        log("incremental_alter_configs FAILED:", repr(e))
