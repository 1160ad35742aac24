"""Shared helpers: start/stop a private Tansu 0.6.0 broker on a free 127.0.0.1 port."""
import os, socket, subprocess, tempfile, time, contextlib

TANSU = os.path.expanduser("~/.cache/weather-pipeline/tools/tansu-0.6.0/bin/tansu")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, storage="memory", query=""):
        self.storage = storage
        self.dir = tempfile.mkdtemp(prefix="tansu-research-", dir="/work/research/tmp" if os.path.isdir("/work/research/tmp") else None)
        self.port = free_port()
        assert self.port != 9092
        url = f"tcp://127.0.0.1:{self.port}"
        engine = ("memory://tansu/" if storage == "memory" else "sqlite://./tansu.db") + query
        self.log = open(os.path.join(self.dir, "tansu.log"), "w")
        self.proc = subprocess.Popen(
            [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", engine],
            cwd=self.dir, stdout=self.log, stderr=self.log,
            env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")})
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(open(os.path.join(self.dir, "tansu.log")).read())
                time.sleep(0.1)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def create_topic(self, name, partitions):
        subprocess.run([TANSU, "topic", "create", name, "--partitions", str(partitions),
                        "--broker", f"tcp://127.0.0.1:{self.port}"], check=True, stdout=subprocess.DEVNULL)

    def logtext(self):
        return open(os.path.join(self.dir, "tansu.log")).read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@contextlib.contextmanager
def broker(storage="memory", query=""):
    b = Broker(storage, query)
    try:
        yield b
    finally:
        b.stop()


def produce_n(bootstrap, topic, partitions, per_partition=5, **extra):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, **extra})
    for part in range(partitions):
        for i in range(per_partition):
            p.produce(topic, key=f"k{i}", value=f"v{part}-{i}", partition=part)
    p.flush(30)
