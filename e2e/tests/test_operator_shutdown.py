"""End to end: `vantage operator` stops on SIGTERM whenever it comes.

Kubernetes sends SIGTERM and waits `terminationGracePeriodSeconds` before SIGKILL; an
operator that ignores the signal holds its Lease (if any) until it expires and delays
every rollout. The signal was lost when it came right after /healthz turned ready: the
ControllerPool controller had installed a SIGTERM listener (so the process no longer
died of the signal), and the Measurement controller only installed its own when its
stream was first polled, after that moment. A cluster test (`test_replicas.py`) hit it.

* SIGTERM the moment /healthz turns ready (four times) and 5 s later: the operator exits
  0 within a few seconds, saying the shutdown was requested;
* SIGTERM while it starts (NATS unreachable, so it never gets ready): it exits 0 at once;
* SIGTERM to a follower waiting for the Lease: it exits 0 at once, and the leader stays.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN, ROOT, STACK_DIR, Cluster, free_port, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(not (STACK_DIR / "env").exists(), reason=f"SKIPPED: the local stack is not up ({STACK_DIR}/env missing)")

EXIT_WITHIN = 5.0  # seconds; Kubernetes' default grace period is 30


@pytest.fixture
def cluster():
    c = Cluster(log=print)
    try:
        c.kubectl("apply", "-f", str(ROOT / "crds"))
        yield c
    finally:
        c.stop_all()
        for lease in getattr(c, "leases", []):
            c.kubectl_run("delete", "lease", lease, "-n", "default", "--ignore-not-found")
        print(f"component logs: {c.tmp}")


class HoldingProxy:
    """HTTP/1.1 to the API stand-in, forwarded as it is, except a LIST (a GET without
    `watch=`) whose path starts with `hold`: that request is never forwarded nor
    answered, as from an API server that is slow to list."""

    def __init__(self, upstream: tuple[str, int], hold: bytes):
        self.upstream, self.hold = upstream, hold
        self.held = threading.Event()
        self.conns: list[socket.socket] = []  # kept open, held ones included
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def _serve(self, client: socket.socket):
        try:
            self._forward(client)
        except OSError:
            pass  # the operator went away (it was stopped) or the proxy was closed

    def _forward(self, client: socket.socket):
        up = socket.create_connection(self.upstream)
        self.conns += [client, up]
        threading.Thread(target=self._pipe, args=(up, client), daemon=True).start()
        f = client.makefile("rb")
        while line := f.readline():
            head = [line]
            while (h := f.readline()) not in (b"\r\n", b"\n", b""):
                head.append(h)
            head.append(b"\r\n")
            method, target = line.split(b" ")[:2]
            if method == b"GET" and target.startswith(self.hold) and b"watch=" not in target:
                self.held.set()
                return  # never forwarded, never answered; the sockets stay open
            fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in head[1:-1])}
            if b"chunked" in fields.get(b"transfer-encoding", b""):
                body = b""
                while True:
                    size_line = f.readline()
                    body += size_line
                    size = int(size_line.split(b";")[0], 16)
                    body += f.read(size + 2)
                    if size == 0:
                        break
            else:
                body = f.read(int(fields.get(b"content-length", b"0")))
            up.sendall(b"".join(head) + body)

    def close(self):
        self.sock.close()
        for s in self.conns:
            s.close()


def start(c: Cluster, name: str, *extra: str) -> subprocess.Popen:
    c.ports[f"{name}-metrics"] = free_port()
    return c.start(name, [str(BIN / "vantage"), "operator", "--metrics-addr", f"127.0.0.1:{c.ports[name + '-metrics']}", *extra])


def ready(c: Cluster, name: str) -> bool:
    try:
        return c._healthy(name)
    except (OSError, urllib.error.URLError):
        return False


def until_ready(c: Cluster, name: str, timeout: float = 60.0) -> None:
    """Poll /healthz every 5 ms, so that the signal comes as soon after readiness as it can."""
    deadline = time.monotonic() + timeout
    while not ready(c, name):
        assert time.monotonic() < deadline, f"{name} not ready within {timeout}s:\n{c.logs(name)[-3000:]}"
        time.sleep(0.005)


def term_and_wait(c: Cluster, name: str) -> tuple[int, float]:
    p = c.procs[name]
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        code = p.wait(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
        raise AssertionError(f"{name} still running {EXIT_WITHIN}s after SIGTERM; its log:\n{c.logs(name)[-3000:]}") from None
    return code, time.monotonic() - t


@pytest.mark.parametrize("delay", [0.0, 0.0, 0.0, 0.0, 5.0])
def test_sigterm_right_after_ready_stops_the_operator(cluster, delay):
    """`delay` after /healthz turns ready: 0 hits the moment before the Measurement
    controller's first list (the operator stops at once); 5 s is after it (the graceful
    path: kube stops the reconcilers, then the operator exits)."""
    c = cluster
    start(c, "op")
    until_ready(c, "op")
    time.sleep(delay)
    code, secs = term_and_wait(c, "op")
    log = c.logs("op")
    assert code == 0, f"exited {code}:\n{log[-3000:]}"
    assert "shutdown requested" in log, log[-3000:]
    early = "nothing was reconciled yet" in log
    if delay:
        assert not early, f"5 s after ready the shutdown should be graceful:\n{log[-3000:]}"
    print(f"exit {secs:.2f}s after SIGTERM {delay:.0f}s after readiness ({'before' if early else 'after'} the first list)")


def test_sigterm_while_the_measurement_list_is_held_stops_the_operator_at_once(cluster):
    c = cluster
    kubeconfig = Path(c.env["KUBECONFIG"])
    server = re.search(r"server: http://([^:\s]+):(\d+)", kubeconfig.read_text())
    assert server, f"no http server in {kubeconfig}"
    proxy = HoldingProxy((server[1], int(server[2])), b"/apis/vantage.dev/v1alpha1/measurements?")
    try:
        slow = c.tmp / "kubeconfig-slow-list"
        slow.write_text(kubeconfig.read_text().replace(server[0], f"server: http://127.0.0.1:{proxy.port}"))
        c.env["KUBECONFIG"] = str(slow)
        try:
            start(c, "op-held")
        finally:
            c.env["KUBECONFIG"] = str(kubeconfig)
        until_ready(c, "op-held")
        assert proxy.held.wait(30), f"the operator never listed Measurements:\n{c.logs('op-held')[-3000:]}"
        code, secs = term_and_wait(c, "op-held")
        log = c.logs("op-held")
        assert code == 0, f"exited {code}:\n{log[-3000:]}"
        assert "shutdown before the first list of Measurements" in log, log[-3000:]
        print(f"exit after SIGTERM with the Measurement list held: {secs:.2f}s")
    finally:
        proxy.close()


def test_sigterm_while_starting_stops_the_operator_at_once(cluster):
    c = cluster
    dead = free_port()  # nothing listens: the operator keeps trying to reach NATS
    start(c, "op-starting", "--nats-url", f"nats://127.0.0.1:{dead}")
    wait_for("the operator to try NATS", lambda: "nats: IO error" in c.logs("op-starting"), timeout=30)
    assert c.procs["op-starting"].poll() is None, f"the operator gave up on NATS instead of waiting:\n{c.logs('op-starting')}"
    assert not ready(c, "op-starting")
    code, secs = term_and_wait(c, "op-starting")
    log = c.logs("op-starting")
    assert code == 0, f"exited {code}:\n{log[-3000:]}"
    assert "shutdown while starting" in log, log[-3000:]
    print(f"exit after SIGTERM while starting: {secs:.2f}s")


def test_sigterm_to_a_follower_stops_it_and_the_leader_stays(cluster):
    c = cluster
    lease = f"shutdown-{c.run_id}".replace("_", "-")
    c.leases = [lease]
    for name in ("leader", "follower"):
        c.env["POD_NAME"] = name
        try:
            start(c, name, "--leader-elect", "--lease-name", lease)
        finally:
            c.env.pop("POD_NAME", None)
        until_ready(c, name)
    wait_for("the leader to lead", lambda: "became leader" in c.logs("leader"), timeout=30)
    assert "became leader" not in c.logs("follower")
    code, secs = term_and_wait(c, "follower")
    assert code == 0, c.logs("follower")[-3000:]
    print(f"follower exit after SIGTERM: {secs:.2f}s")
    assert c.procs["leader"].poll() is None and ready(c, "leader")
    code, secs = term_and_wait(c, "leader")
    assert code == 0 and "released the lease on shutdown" in c.logs("leader"), c.logs("leader")[-3000:]
    print(f"leader exit after SIGTERM (lease released): {secs:.2f}s")
