"""Fixtures: a live sweepd plus sweep-workers on loopback, started from $SWEEPD_BUILD_DIR
(ports chosen by the processes: port 0 and --port-file), stopped after the session."""
import os
import signal
import subprocess
import tempfile
import time

import pytest

SOURCE_DIR = os.environ.get("SWEEPD_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("SWEEPD_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")


def binary(relative):
    path = os.path.join(BUILD_DIR, relative)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build it first (SWEEPD_BUILD_DIR={BUILD_DIR})")
    return path


class Cluster:
    def __init__(self, workdir, sweepd_args=(), worker_args=(), workers=2):
        self.workdir = workdir
        self.procs = []
        port_file = os.path.join(workdir, "port")
        self.sweepd_log = os.path.join(workdir, "sweepd.log")
        self.sweepd = self._spawn(
            [binary("coordinator/sweepd"), "--listen", "127.0.0.1:0", "--port-file", port_file,
             "--ledger", os.path.join(workdir, "ledger.db"), *sweepd_args], self.sweepd_log)
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if self.sweepd.poll() is not None or time.time() > deadline:
                raise RuntimeError("sweepd did not start:\n" + open(self.sweepd_log).read())
            time.sleep(0.05)
        self.address = "127.0.0.1:" + open(port_file).read().strip()
        for i in range(workers):
            self._spawn([binary("worker/sweep-worker"), "run", "--coordinator", self.address,
                         "--name", f"py-worker-{i}", "--heartbeat-ms", "300", "--threads", "1",
                         *worker_args], os.path.join(workdir, f"worker-{i}.log"))

    def _spawn(self, argv, log):
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, "SWEEPD_FINGERPRINT_CACHE": "off"})
        self.procs.append(p)
        return p

    def stop(self):
        # Workers drain on SIGTERM, then the coordinator stops.
        for p in self.procs[1:] + self.procs[:1]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture(scope="session")
def cluster():
    with tempfile.TemporaryDirectory(prefix="sweepd-py-") as workdir:
        c = Cluster(workdir)
        try:
            yield c
        finally:
            c.stop()


@pytest.fixture()
def client(cluster):
    import sweepd

    with sweepd.Client(cluster.address, timeout=20) as c:
        yield c
