"""Q1: 3 members in one group; assignment per strategy; SIGKILL of one; clean leave of another.

usage: group_test.py STORAGE(memory|sqlite) PARTITIONS STRATEGY [static]
Each member is a separate process (member.py). Prints a JSON summary at the end.
"""
import json, os, signal, subprocess, sys, threading, time
from common import broker, produce_n

storage, nparts, strategy = sys.argv[1], int(sys.argv[2]), sys.argv[3]
static = "static" in sys.argv[4:]
STAGGER = 0.0 if "together" in sys.argv[4:] else 1.0
SESSION = 6000
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))

class Member:
    def __init__(self, bootstrap, topic, group, name):
        self.name = name
        args = [PY, os.path.join(HERE, "member.py"), bootstrap, topic, group, strategy, name, str(SESSION),
                f"inst-{name}" if static else "-"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.state = None
        self.events = []
        self.changed = time.time()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.events.append(ev)
            if ev["ev"] == "state":
                self.state = ev["parts"]
                self.changed = time.time()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL); self.proc.wait()

    def close(self):
        self.proc.stdin.write("close\n"); self.proc.stdin.flush(); self.proc.wait(30)


def settle(members, quiet=4.0, timeout=60.0, want=None):
    """Wait until no member's assignment changed for `quiet` s (and optionally the union is complete)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        time.sleep(0.25)
        if all(m.state is not None for m in members) and time.time() - max(m.changed for m in members) > quiet:
            if want is None or check(members)["complete"]:
                break
    return time.time() - t0


def check(members):
    lists = {m.name: (m.state if isinstance(m.state, list) else []) for m in members}
    allp = [p for l in lists.values() for p in l]
    return {"assign": lists, "disjoint": len(allp) == len(set(allp)),
            "complete": sorted(set(allp)) == list(range(nparts))}


res = {"storage": storage, "partitions": nparts, "strategy": strategy, "static": static, "stagger": STAGGER}
with broker(storage) as b:
    topic, group = "t", "g"
    b.create_topic(topic, nparts)
    produce_n(b.bootstrap, topic, nparts)
    ms = []
    for n in "ABC":
        ms.append(Member(b.bootstrap, topic, group, n))
        time.sleep(STAGGER)
    res["t_join"] = round(settle(ms, want=True), 1)
    res["initial"] = check(ms)

    # SIGKILL C: survivors should get its partitions after session.timeout.ms
    t0 = time.time()
    res["t_kill"] = t0
    ms[2].kill()
    survivors = ms[:2]
    for m in survivors:
        m.changed = time.time()
    deadline = time.time() + SESSION / 1000 + 30
    while time.time() < deadline and not check(survivors)["complete"]:
        time.sleep(0.25)
    res["after_kill_s"] = round(time.time() - t0, 1)
    settle(survivors, quiet=3, timeout=20)
    res["after_kill"] = check(survivors)

    # Clean close of B: A should get everything quickly
    t0 = time.time()
    res["t_close_B"] = t0
    ms[1].close()
    deadline = time.time() + 40
    while time.time() < deadline and not check(ms[:1])["complete"]:
        time.sleep(0.25)
    res["after_leave_s"] = round(time.time() - t0, 1)
    res["after_leave"] = check(ms[:1])

    ms[0].close()
    res["errors"] = sorted({e["err"] for m in ms for e in m.events if e["ev"] in ("error", "msgerror")})
    res["timeline"] = sorted((e["t"], e["name"], e["parts"]) for m in ms for e in m.events if e["ev"] == "state")
    res["events"] = {m.name: [(e["ev"], e.get("parts")) for e in m.events if e["ev"] in ("assign", "revoke", "lost")] for m in ms}
print(json.dumps(res))
