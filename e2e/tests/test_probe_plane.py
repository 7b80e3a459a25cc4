"""The probe plane under stress: disabling, controller death and drain, and a NATS outage.

Two controllers, real probes and real OpenSSH clients, on the local stack.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import Cluster, SSH_OPTS, STACK_DIR, free_port, nats_publish, running_cluster, wait_for  # noqa: E402



@pytest.fixture(scope="module")
def cluster():
    with running_cluster(controllers=2) as c:
        yield c


def controller_of(cluster: Cluster, pid: int) -> str | None:
    status = cluster.get("probe", f"probe-{pid}").get("status", {})
    return status.get("controller") if status.get("connected") else None


def start_connected_probe(cluster: Cluster) -> int:
    pid, key, _ = cluster.add_probe()
    cluster.start_probe(pid, key)
    wait_for(f"probe {pid} connected", lambda: controller_of(cluster, pid), timeout=60)
    return pid


def ctl_index(cluster: Cluster, controller: str) -> int:
    return int(controller.split("-")[1])


def test_disabling_a_probe_drops_its_session_within_2s_and_refuses_it(cluster):
    pid = start_connected_probe(cluster)
    ctl = ctl_index(cluster, controller_of(cluster, pid))
    connected = lambda: cluster.metric(f"ctl-{ctl}", "vantage_controller_connected_probes")  # noqa: E731
    before = connected()
    assert before >= 1
    started = time.monotonic()
    cluster.kubectl("patch", "probe", f"probe-{pid}", "--type=merge", "-p", json.dumps({"spec": {"enabled": False}}))
    wait_for("the session to close", lambda: connected() < before, timeout=5, interval=0.05)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"session closed after {elapsed:.2f}s"
    wait_for("the reconnect refused", lambda: f"probe={pid}" in cluster.logs("registration")
             and "refused: probe is disabled" in cluster.logs("registration"), timeout=20)
    assert cluster.metric("registration", 'vantage_registration_refused_total{reason="disabled"}') >= 1
    cluster.stop(f"probe-{pid}")


def test_killed_controller_probes_land_on_the_other_within_30s(cluster):
    pid = start_connected_probe(cluster)
    victim = ctl_index(cluster, controller_of(cluster, pid))
    other = 1 - victim
    cluster.procs[f"ctl-{victim}"].send_signal(signal.SIGKILL)
    started = time.monotonic()
    wait_for("the probe on the surviving controller",
             lambda: (c := controller_of(cluster, pid)) and ctl_index(cluster, c) == other, timeout=30)
    moved_after = time.monotonic() - started
    assert moved_after < 30
    # Bring the victim back (same name, same port) for the tests that follow.
    cluster.procs.pop(f"ctl-{victim}").wait(timeout=5)
    cluster.restart_controller(victim)
    cluster.stop(f"probe-{pid}")


def test_draining_controller_sends_probes_back_to_registration(cluster):
    pid = start_connected_probe(cluster)
    victim = ctl_index(cluster, controller_of(cluster, pid))
    other = 1 - victim
    started = time.monotonic()
    cluster.stop(f"ctl-{victim}")  # SIGTERM: drain
    wait_for("the drained probe on the other controller",
             lambda: (c := controller_of(cluster, pid)) and ctl_index(cluster, c) == other, timeout=20)
    assert time.monotonic() - started < 20
    assert "draining: sending probes back to registration" in cluster.logs(f"ctl-{victim}")
    cluster.restart_controller(victim)
    cluster.stop(f"probe-{pid}")


def test_drain_key_from_the_operator_drains_and_can_be_called_off(cluster):
    """The operator's scale-down signal (`vantage-meta/drain.<controller>`, written by the
    ControllerPool reconciler) makes a controller send its probes back to registration
    and refuse new ones; deleting the key ends the drain."""
    pid = start_connected_probe(cluster)
    victim = ctl_index(cluster, controller_of(cluster, pid))
    other = 1 - victim
    name = f"ctl-{victim}-{cluster.run_id}"
    nats_publish(f"$KV.vantage-meta.drain.{name}", b"{}")
    wait_for("the drained probe on the other controller",
             lambda: (c := controller_of(cluster, pid)) and ctl_index(cluster, c) == other, timeout=20)
    assert "the operator asks this controller to drain" in cluster.logs(f"ctl-{victim}")
    # The draining controller is the idle one, yet a new probe is not sent to it.
    newcomer = start_connected_probe(cluster)
    assert ctl_index(cluster, controller_of(cluster, newcomer)) == other
    # A KV delete (what the operator does when load comes back) calls the drain off.
    nats_publish(f"$KV.vantage-meta.drain.{name}", headers={"KV-Operation": "DEL"})
    wait_for("drain called off", lambda: "drain called off" in cluster.logs(f"ctl-{victim}"), timeout=10)
    cluster.stop(f"probe-{pid}")
    cluster.stop(f"probe-{newcomer}")


def test_nats_outage_loses_nothing_and_stores_each_result_once(cluster):
    """Results sent while NATS is frozen for 30 s are spooled and all arrive, once each."""
    pid, key, _ = cluster.add_probe()
    reg = cluster.register_with_openssh(pid, key)
    host, port = reg["controller_addr"].rsplit(":", 1)
    local = free_port()
    ssh = subprocess.Popen(["ssh", *SSH_OPTS, "-i", str(key), "-p", port, "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:8080", f"probe@{host}"])
    nats_pid = int((STACK_DIR / "pids" / "nats.pid").read_text().split()[0])
    ids = [str(uuid.uuid4()) for _ in range(300)]
    try:
        conn = wait_for("the intake forward", lambda: socket.create_connection(("127.0.0.1", local), timeout=2), timeout=20)

        def send(batch):
            lines = []
            for rid in batch:
                lines.append(json.dumps({"kind": "result", "v": 1, "result": {
                    "result_id": rid, "fw": 5020, "lts": -1, "msm_id": 4242, "prb_id": pid, "timestamp": int(time.time()),
                    "type": "ping", "af": 4, "from": "127.0.0.1", "src_addr": "127.0.0.1", "dst_addr": "127.0.0.1",
                    "dst_name": "127.0.0.1", "proto": "ICMP", "size": 48, "step": None, "ttl": 64, "sent": 1, "rcvd": 1,
                    "dup": 0, "min": 0.1, "avg": 0.1, "max": 0.1, "result": [{"rtt": 0.1}]}}))
            conn.sendall(("\n".join(lines) + "\n").encode())

        send(ids[:100])  # before the outage
        time.sleep(1)
        os.kill(nats_pid, signal.SIGSTOP)
        try:
            send(ids[100:250])  # during the outage
            time.sleep(30)
        finally:
            os.kill(nats_pid, signal.SIGCONT)
        send(ids[250:])  # after
        ctl = f"ctl-{reg['controller'].split('-')[1]}"
        db = cluster.db
        wait_for("every result in ClickHouse", lambda: int(cluster.ch.query(
            f"SELECT uniqExact(result_id) FROM {db}.results WHERE msm_id = 4242 AND prb_id = {pid}").strip()) == len(ids), timeout=90, interval=1)
        stored = cluster.ch.rows(f"SELECT result_id, count() AS n FROM {db}.results FINAL WHERE msm_id = 4242 AND prb_id = {pid} GROUP BY result_id")
        assert sorted(r["result_id"] for r in stored) == sorted(ids)
        assert all(int(r["n"]) == 1 for r in stored), [r for r in stored if int(r["n"]) != 1][:5]
        assert "spooling to disk" in cluster.logs(ctl), "the outage should have been spooled"
        assert "flushed spooled results" in cluster.logs(ctl)
        conn.close()
    finally:
        os.kill(nats_pid, signal.SIGCONT)
        ssh.terminate()
        ssh.wait(timeout=10)
