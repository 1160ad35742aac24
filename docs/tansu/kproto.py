"""A tiny raw Kafka protocol client (non-flexible API versions only) to send group requests
with exactly chosen generation ids / member ids, which librdkafka does not let us do."""
import socket, struct


def s(x):  # string
    b = x.encode()
    return struct.pack(">h", len(b)) + b


def ns(x):  # nullable string
    return struct.pack(">h", -1) if x is None else s(x)


def by(b):  # bytes
    return struct.pack(">i", len(b)) + b


def arr(items, enc):
    return struct.pack(">i", len(items)) + b"".join(enc(i) for i in items)


class R:
    def __init__(self, b):
        self.b, self.o = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)
        self.o += struct.calcsize(fmt)
        return v[0]

    def i16(self): return self.take(">h")
    def i32(self): return self.take(">i")
    def i64(self): return self.take(">q")

    def str(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.b[self.o:self.o + n].decode(); self.o += n
        return v

    def bytes(self):
        n = self.i32()
        if n < 0:
            return None
        v = self.b[self.o:self.o + n]; self.o += n
        return v

    def arr(self, f):
        return [f() for _ in range(self.i32())]


class Conn:
    def __init__(self, bootstrap):
        h, p = bootstrap.split(":")
        self.sock = socket.create_connection((h, int(p)))
        self.cid = 0

    def call(self, api, ver, body):
        self.cid += 1
        hdr = struct.pack(">hhi", api, ver, self.cid) + s("raw-research")
        msg = hdr + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        n = struct.unpack(">i", self._recv(4))[0]
        data = self._recv(n)
        r = R(data)
        assert r.i32() == self.cid
        return r

    def _recv(self, n):
        b = b""
        while len(b) < n:
            c = self.sock.recv(n - len(b))
            if not c:
                raise ConnectionError("closed")
            b += c
        return b

    # --- group API (JoinGroup v5, SyncGroup v3, Heartbeat v3, OffsetCommit v7, OffsetFetch v5, LeaveGroup v3)
    def join(self, group, member_id, metadata, protocol="range", session_ms=10000, rebalance_ms=30000, instance=None):
        body = s(group) + struct.pack(">ii", session_ms, rebalance_ms) + s(member_id) + ns(instance) + s("consumer") + \
            arr([(protocol, metadata)], lambda p: s(p[0]) + by(p[1]))
        r = self.call(11, 5, body)
        r.i32()
        out = dict(error=r.i16(), generation=r.i32(), protocol=r.str(), leader=r.str(), member_id=r.str())
        out["members"] = r.arr(lambda: (r.str(), r.str(), r.bytes()))
        return out

    def sync(self, group, generation, member_id, assignments, instance=None):
        body = s(group) + struct.pack(">i", generation) + s(member_id) + ns(instance) + \
            arr(assignments, lambda a: s(a[0]) + by(a[1]))
        r = self.call(14, 3, body)
        r.i32()
        return dict(error=r.i16(), assignment=r.bytes())

    def heartbeat(self, group, generation, member_id, instance=None):
        r = self.call(12, 3, s(group) + struct.pack(">i", generation) + s(member_id) + ns(instance))
        r.i32()
        return r.i16()

    def commit(self, group, generation, member_id, topic, offsets, instance=None):
        body = s(group) + struct.pack(">i", generation) + s(member_id) + ns(instance) + arr(
            [topic], lambda t: s(t) + arr(sorted(offsets.items()), lambda po: struct.pack(">iqi", po[0], po[1], -1) + ns(None)))
        r = self.call(8, 7, body)
        r.i32()
        res = {}
        for _ in range(r.i32()):
            r.str()
            for _ in range(r.i32()):
                p = r.i32(); res[p] = r.i16()
        return res

    def fetch(self, group, topic, partitions):
        r = self.call(9, 5, s(group) + arr([topic], lambda t: s(t) + arr(partitions, lambda p: struct.pack(">i", p))))
        r.i32()
        res = {}
        for _ in range(r.i32()):
            r.str()
            for _ in range(r.i32()):
                p = r.i32(); off = r.i64(); r.i32(); r.str(); err = r.i16(); res[p] = (off, err)
        return res


def subscription(topics):
    return struct.pack(">h", 0) + arr(topics, s) + by(b"")


def assignment(topic, partitions):
    return struct.pack(">h", 0) + arr([topic], lambda t: s(t) + arr(partitions, lambda p: struct.pack(">i", p))) + by(b"")


def parse_assignment(b):
    if not b:
        return {}
    r = R(b); r.i16()
    return dict(r.arr(lambda: (r.str(), r.arr(r.i32))))


ERR = {0: "NONE", 22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID", 27: "REBALANCE_IN_PROGRESS",
       79: "MEMBER_ID_REQUIRED", 82: "FENCED_INSTANCE_ID", 16: "NOT_COORDINATOR", 15: "COORDINATOR_NOT_AVAILABLE",
       47: "INVALID_PRODUCER_EPOCH", 90: "PRODUCER_FENCED", 48: "INVALID_TXN_STATE"}


def en(c):
    return f"{ERR.get(c, '?')}({c})"
