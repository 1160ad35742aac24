"""Q2: is a commit from a stale member (old generation / removed member id) rejected?

Member A is a raw-protocol client (kproto) so we control exactly which generation/member id it
sends; member B is a normal librdkafka consumer. usage: fence_test.py [memory|sqlite]
"""
import sys, time, json, threading
from confluent_kafka import Consumer
from common import broker, produce_n
from kproto import Conn, subscription, assignment, parse_assignment, en

storage = sys.argv[1] if len(sys.argv) > 1 else "memory"
G, T, N = "fg", "ft", 3
log = lambda *a: print(*a, flush=True)

with broker(storage) as b:
    b.create_topic(T, N)
    produce_n(b.bootstrap, T, N, per_partition=10)
    a = Conn(b.bootstrap)
    meta = subscription([T])
    j = a.join(G, "", meta, session_ms=6000)
    log("A join#1:", en(j["error"]), "member_id", j["member_id"])
    j = a.join(G, j["member_id"], meta, session_ms=6000)
    A, g1 = j["member_id"], j["generation"]
    log("A join#2:", en(j["error"]), "gen", g1, "leader", j["leader"] == A, "members", len(j["members"]))
    sy = a.sync(G, g1, A, [(A, assignment(T, list(range(N))))])
    log("A sync:", en(sy["error"]), parse_assignment(sy["assignment"]))
    log("A heartbeat:", en(a.heartbeat(G, g1, A)))
    log("A commit gen", g1, "(current):", {p: en(e) for p, e in a.commit(G, g1, A, T, {0: 1, 1: 1, 2: 1}).items()})

    # B joins with librdkafka; A keeps heartbeating in the background but never rejoins.
    hb = []
    stop_hb = threading.Event()
    def heartbeats():
        c = Conn(b.bootstrap)
        while not stop_hb.is_set():
            hb.append(c.heartbeat(G, g1, A)); time.sleep(1)
    th = threading.Thread(target=heartbeats, daemon=True); th.start()

    bstate = {}
    cb = Consumer({"bootstrap.servers": b.bootstrap, "group.id": G, "partition.assignment.strategy": "range",
                   "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "auto.offset.reset": "earliest",
                   "enable.auto.commit": False})
    cb.subscribe([T], on_assign=lambda c, ps: bstate.setdefault("assigns", []).append(sorted(p.partition for p in ps)))
    t0 = time.time()
    while time.time() - t0 < 8:
        cb.poll(0.2)
    log("after B joined (8 s, A heartbeating, not rejoining): A heartbeat codes seen", sorted({en(x) for x in hb}),
        "| B assignment", sorted(p.partition for p in cb.assignment()), "B assigns", bstate.get("assigns"))
    r = a.commit(G, g1, A, T, {0: 2, 1: 2, 2: 2})
    log("A commit with its old gen", g1, "while group rebalanced:", {p: en(e) for p, e in r.items()})
    r = a.commit(G, g1 - 1, A, T, {0: 3})
    log("A commit with gen", g1 - 1, ":", {p: en(e) for p, e in r.items()})
    r = a.commit(G, 9999, A, T, {0: 3})
    log("A commit with gen 9999:", {p: en(e) for p, e in r.items()})
    r = a.commit(G, g1, "no-such-member", T, {0: 4})
    log("commit with unknown member id 'no-such-member':", {p: en(e) for p, e in r.items()})

    # Now A goes silent: after session.timeout.ms it is removed from the group.
    stop_hb.set(); th.join()
    t0 = time.time()
    while time.time() - t0 < 20:
        cb.poll(0.2)
    log("20 s after A went silent: B assignment", sorted(p.partition for p in cb.assignment()), "B assigns", bstate.get("assigns"))
    log("A heartbeat now:", en(a.heartbeat(G, g1, A)))
    r = a.commit(G, g1, A, T, {0: 5, 1: 5, 2: 5})
    log("removed A commits with old gen/member:", {p: en(e) for p, e in r.items()})
    log("committed offsets now (OffsetFetch):", a.fetch(G, T, list(range(N))))
    # librdkafka's view of the committed offsets
    from confluent_kafka import TopicPartition
    log("B committed():", [(tp.partition, tp.offset) for tp in cb.committed([TopicPartition(T, p) for p in range(N)], timeout=10)])
    cb.close()
