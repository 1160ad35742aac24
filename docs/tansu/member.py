"""One consumer-group member, run as its own process so it can be SIGKILLed.

Prints JSON lines: {"ev": "assign"|"revoke"|"lost"|"state"|"error", ...}. Stops cleanly
(consumer.close(), i.e. LeaveGroup) on SIGTERM or when stdin says "close".
usage: member.py BOOTSTRAP TOPIC GROUP STRATEGY NAME [SESSION_MS] [INSTANCE_ID|-] [EXTRA_JSON]
"""
import json, sys, time, signal, threading
from confluent_kafka import Consumer, KafkaException

bootstrap, topic, group, strategy, name = sys.argv[1:6]
session_ms = int(sys.argv[6]) if len(sys.argv) > 6 else 6000
instance = sys.argv[7] if len(sys.argv) > 7 and sys.argv[7] != "-" else None
extra = json.loads(sys.argv[8]) if len(sys.argv) > 8 else {}

def out(**kw):
    kw["name"] = name
    kw["t"] = round(time.time(), 2)
    print(json.dumps(kw), flush=True)

conf = {
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "partition.assignment.strategy": strategy,
    "session.timeout.ms": session_ms,
    "heartbeat.interval.ms": 1000,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "error_cb": lambda e: out(ev="error", err=str(e)),
}
if instance:
    conf["group.instance.id"] = instance
conf.update(extra)
c = Consumer(conf)

parts = lambda ps: sorted(p.partition for p in ps)
def on_assign(cons, ps):
    out(ev="assign", parts=parts(ps))
def on_revoke(cons, ps):
    out(ev="revoke", parts=parts(ps))
def on_lost(cons, ps):
    out(ev="lost", parts=parts(ps))

c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
def stdin_reader():
    for line in sys.stdin:
        if line.strip() == "close":
            stop.set()
threading.Thread(target=stdin_reader, daemon=True).start()

last = None
counts = {}
while not stop.is_set():
    m = c.poll(0.2)
    if m is not None and m.error() is None:
        counts[m.partition()] = counts.get(m.partition(), 0) + 1
    elif m is not None:
        out(ev="msgerror", err=str(m.error()))
    try:
        cur = parts(c.assignment())
    except KafkaException as e:
        cur = str(e)
    if cur != last:
        out(ev="state", parts=cur, member=c.memberid())
        last = cur
out(ev="closing", consumed=counts)
c.close()
out(ev="closed")
