"""End to end: a highly available operator (`vantage operator --leader-elect`).

Three replicas elect a leader on a `coordination.k8s.io/v1` Lease in the Kubernetes
stand-in. Measurement changes stream in (create, update, delete); the leader is killed
with SIGKILL mid-stream; another replica must take over within the lease duration plus a
retry period, and every schedule change must reach the `vantage-schedules` KV bucket
exactly as if one operator had run.

What "lost" and "published twice" mean here, on the KV writes a core NATS subscription
to `$KV.vantage-schedules.>` sees (every put of every writer, in order):

* lost: a probe whose last schedule does not hold exactly the tasks (id and interval)
  of the Measurements that exist for it at the end;
* published by two writers / twice: any KV write not accounted for by the replica that
  held the lease at that time. Before the kill every write is the first leader's (the
  followers' `vantage_operator_schedules_published` stay 0); between the kill and the
  takeover there is none; after it every write is the new leader's (its counter equals
  the writes seen, the third replica's stays 0). A new leader writes each probe's current
  schedule once when it starts, as any operator restart does today: those same-content
  re-writes are counted and printed, and allowed only as the new leader's first write of
  each probe; any other write repeating the probe's previous content fails the test.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build). Takes about
40 s (lease duration 15 s).
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN, STACK_DIR, Cluster, free_port, nats_publish, wait_for  # noqa: E402

LEASE_DURATION = 15.0  # the operator's default (--lease-duration-seconds)
RETRY_PERIOD = 2.0
REPLICAS = 3
PROBES = 4

pytestmark = pytest.mark.skipif(not (STACK_DIR / "env").exists(), reason=f"SKIPPED: the local stack is not up ({STACK_DIR}/env missing)")


class ScheduleTap:
    """Every KV write to the schedules bucket, as (monotonic time, probe id, document)."""

    def __init__(self, nats_url: str):
        url = urllib.parse.urlparse(nats_url.split(",")[0])
        self.sock = socket.create_connection((url.hostname, url.port or 4222), timeout=5)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"lang":"python","protocol":1}\r\n')
        self.sock.sendall(b"SUB $KV.vantage-schedules.> 1\r\nPING\r\n")
        while not (line := self.file.readline()).startswith(b"PONG"):
            if not line or line.startswith(b"-ERR"):
                raise RuntimeError(f"cannot subscribe to the schedules bucket: {line!r}")
        self.sock.settimeout(None)
        self.writes: list[tuple[float, int, dict]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while line := self.file.readline():
                if line.startswith(b"PING"):
                    self.sock.sendall(b"PONG\r\n")
                    continue
                parts = line.split()
                if not parts or parts[0] not in (b"MSG", b"HMSG"):
                    continue
                total = int(parts[-1])
                head = int(parts[-2]) if parts[0] == b"HMSG" else 0
                data = self.file.read(total + 2)[head:total]
                subject = parts[1].decode()
                probe = int(subject.rsplit(".", 1)[1]) if subject.rsplit(".", 1)[1].isdigit() else -1
                doc = json.loads(data) if data else {}
                with self.lock:
                    self.writes.append((time.monotonic(), probe, doc))
        except (OSError, ValueError):
            return

    def snapshot(self) -> list[tuple[float, int, dict]]:
        with self.lock:
            return list(self.writes)

    def last(self, probe: int) -> dict | None:
        docs = [d for _, p, d in self.snapshot() if p == probe]
        return docs[-1] if docs else None

    def close(self) -> None:
        self.sock.close()


def tasks_of(doc: dict | None) -> set[tuple[int, int]]:
    return {(t["msm_id"], t["interval"]) for t in (doc or {}).get("tasks", [])}


@pytest.fixture
def cluster():
    c = Cluster(log=print)
    c.ha_probes = []
    try:
        c.kubectl("apply", "-f", str(Path(__file__).resolve().parent.parent.parent / "crds"))
        yield c
    finally:
        # The stack is shared: remove this test's measurements while a leader may still
        # release their finalizers, then its probes.
        for name in getattr(c, "ha_measurements", []):
            c.kubectl_run("delete", "measurement", name, "-n", "default", "--wait=false", "--ignore-not-found")
        if getattr(c, "ha_measurements", None):
            time.sleep(RETRY_PERIOD)
        c.stop_all()
        for lease in getattr(c, "ha_leases", []):
            c.kubectl_run("delete", "lease", lease, "-n", "default", "--ignore-not-found")
        # No probe of this test: no probe of this test stays connected or registered.
        for pid in c.ha_probes:
            nats_publish(f"$KV.vantage-sessions.probe.{pid}", headers={"KV-Operation": "DEL"})
            c.kubectl_run("delete", "probe", f"probe-{pid}", "--wait=false")
        print(f"component logs: {c.tmp}")


def start_replica(c: Cluster, name: str, lease: str, *extra: str):
    if lease not in getattr(c, "ha_leases", []):
        c.ha_leases = [*getattr(c, "ha_leases", []), lease]
    c.ports[f"{name}-metrics"] = free_port()
    c.env["POD_NAME"] = name
    try:
        c.start(name, [str(BIN / "vantage"), "operator", "--metrics-addr", f"127.0.0.1:{c.ports[name + '-metrics']}",
                       "--leader-elect", "--lease-name", lease, *extra])
    finally:
        c.env.pop("POD_NAME", None)


def gauge(c: Cluster, name: str, metric: str) -> float | None:
    """The value of `metric` on replica `name`; None if it does not answer. A metric
    the replica does not export fails the test (a check of it could not fail)."""
    try:
        text = c.metrics(name)
    except OSError:
        return None
    for line in text.splitlines():
        if line.split(" ")[0] == metric:
            return float(line.split(" ")[1])
    raise AssertionError(f"{name} exports no {metric}")


PUBLISHED = "vantage_operator_schedules_published_total"


def leaders(c: Cluster, names: list[str]) -> list[str]:
    return [n for n in names if gauge(c, n, "vantage_operator_leader") == 1.0]


def healthz(c: Cluster, name: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{c.ports[name + '-metrics']}/healthz", timeout=2) as r:
        assert r.status == 200
        body = r.read()
        return json.loads(body) if body.startswith(b"{") else {"status": body.decode()}


def session(pid: int) -> bytes:
    return json.dumps({"v": 1, "probe_id": pid, "controller": "ha-e2e", "address": "192.0.2.1",
                       "connected_since_ms": int(time.time() * 1000)}).encode()


def test_leader_killed_mid_stream_another_takes_over_and_no_schedule_change_is_lost_or_doubled(cluster):
    c = cluster
    lease = f"ha-{c.run_id}".replace("_", "-")
    names = [f"op-{i}" for i in range(REPLICAS)]
    tap = ScheduleTap(c.env["NATS_URL"])
    t_start = time.monotonic()
    for n in names:
        start_replica(c, n, lease)
    # Every replica is healthy, leader or not; exactly one leads.
    for n in names:
        wait_for(f"{n} /healthz", lambda n=n: c._healthy(n), timeout=60)
    first = wait_for("one leader", lambda: (ls := leaders(c, names)) and ls, timeout=30)
    assert len(first) == 1, f"two leaders at once: {first}"
    leader = first[0]
    followers = [n for n in names if n != leader]
    assert healthz(c, leader)["detail"]["leader"] is True
    assert all(healthz(c, n)["detail"]["leader"] is False for n in followers)
    held = c.get("lease", lease, "default")
    assert held["spec"]["holderIdentity"] == leader and held["spec"]["leaseDurationSeconds"] == 15
    print(f"leader {leader} elected {time.monotonic() - t_start:.1f}s after start")

    # Probes the operator may choose: Probe resources plus sessions in the KV bucket (as
    # a controller writes them); the bucket exists once the leader has declared it.
    # Their own country and tag, so that other tests' selections never pick them.
    probes = []
    for _ in range(PROBES):
        pid, _, _ = c.add_probe_at("AQ", 64700, -75.0, 0.0, tags=("ha-e2e",))
        probes.append(pid)
        c.ha_probes.append(pid)
    for pid in probes:
        wait_for("the sessions bucket", lambda pid=pid: nats_publish(f"$KV.vantage-sessions.probe.{pid}", session(pid)) or True, timeout=30)

    # The stream: (operation, measurement, probe, interval).
    alive: dict[str, tuple[int, int]] = {}

    def apply(name: str, pid: int, interval: int) -> None:
        c.kubectl_apply({"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
                         "metadata": {"name": name, "namespace": "default"},
                         "spec": {"type": "ping", "target": "127.0.0.1", "packets": 1, "interval": interval, "spread": 0,
                                  "description": "operator HA e2e", "probes": [{"type": "probes", "value": str(pid), "requested": 1}]}})
        alive[name] = (pid, interval)

    def delete(name: str) -> None:
        c.kubectl("delete", "measurement", name, "-n", "default", "--wait=false")
        alive.pop(name)

    m = [f"ha-{c.run_id}-{i}".replace("_", "-") for i in range(10)]
    c.ha_measurements = m
    for i in range(6):
        apply(m[i], probes[i % PROBES], 60)
    apply(m[1], probes[1], 120)
    delete(m[2])
    # Let the first leader publish part of it, then kill it while changes keep coming.
    wait_for("the first schedules", lambda: any(p in probes for _, p, _ in tap.snapshot()), timeout=30)
    assert all(gauge(c, n, PUBLISHED) == 0 for n in followers), "a follower published"
    apply(m[6], probes[2], 60)
    c.procs[leader].send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    c.procs[leader].wait(timeout=5)
    takeover: dict[str, float] = {}

    def watch() -> None:
        while not takeover and time.monotonic() - t_kill < LEASE_DURATION * 3:
            ls = leaders(c, followers)
            if ls:
                takeover[ls[0]] = time.monotonic() - t_kill
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    apply(m[7], probes[3], 60)
    apply(m[3], probes[3], 300)
    delete(m[0])
    apply(m[8], probes[0], 60)
    watcher.join(timeout=LEASE_DURATION * 3 + 5)
    assert takeover, f"no replica took over within {LEASE_DURATION * 3:.0f}s of the kill"
    (new_leader, took), = takeover.items()
    third = [n for n in followers if n != new_leader][0]
    print(f"takeover: {new_leader} leads {took:.1f}s after SIGKILL of {leader} "
          f"(bound: lease duration {LEASE_DURATION:.0f}s + retry {RETRY_PERIOD:.0f}s + 2s polling/start)")
    assert took <= LEASE_DURATION + RETRY_PERIOD + 2, f"takeover took {took:.1f}s"
    assert leaders(c, followers) == [new_leader]
    # More changes under the new leader.
    apply(m[9], probes[1], 60)
    delete(m[5])

    # Nothing lost: each probe's last schedule holds exactly its measurements.
    ids: dict[str, int] = {}
    for name in alive:
        ids[name] = wait_for(f"{name} has an id and its probe", lambda name=name: (
            (s := c.get("measurement", name, "default").get("status", {})).get("state") == "Ongoing" and s.get("id")), timeout=30)
    expected = {pid: {(ids[n], iv) for n, (p, iv) in alive.items() if p == pid} for pid in probes}
    try:
        wait_for("every probe's schedule as the measurements say",
                 lambda: all(tasks_of(tap.last(pid)) == expected[pid] for pid in probes), timeout=30)
    finally:
        got = {pid: sorted(tasks_of(tap.last(pid))) for pid in probes}
        print(f"expected schedules {dict((p, sorted(e)) for p, e in expected.items())}\nlast published    {got}")
    time.sleep(RETRY_PERIOD)  # anything still in flight arrives

    # Nothing published by two writers: account for every write.
    writes = tap.snapshot()
    in_gap = [w for w in writes if t_kill + 0.5 < w[0] < t_kill + took - 0.5]
    assert not in_gap, f"schedules written while no replica held the lease: {in_gap}"
    after = [w for w in writes if w[0] > t_kill + 0.5]
    new_count = gauge(c, new_leader, PUBLISHED)
    assert new_count == len(after), f"{len(after)} KV writes after the takeover, {new_leader} counted {new_count}"
    assert gauge(c, third, PUBLISHED) == 0, f"{third} published while following"
    # Same content written twice in a row for a probe: only the new leader's first write.
    repeats, takeover_rewrites = [], 0
    by_probe: dict[int, list[tuple[float, dict]]] = {}
    for t, pid, doc in writes:
        by_probe.setdefault(pid, []).append((t, doc))
    for pid, seq in by_probe.items():
        first_after = next((t for t, _ in seq if t > t_kill + 0.5), None)
        for (_, prev), (t, doc) in zip(seq, seq[1:]):
            if tasks_of(prev) == tasks_of(doc):
                if t == first_after:
                    takeover_rewrites += 1
                else:
                    repeats.append((pid, t - t_start, sorted(tasks_of(doc))))
    print(f"{len(writes)} schedule writes ({len(writes) - len(after)} by {leader}, {len(after)} by {new_leader}); "
          f"{takeover_rewrites} same-content re-writes by the new leader at takeover")
    assert not repeats, f"schedule content published twice in a row outside the takeover: {repeats}"

    # SIGTERM: the leader releases the lease; the third replica takes over within a
    # retry period or two, not a lease duration.
    c.procs[new_leader].send_signal(signal.SIGTERM)
    t_term = time.monotonic()
    c.procs[new_leader].wait(timeout=30)
    assert "released the lease" in c.logs(new_leader), c.logs(new_leader)[-2000:]
    wait_for(f"{third} to lead", lambda: leaders(c, [third]) == [third], timeout=LEASE_DURATION)
    fast = time.monotonic() - t_term
    print(f"takeover after SIGTERM of {new_leader}: {fast:.1f}s")
    assert fast <= 2 * RETRY_PERIOD + 2, f"takeover after a release took {fast:.1f}s"
    assert c.get("lease", lease, "default")["spec"]["holderIdentity"] == third
    assert gauge(c, third, "vantage_operator_leader_transitions_total") == 1
    tap.close()
    print(f"test took {time.monotonic() - t_start:.1f}s")


def test_a_leader_that_finds_another_holder_exits_at_once(cluster):
    """A leader whose Lease another identity took (a partition healed, an operator forced
    it) stops every leader-only task at once: the process exits non-zero with a log line
    naming the new holder, within a retry period, so that Kubernetes restarts it as a
    follower."""
    c = cluster
    lease = f"taken-{c.run_id}".replace("_", "-")
    start_replica(c, "op-x", lease)
    wait_for("op-x to lead", lambda: leaders(c, ["op-x"]) == ["op-x"], timeout=60)
    held = c.get("lease", lease, "default")
    held["spec"]["holderIdentity"] = "intruder"
    held["spec"]["renewTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    c.kubectl("replace", "-f", "-", input=json.dumps(held))
    t = time.monotonic()
    code = c.procs["op-x"].wait(timeout=RETRY_PERIOD * 3)
    print(f"exited {time.monotonic() - t:.1f}s after the lease was taken, code {code}")
    assert code != 0
    log = c.logs("op-x")
    assert "lost the lease" in log and "intruder" in log, log[-2000:]


def test_without_leader_elect_the_operator_leads_alone_and_writes_no_lease(cluster):
    c = cluster
    c.ports["solo-metrics"] = free_port()
    lease = f"solo-{c.run_id}".replace("_", "-")
    c.start("solo", [str(BIN / "vantage"), "operator", "--metrics-addr", f"127.0.0.1:{c.ports['solo-metrics']}", "--lease-name", lease])
    wait_for("solo /healthz", lambda: c._healthy("solo"), timeout=60)
    assert gauge(c, "solo", "vantage_operator_leader") == 1.0
    assert "leader" not in healthz(c, "solo").get("detail", {})
    assert c.kubectl_run("get", "lease", lease, "-n", "default").returncode != 0, "no Lease without --leader-elect"


def test_the_standin_refuses_what_the_api_server_refuses_on_leases(cluster):
    """Leader election rests on these: a stale or unconditional update of a Lease is refused
    (409 / 422; the lease registry has no unconditional update), as is a zero duration."""
    c = cluster
    server = None
    for line in Path(c.env["KUBECONFIG"]).read_text().splitlines():
        if "server:" in line:
            server = line.split("server:", 1)[1].strip()
    assert server, "no server in the kubeconfig"
    base = f"{server}/apis/coordination.k8s.io/v1/namespaces/default/leases"
    name = f"standin-{c.run_id}".replace("_", "-")

    def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    code, created = call("POST", base, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
                                        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})
    assert code == 201
    assert call("POST", base, created)[0] == 409, "a second create is AlreadyExists"
    taken = json.loads(json.dumps(created))
    taken["spec"]["holderIdentity"] = "b"
    code, now = call("PUT", f"{base}/{name}", taken)
    assert code == 200 and now["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    stale = json.loads(json.dumps(created))
    stale["spec"]["holderIdentity"] = "c"
    code, body = call("PUT", f"{base}/{name}", stale)
    assert code == 409 and body["reason"] == "Conflict", body
    blind = json.loads(json.dumps(now))
    del blind["metadata"]["resourceVersion"]
    assert call("PUT", f"{base}/{name}", blind)[0] == 422, "no unconditional update of a Lease"
    zero = json.loads(json.dumps(now))
    zero["spec"]["leaseDurationSeconds"] = 0
    code, body = call("PUT", f"{base}/{name}", zero)
    assert code == 422 and "spec.leaseDurationSeconds" in body["message"], body
    assert call("DELETE", f"{base}/{name}")[0] == 200
