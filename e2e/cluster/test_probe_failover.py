"""Probes keep their SSH sessions while the controller fails over between NATS nodes.

Real components (operator, collector, registration server, one controller) and real
probe agents run against the three-node NATS JetStream cluster of
e2e/stack/nats-cluster.sh (URL list, replicas 3), with ClickHouse and the Kubernetes API
stand-in of a single-node stack (e2e/stack/stack.sh). The probes run built-in pings every
2 s (a steady flow of results) and a ping Measurement. Then the NATS node the
controller's client is connected to (found in each node's /connz by client name) is
killed with SIGKILL while results flow, twice: as found, then after moving the leaders
of RESULTS, the collector's consumer and every KV bucket to the controller's node (so
that its client and every leader it talks to die at once). The test asserts:

* every probe kept its SSH session: the registration server registered nobody again, no
  probe agent logged a second "session up" or a reconnect, the controller logged no new
  session and no disconnect, and its connected-probes gauge (sampled every 0.2 s) never
  dropped below their number;
* a Measurement created right after the kill reaches every probe, results from each
  within 60 s (the controller's KV watches, which once hung until the killed node came
  back, are restarted when they stall: controller/src/stall.rs);
* a probe disabled right after the second kill (which also takes the assignments
  bucket's leader) loses its session within 20 s (the registration server retries the
  revoke while the bucket elects a leader), and is not connected again;
* results keep arriving (each probe's built-in pings measured after the kill are stored);
* every result the controller took from the probes is stored, each id exactly once
  (`FINAL`), and none was lost to the spool.

It prints the time the controller's client took to reconnect to another node and the
longest gap in results stored in ClickHouse (and in results taken by the controller)
during the failover, next to the longest gap before it. The killed node is started again
at the end, so the cluster is whole for the tests after it.

Run by e2e/cluster/nats-tests.sh (which brings up both stacks). By hand: the cluster's env
(`source $VANTAGE_CLUSTER_DIR/env`), VANTAGE_STACK_DIR pointing at a single-node stack,
`cargo build -p vantage -p vantage-probe`, then from e2e/:
`../.venv/bin/python -m pytest -s cluster/test_probe_failover.py`. Without the cluster or
the stack it is SKIPPED with the reason (and fails under CI=true, see e2e/conftest.py).
Env: FAILOVER_PROBES (probe agents, default 12).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN, STACK_DIR, Cluster, wait_for  # noqa: E402

PROBES = int(os.environ.get("FAILOVER_PROBES", "12"))
# Built-ins only for this run's probes (the stand-in may hold probes of other runs).
SCOPE = f"failover-{uuid.uuid4().hex[:8]}"
STREAMS = ["RESULTS", "KV_vantage-schedules", "KV_vantage-assignments", "KV_vantage-sessions", "KV_vantage-meta"]
COLLECTOR = "collector"  # the collector's durable consumer (core/src/nats.rs COLLECTOR_DURABLE)
BUILTIN_PING = 1001  # operator/src/builtin.rs PING_V4: the first built-in target's ping
OPERATOR_ARGS = ["--builtin-targets", "127.0.0.1", "--builtin-probe-tag", SCOPE, "--builtin-ping-interval", "2",
                 "--builtin-traceroute-interval", "3600", "--builtin-mesh-near", "0", "--builtin-mesh-spread", "0"]


def say(*args) -> None:
    print("[probe-failover]", *args, flush=True)


class NatsCluster:
    """The three-node cluster of e2e/stack/nats-cluster.sh, from the env file it writes."""

    def __init__(self) -> None:
        missing = [v for v in ("NATS_CLUSTER_URL", "NATS_CLUSTER_MONITOR_URLS", "NATS_CLUSTER_NODES",
                               "NATS_CLUSTER_SCRIPT", "VANTAGE_CLUSTER_DIR") if not os.environ.get(v)]
        if missing:
            pytest.skip(f"SKIPPED: {', '.join(missing)} unset: needs the three-node NATS cluster; "
                        "run e2e/cluster/nats-tests.sh (or e2e/stack/nats-cluster.sh up and source its env)")
        self.url = os.environ["NATS_CLUSTER_URL"]
        self.monitors = dict(zip(os.environ["NATS_CLUSTER_NODES"].split(","),
                                 os.environ["NATS_CLUSTER_MONITOR_URLS"].split(",")))
        self.script = os.environ["NATS_CLUSTER_SCRIPT"]
        self.dir = os.environ["VANTAGE_CLUSTER_DIR"]
        assert len(self.monitors) == 3, f"NATS_CLUSTER_NODES/NATS_CLUSTER_MONITOR_URLS: {self.monitors}"

    def request(self, subject: str, payload: bytes = b"") -> dict:
        """A JetStream API request (plain NATS protocol, no client library in the venv)
        through the first node that answers; the JSON reply."""
        last: Exception | None = None
        for url in self.url.split(","):
            host, port = url.removeprefix("nats://").rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=5) as sock:
                    f = sock.makefile("rb")
                    f.readline()  # INFO
                    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"lang":"python","protocol":1,"name":"e2e-probe-failover"}\r\n'
                                 b"SUB _INBOX.probe-failover 1\r\n"
                                 + f"PUB {subject} _INBOX.probe-failover {len(payload)}\r\n".encode() + payload + b"\r\n")
                    while line := f.readline():
                        if line.startswith(b"-ERR"):
                            raise RuntimeError(f"NATS refused {subject}: {line.decode().strip()}")
                        if line.startswith(b"MSG"):
                            size = int(line.split()[-1])
                            return json.loads(f.read(size + 2)[:size])
                        if line.startswith(b"PING"):
                            sock.sendall(b"PONG\r\n")
                    raise RuntimeError(f"no reply to {subject} from {url}")
            except (OSError, RuntimeError) as e:
                last = e
        raise RuntimeError(f"no node answered {subject}: {last}")

    def leaders(self) -> dict[str, str]:
        """The RAFT leader of each stream and of the collector's consumer."""
        out = {}
        for stream in STREAMS:
            out[stream] = self.request(f"$JS.API.STREAM.INFO.{stream}").get("cluster", {}).get("leader", "?")
        out[f"RESULTS/{COLLECTOR}"] = self.request(f"$JS.API.CONSUMER.INFO.RESULTS.{COLLECTOR}").get("cluster", {}).get("leader", "?")
        return out

    def move_leaders(self, node: str) -> None:
        """Make `node` the leader of every stream and of the collector's consumer
        (leader stepdown with a preferred placement, nats-server 2.11+)."""
        want = json.dumps({"placement": {"preferred": node}}).encode()

        def moved() -> bool:
            leaders = self.leaders()
            for name, leader in leaders.items():
                if leader != node:
                    api = f"CONSUMER.LEADER.STEPDOWN.{name.replace('/', '.')}" if "/" in name else f"STREAM.LEADER.STEPDOWN.{name}"
                    self.request(f"$JS.API.{api}", want)
            return all(leader == node for leader in leaders.values())

        wait_for(f"every stream's leader on {node}", moved, timeout=30, interval=1)

    def run(self, *args: str) -> None:
        out = subprocess.run(["bash", self.script, *args], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "VANTAGE_CLUSTER_DIR": self.dir})
        assert out.returncode == 0, f"nats-cluster.sh {' '.join(args)} failed: {out.stderr}"

    def clients(self, node: str) -> list[str]:
        """Names of the clients connected to `node` (its /connz)."""
        with urllib.request.urlopen(f"{self.monitors[node]}/connz?limit=100000", timeout=2) as r:
            return [c.get("name", "") for c in json.load(r).get("connections", [])]

    def nodes_of(self, client: str, among: list[str] | None = None) -> list[str]:
        """The nodes (of `among`, default all) that `client` is connected to."""
        out = []
        for node in among or list(self.monitors):
            try:
                if client in self.clients(node):
                    out.append(node)
            except OSError:
                pass  # a dead node answers nothing
        return out


class Sampler(threading.Thread):
    """Every 0.2 s: results of our probes stored in ClickHouse (rows), results the
    controller took from them, and its connected probes."""

    def __init__(self, c: Cluster, probe_ids: list[int]) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.where = f"prb_id IN ({','.join(map(str, probe_ids))})"
        self.samples: list[tuple[float, int | None, float | None, float | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.monotonic()
            try:
                stored: int | None = int(self.c.ch.query(f"SELECT count() FROM {self.c.db}.results WHERE {self.where}").strip())
            except Exception:  # noqa: BLE001 - a failed sample is a missing point, not a failure
                stored = None
            try:
                taken: float | None = self.c.metric("ctl-0", "vantage_controller_results")
                connected: float | None = self.c.metric("ctl-0", "vantage_controller_connected_probes")
            except Exception:  # noqa: BLE001
                taken = connected = None
            self.samples.append((t, stored, taken, connected))
            self.halt.wait(0.2)

    def increases(self, col: int) -> list[float]:
        """Times at which column `col` grew."""
        out, last = [], None
        for s in self.samples:
            v = s[col]
            if v is None:
                continue
            if last is not None and v > last:
                out.append(s[0])
            last = v
        return out

    def longest_gap(self, col: int, start: float, end: float) -> float:
        """Longest time between two growths of column `col` among those overlapping
        [start, end] (the first one after `start` counts from the last one before)."""
        times = self.increases(col)
        gaps = [b - a for a, b in zip(times, times[1:]) if b >= start and a <= end]
        return max(gaps, default=float("inf"))

    def longest_gap_within(self, col: int, start: float, end: float) -> float:
        """Longest time between two growths of column `col` both within [start, end]."""
        times = [t for t in self.increases(col) if start <= t <= end]
        return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


def measurement(name: str, probe_ids: list[int]) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "ping", "target": "127.0.0.1", "packets": 2, "packet_interval": 100, "interval": 60, "spread": 0,
                     "description": "e2e: probe sessions across a NATS failover",
                     "probes": [{"type": "probes", "value": ",".join(map(str, probe_ids)), "requested": len(probe_ids)}]}}


def probes_with_results(c: Cluster, msm_id: int, since_unix: int = 0) -> set[int]:
    rows = c.ch.rows(f"SELECT DISTINCT prb_id FROM {c.db}.results WHERE msm_id = {msm_id} AND timestamp >= {since_unix}")
    return {int(r["prb_id"]) for r in rows}


def log_time(line: str) -> float:
    """The Unix time of a component's log line (it starts with an RFC 3339 UTC time)."""
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def count_lines(text: str, needle: str) -> int:
    return sum(1 for line in text.splitlines() if needle in line)


def failover_round(c: Cluster, nats: NatsCluster, sampler: Sampler, client: str, probes: list[int],
                   round_: int, move_leaders: bool, disable: int | None = None) -> dict:
    """Kill the node the controller's client is on (after moving every leader there if
    `move_leaders`), make a schedule change (and disable probe `disable`, which must lose
    its session), and wait until it reached every probe and results measured after the
    kill are stored; then start the node again. The controller's connected probes must
    not drop below `probes` meanwhile. Returns the figures."""
    homes = nats.nodes_of(client)
    assert len(homes) == 1, f"the controller's client {client} should be on one node, found on {homes}"
    victim = homes[0]
    others = [n for n in nats.monitors if n != victim]
    if move_leaders:
        nats.move_leaders(victim)
    what = f"{victim} with every stream leader" if move_leaders else f"{victim} as found"
    say(f"round {round_}: clients: " + ", ".join(f"{n} on {nats.nodes_of(n) or '?'}" for n in (
        "vantage-operator", "vantage-registration", "vantage-collector", client)))
    say(f"round {round_}: leaders: {nats.leaders()}")
    say(f"round {round_}: SIGKILL {victim}")
    spooled_before = count_lines(c.logs("ctl-0"), "spooling to disk")
    killed_at = time.time()
    killed_wall = int(killed_at)
    killed = time.monotonic()
    nats.run("kill", victim)
    try:
        # A schedule change made after the kill: a new measurement on every probe.
        name = f"failover-after-{round_}"
        c.kubectl_apply(measurement(name, probes))
        if disable is not None:
            c.kubectl("patch", "probe", f"probe-{disable}", "--type=merge", "-p", json.dumps({"spec": {"enabled": False}}))
        moved = wait_for("the controller's client on a surviving node", lambda: nats.nodes_of(client, others), timeout=60, interval=0.1)
        reconnect_s = time.monotonic() - killed
        say(f"round {round_}: controller reconnected to {moved[0]} {reconnect_s:.2f} s after the kill")
        status = wait_for(f"measurement {name} on every probe",
                          lambda: (s := c.get("measurement", name, "default").get("status", {})).get("probeCount") == len(probes) and s,
                          timeout=60)
        wait_for(f"{name} results from every probe (the schedule change reached them)",
                 lambda: probes_with_results(c, status["id"]) >= set(probes), timeout=60, interval=1)
        wait_for("built-in pings measured after the kill stored from every probe",
                 lambda: probes_with_results(c, BUILTIN_PING, killed_wall + 1) >= set(probes), timeout=60, interval=1)
        say(f"round {round_}: {name} results from every probe {time.monotonic() - killed:.1f} s after the kill")
        dropped_s = None
        if disable is not None:
            line = wait_for(f"the session of probe {disable}, disabled after the kill, closed",
                            lambda: next((x for x in c.logs("ctl-0").splitlines() if f"probe disconnected probe={disable}" in x), None),
                            timeout=60, interval=0.2)
            dropped_s = log_time(line) - killed_at
            say(f"round {round_}: probe {disable}, disabled after the kill, lost its session {dropped_s:.1f} s after the kill")
        time.sleep(3)
        settled = time.monotonic()
        connected = [s[3] for s in list(sampler.samples) if s[3] is not None and killed <= s[0] <= settled]
        assert connected, "no sample of the controller's connected probes after the kill"
        assert min(connected) >= len(probes), f"round {round_}: connected probes dropped to {min(connected)} during the failover"
    finally:
        nats.run("start", victim)
        nats.run("wait-healthy")
        say(f"round {round_}: {victim} started again, cluster healthy")
    return {"round": round_, "what": what, "reconnect_s": reconnect_s,
            "gap_stored": sampler.longest_gap(1, killed, settled), "gap_taken": sampler.longest_gap(2, killed, settled),
            "spooled": count_lines(c.logs("ctl-0"), "spooling to disk") - spooled_before, "disabled_dropped_s": dropped_s}


@pytest.fixture(scope="module")
def nats():
    n = NatsCluster()
    n.run("wait-healthy")
    yield n
    # Whole again for the tests after this one (the test restarts its victim itself;
    # this catches a failure between the kill and that restart).
    for node in n.monitors:
        n.run("start", node)


@pytest.fixture(scope="module")
def cluster(nats):
    if not (STACK_DIR / "env").exists():
        pytest.skip(f"SKIPPED: {STACK_DIR}/env missing: needs ClickHouse and the Kubernetes stand-in of a single-node "
                    "stack (VANTAGE_STACK_DIR=... e2e/stack/stack.sh up); e2e/cluster/nats-tests.sh starts one")
    for b in ("vantage", "vantage-probe"):
        if not (BIN / b).exists():
            pytest.skip(f"SKIPPED: {BIN / b} missing: run cargo build -p vantage -p vantage-probe")
    c = Cluster(log=lambda *_: None)
    # The components reach NATS through the cluster's URL list, with three replicas.
    c.env["NATS_URL"] = nats.url
    c.env["NATS_REPLICAS"] = "3"
    try:
        c.start_servers(controllers=1, operator_args=OPERATOR_ARGS)
        yield c
    finally:
        c.stop_all()
        say(f"component logs: {c.tmp}")


def test_probes_keep_their_sessions_while_the_controller_fails_over(nats, cluster):
    c = cluster
    client = f"vantage-controller-ctl-0-{c.run_id}"

    # -- probes connected, results flowing ------------------------------------------
    probes = []
    for i in range(PROBES):
        pid, key, _ = c.add_probe_at("FO", 64900 + i, 62.0, -6.8, tags=["e2e", SCOPE])
        c.start_probe(pid, key)
        probes.append(pid)
    # One more probe, disabled during the second failover: it must lose its session then
    # (the registration server's revoke is retried while the assignments bucket elects a
    # leader), and is left out of the checks that every other probe kept its session.
    quitter, key, _ = c.add_probe_at("FO", 64899, 62.0, -6.8, tags=["e2e", SCOPE])
    c.start_probe(quitter, key)
    for pid in probes + [quitter]:
        wait_for(f"probe {pid} connected", lambda p=pid: c.get("probe", f"probe-{p}").get("status", {}).get("connected"), timeout=120)
    wait_for(f"{PROBES + 1} sessions on the controller",
             lambda: c.metric("ctl-0", "vantage_controller_connected_probes") == PROBES + 1, timeout=30)

    c.kubectl_apply(measurement("failover-before", probes))
    before = wait_for("measurement failover-before on every probe",
                      lambda: (s := c.get("measurement", "failover-before", "default").get("status", {})).get("probeCount") == PROBES and s,
                      timeout=60)
    wait_for("failover-before results from every probe", lambda: probes_with_results(c, before["id"]) >= set(probes), timeout=120, interval=1)
    wait_for("built-in ping results from every probe", lambda: probes_with_results(c, BUILTIN_PING) >= set(probes), timeout=60, interval=1)

    def session_counts() -> dict[str, object]:
        """Per probe (all but the quitter): each count grows with a new session."""
        return {
            "registrations": {p: count_lines(c.logs("registration"), f"probe registered probe={p} ") for p in probes},
            "controller sessions": {p: count_lines(c.logs("ctl-0"), f"probe connected probe={p} ") for p in probes},
            "controller disconnects": {p: count_lines(c.logs("ctl-0"), f"probe disconnected probe={p}") for p in probes},
            "probe sessions": {p: count_lines(c.logs(f"probe-{p}"), "session up") for p in probes},
            "probe reconnects": {p: count_lines(c.logs(f"probe-{p}"), "reconnecting after backoff") for p in probes},
        }

    sessions_before = session_counts()
    # What the comparison after the kills rests on: each of these counts a new session.
    for what in ("registrations", "controller sessions", "probe sessions"):
        assert all(n >= 1 for n in sessions_before[what].values()), (what, sessions_before[what])
    registrations_before = c.metric("registration", "vantage_registration_registrations")
    say(f"{PROBES + 1} probes connected; registrations {registrations_before:.0f}")

    # -- kill the controller's NATS node while results flow, twice ----------------------
    # Round 1 kills the node as found. Round 2 first moves the leaders of RESULTS, the
    # collector's consumer and every bucket to the controller's (new) node, so that its
    # client and every leader it talks to die at once.
    sampler = Sampler(c, probes)
    sampler.start()
    figures = []
    try:
        time.sleep(8)  # the normal rhythm of results, for comparison
        baseline_end = time.monotonic()
        figures.append(failover_round(c, nats, sampler, client, probes, 1, move_leaders=False))
        figures.append(failover_round(c, nats, sampler, client, probes, 2, move_leaders=True, disable=quitter))
    finally:
        sampler.halt.set()
        sampler.join(timeout=10)

    # -- figures -------------------------------------------------------------------------
    base_stored = sampler.longest_gap_within(1, sampler.samples[0][0], baseline_end)
    base_taken = sampler.longest_gap_within(2, sampler.samples[0][0], baseline_end)
    say(f"before any kill, longest gap: {base_stored:.2f} s in results stored, {base_taken:.2f} s in results taken")
    for f in figures:
        say(f"round {f['round']} ({f['what']}): controller reconnected to another node in {f['reconnect_s']:.2f} s; "
            f"longest gap {f['gap_stored']:.2f} s in results stored in ClickHouse, {f['gap_taken']:.2f} s in results "
            f"taken by the controller; spooled to disk: {f['spooled']}")

    # -- every probe kept its session --------------------------------------------------
    sessions_after = session_counts()
    assert sessions_after == sessions_before, (
        "a probe lost its session during the failovers (registered or connected again): "
        f"before {sessions_before}, after {sessions_after}")
    dead = [p for p in probes if c.procs[f"probe-{p}"].poll() is not None]
    assert not dead, f"probe agents exited: {dead}"
    assert c.metric("registration", "vantage_registration_registrations") == registrations_before, \
        "a probe registered again (the disabled one may not)"
    assert c.metric("ctl-0", "vantage_controller_connected_probes") == PROBES, "the disabled probe is connected again"
    for f in figures:
        assert f["gap_stored"] < 60, f"round {f['round']}: results stopped for {f['gap_stored']:.1f} s"
    # Leader election (seconds) plus the revoke's backoff (at most 5 s); without retries
    # the revoke waited for an unrelated change of the Probe (21 s in one run, or forever).
    assert figures[1]["disabled_dropped_s"] < 20, f"the disabled probe kept its session {figures[1]['disabled_dropped_s']:.1f} s"

    # -- every result taken stored, each id exactly once ----------------------------------
    for pid in probes + [quitter]:
        c.stop(f"probe-{pid}")
    taken = c.metric("ctl-0", "vantage_controller_results")
    where = f"prb_id IN ({','.join(map(str, probes + [quitter]))})"
    wait_for(f"the {taken:.0f} results the controller took stored",
             lambda: int(c.ch.query(f"SELECT uniqExact(result_id) FROM {c.db}.results WHERE {where}").strip()) >= taken,
             timeout=90, interval=1)
    stored = int(c.ch.query(f"SELECT uniqExact(result_id) FROM {c.db}.results WHERE {where}").strip())
    assert stored == taken, f"{stored} result ids stored, the controller took {taken:.0f} from the probes"
    twice = c.ch.rows(f"SELECT result_id, count() AS n FROM {c.db}.results FINAL WHERE {where} GROUP BY result_id HAVING n > 1 LIMIT 5")
    assert not twice, f"result ids stored more than once: {twice}"
    raw = int(c.ch.query(f"SELECT count() FROM {c.db}.results WHERE {where}").strip())
    assert c.metric("ctl-0", 'vantage_controller_dropped_total{reason="spool_failed"}') == 0
    say(f"{stored} results stored, each once (raw rows before merges: {raw})")
