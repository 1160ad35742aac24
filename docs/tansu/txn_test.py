"""Q3 transactions, Q5 idempotence. usage: txn_test.py [memory|sqlite]"""
import os, signal, subprocess, sys, time, traceback
from confluent_kafka import Consumer, Producer, TopicPartition, KafkaException
from common import broker, produce_n

storage = sys.argv[1] if len(sys.argv) > 1 else "memory"
HERE = os.path.dirname(os.path.abspath(__file__))
log = lambda *a: print(*a, flush=True)


def read_all(bs, topic, isolation, parts=3, idle=3.0, limit=20.0):
    c = Consumer({"bootstrap.servers": bs, "group.id": f"reader-{time.time()}", "isolation.level": isolation,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    out, last, t0 = [], time.time(), time.time()
    while time.time() - last < idle and time.time() - t0 < limit:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            out.append(f"ERR {m.error()}"); continue
        out.append((m.partition(), m.offset(), m.value().decode() if m.value() is not None else None))
        last = time.time()
    c.close()
    return out


def step(name, f):
    try:
        r = f()
        log(f"OK   {name}" + (f": {r}" if r is not None else ""))
        return r
    except Exception as e:
        log(f"FAIL {name}: {e!r}")
        return e


with broker(storage) as b:
    bs = b.bootstrap
    b.create_topic("in", 3); b.create_topic("out", 3); b.create_topic("idem", 3)

    # ---------- Q5: idempotent producer
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "acks": "all"})
    errs = []
    for i in range(300):
        p.produce("idem", value=f"i{i}", partition=i % 3, on_delivery=lambda e, m: e and errs.append(str(e)))
    left = p.flush(30)
    got = read_all(bs, "idem", "read_uncommitted")
    log(f"idempotent producer: not flushed={left}, delivery errors={errs[:3]} ({len(errs)}), read back {len(got)} records,"
        f" per-partition offsets contiguous={all(sorted(o for q, o, _ in got if q == P) == list(range(100)) for P in range(3))}")

    # ---------- Q3: transactions (consume-transform-produce)
    produce_n(bs, "in", 3, per_partition=10)
    cons = Consumer({"bootstrap.servers": bs, "group.id": "tg", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    cons.subscribe(["in"])
    msgs, t0 = [], time.time()
    while len(msgs) < 30 and time.time() - t0 < 30:
        m = cons.poll(0.5)
        if m is not None and not m.error():
            msgs.append(m)
    log(f"consumer tg read {len(msgs)} input records, assignment {sorted(p.partition for p in cons.assignment())}")
    positions = [TopicPartition("in", p, o) for p, o in
                 {m.partition(): m.offset() + 1 for m in msgs}.items()]

    tp = Producer({"bootstrap.servers": bs, "transactional.id": "tx-1", "transaction.timeout.ms": 60000})
    step("init_transactions", lambda: tp.init_transactions(30))
    step("begin_transaction #1", tp.begin_transaction)
    for i in range(5):
        tp.produce("out", value=f"txn-1-{i}", partition=i % 3)
    step("flush #1", lambda: tp.flush(30))
    step("send_offsets_to_transaction(tg positions)",
         lambda: tp.send_offsets_to_transaction(positions, cons.consumer_group_metadata(), 30))
    step("commit_transaction #1", lambda: tp.commit_transaction(30))
    committed = lambda: sorted((t.partition, t.offset) for t in cons.committed([TopicPartition("in", p) for p in range(3)], 10))
    step("group tg committed offsets (positions sent were "
         f"{sorted((t.partition, t.offset) for t in positions)})", committed)
    step("abort_transaction #1 (after failed commit)", lambda: tp.abort_transaction(30))

    plain = Producer({"bootstrap.servers": bs})
    for p in range(3):
        plain.produce("out", value=f"plain-after-open-txn-{p}", partition=p)
    plain.flush(10)
    vals = lambda rs: sorted(v for _, _, v in [r for r in rs if isinstance(r, tuple)])
    log("read_committed sees:", vals(read_all(bs, "out", "read_committed")))
    log("read_uncommitted sees:", [(q, o, v) for q, o, v in read_all(bs, "out", "read_uncommitted")])
    tp2 = Producer({"bootstrap.servers": bs, "transactional.id": "tx-1"})
    step("new producer, same transactional.id: init_transactions", lambda: tp2.init_transactions(30))
    log("after re-init: read_committed sees:", vals(read_all(bs, "out", "read_committed")))
    step("group tg committed offsets after re-init", committed)

    # ---------- raw EndTxn: is the API there at all?
    from kproto import Conn, s as ks
    import struct
    try:
        r = Conn(bs).call(26, 0, ks("tx-1") + struct.pack(">qhb", 0, 0, 1))
        log("raw EndTxn v0 response error_code:", r.i32(), r.i16())
    except Exception as e:
        log("raw EndTxn v0:", repr(e))

    # ---------- zombie fencing in-process: p_old keeps going after p_new init'ed with same id
    p_old = Producer({"bootstrap.servers": bs, "transactional.id": "tx-fence"})
    step("p_old init", lambda: p_old.init_transactions(30))
    step("p_old begin", p_old.begin_transaction)
    p_old.produce("out", value="fence-old-1", partition=1)
    step("p_old flush", lambda: p_old.flush(15))
    p_new = Producer({"bootstrap.servers": bs, "transactional.id": "tx-fence"})
    step("p_new init (same transactional.id)", lambda: p_new.init_transactions(30))
    old_errs = []
    p_old.produce("out", value="fence-old-2", partition=1, on_delivery=lambda e, m: e and old_errs.append(str(e)))
    step("p_old flush after being superseded", lambda: p_old.flush(15))
    log("   p_old delivery errors (expect PRODUCER_FENCED / INVALID_PRODUCER_EPOCH):", old_errs)
    log("read_uncommitted partition 1:", [v for q, _, v in read_all(bs, "out", "read_uncommitted") if q == 1])

    # ---------- SIGKILL mid-transaction, then a new producer with the same transactional.id
    b.create_topic("kill", 1)
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "txn_child.py"), bs, "kill", "tx-kill"],
                             stdout=subprocess.PIPE, text=True)
    log("child:", child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL); child.wait()
    plain.produce("kill", value="plain-after-kill", partition=0); plain.flush(10)
    log("after SIGKILL, before new producer: read_uncommitted:", vals(read_all(bs, "kill", "read_uncommitted", parts=1)))
    log("after SIGKILL, before new producer: read_committed  :", vals(read_all(bs, "kill", "read_committed", parts=1)))
    p2 = Producer({"bootstrap.servers": bs, "transactional.id": "tx-kill"})
    t0 = time.time()
    step("new producer init_transactions (same id)", lambda: p2.init_transactions(60))
    log(f"   took {time.time() - t0:.1f}s")
    log("after new producer init: read_committed  :", vals(read_all(bs, "kill", "read_committed", parts=1)))
    cons.close()
