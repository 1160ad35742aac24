"""Raw Fetch v4 against a compacted (sqlite, maintenance_interval=2s) topic and a memory topic:
prints each record batch header (baseOffset, lastOffsetDelta, record count) and ListOffsets watermarks."""
import struct, sys, time
from confluent_kafka import Producer, TopicPartition, Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from common import broker
from kproto import Conn, s, arr

def fetch(conn, topic, offset):
    body = struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0) + arr([topic], lambda t: s(t) + arr([0], lambda p: struct.pack(">iqi", p, offset, 1 << 20)))
    r = conn.call(1, 4, body); r.i32()
    out = []
    for _ in range(r.i32()):
        r.str()
        for _ in range(r.i32()):
            part, err, hw, lso = r.i32(), r.i16(), r.i64(), r.i64()
            ab = r.i32()
            for _ in range(max(ab, 0)): r.i64(); r.i64()
            recs = r.bytes() or b""
            o = 0; batches = []
            while o + 61 <= len(recs):
                base, blen = struct.unpack_from(">qi", recs, o)
                lod = struct.unpack_from(">i", recs, o + 23)[0]
                cnt = struct.unpack_from(">i", recs, o + 57)[0]
                batches.append(dict(baseOffset=base, lastOffsetDelta=lod, records=cnt))
                o += 12 + blen
            out.append(dict(err=err, high_watermark=hw, last_stable_offset=lso, batches=batches))
    return out

for storage, query in (("sqlite", "?maintenance_interval=2s"), ("memory", "")):
    with broker(storage, query) as b:
        print(f"== {storage}{query}")
        adm = AdminClient({"bootstrap.servers": b.bootstrap}); adm.create_topics([NewTopic("c", 1, 1, config={"cleanup.policy": "compact"})])["c"].result()
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 50})
        for v in range(3):
            for k in "abc":
                p.produce("c", key=k, value=f"{k}{v}", partition=0)
        p.flush(10)
        for i in range(3):  # three more single-record batches
            p.produce("c", key="d", value=f"d{i}", partition=0); p.flush(10)
        conn = Conn(b.bootstrap)
        print(" before:", fetch(conn, "c", 0))
        time.sleep(5)
        for off in (0, 4, 8):
            print(f" after 5s, fetch at {off}:", fetch(conn, "c", off))
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "x"})
        print(" ListOffsets (low, high):", c.get_watermark_offsets(TopicPartition("c", 0), timeout=5)); c.close()
