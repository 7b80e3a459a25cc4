"""End to end: one real ping measurement through every component, and bad input.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build); `make test`
provides both.
"""

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dashboards import clickhouse_panels, expand  # noqa: E402
from vantage_e2e import SSH_OPTS, connected_probe, free_port, running_cluster, wait_for  # noqa: E402

from ripe.atlas.sagan import PingResult  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with running_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def probe(cluster):
    return connected_probe(cluster, country="NL", asn=64501)


def measurement(name: str, **spec) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def test_probe_session_is_on_its_controller(cluster, probe):
    status = cluster.get("probe", f"probe-{probe}")["status"]
    assert status["connected"] is True
    assert status["controller"] == f"ctl-0-{cluster.run_id}"
    assert status["address"] == "127.0.0.1"
    assert cluster.metric("ctl-0", "vantage_controller_connected_probes") >= 1
    assert "probe registered" in cluster.logs("registration")


def test_ping_measurement_end_to_end(cluster, probe):
    name = f"ping-{probe}"
    cluster.kubectl_apply(measurement(name, type="ping", target="127.0.0.1", packets=4, packet_interval=100, interval=60, spread=0,
                                      probes=[{"type": "probes", "value": str(probe), "requested": 1}]))
    # The operator selects the probe, sends the schedule, and folds the result count in.
    status = wait_for("a result in the Measurement status",
                      lambda: (s := cluster.get("measurement", name, "default").get("status", {})).get("results", 0) >= 1 and s, timeout=90)
    assert status["state"] == "Ongoing"
    assert status["probes"] == [probe] and status["probeCount"] == 1
    assert condition({"status": status}, "Ready")["status"] == "True"
    assert condition({"status": status}, "Invalid")["status"] == "False"
    msm_id = status["id"]
    table = cluster.kubectl("get", "measurements", "-n", "default")
    line = next(l for l in table.splitlines() if l.startswith(name + " "))
    assert str(msm_id) in line and "Ongoing" in line and "127.0.0.1" in line, table

    rows = cluster.ch.rows(f"SELECT * FROM {cluster.db}.results FINAL WHERE msm_id = {msm_id}")
    assert rows, "no result row in ClickHouse"
    row = rows[0]
    assert row["prb_id"] == probe and row["type"] == "ping" and row["sent"] == 4
    parsed = PingResult(json.loads(row["raw"]))
    assert not parsed.is_error
    assert parsed.measurement_id == msm_id and parsed.probe_id == probe
    assert parsed.packets_sent == 4 and parsed.packets_received == row["rcvd"] >= 1
    assert parsed.rtt_min == pytest.approx(row["rtt_min"]) and parsed.rtt_max == pytest.approx(row["rtt_max"])
    assert parsed.rtt_average == pytest.approx(row["rtt_avg"], abs=0.001)
    rtts = [p.rtt for p in parsed.packets if p.rtt is not None]
    assert rtts and all(0 < r < 50 for r in rtts), rtts
    assert min(rtts) == pytest.approx(row["rtt_min"])

    # Deleting the Measurement (a finalizer) clears it from the probe's schedule.
    def schedules_sent():
        return [l for l in cluster.logs("ctl-0").splitlines() if f"schedule sent probe={probe} " in l]

    before = len(schedules_sent())
    cluster.kubectl("delete", "measurement", name, "-n", "default", "--wait=true", "--timeout=30s")
    wait_for("an empty schedule sent to the probe", lambda: any("tasks=0" in l for l in schedules_sent()[before:]), timeout=30)
    gone = cluster.kubectl_run("get", "measurement", name, "-n", "default")
    assert gone.returncode != 0 and "NotFound" in gone.stderr and f'"{name}" not found' in gone.stderr, gone


def test_dashboard_panels_return_rows_for_the_real_results(cluster, probe):
    """Every ClickHouse panel over the results (not the OONI fastpath) returns rows for
    the traffic of this module: the ping measurement above, through every component,
    and the probe's country written into `probes` by the operator."""
    wait_for("the probe in the probes table (operator)",
             lambda: cluster.ch.rows(f"SELECT country_code FROM {cluster.db}.probes FINAL WHERE prb_id = {probe}"), timeout=40)
    now = int(time.time())
    checked = []
    for name, panel, target in clickhouse_panels():
        if "fastpath" in target["rawSql"]:
            continue
        sql = expand(target["rawSql"], db=cluster.db, start=now - 3600, end=now + 300, interval_s=60)
        got = cluster.ch.rows(sql)
        assert got, f"no rows from {name} / {panel['title']}:\n{sql}"
        checked.append(panel["title"])
        if panel["title"] == "RTT by country":
            assert [r["country"] for r in got] == ["NL"], got
    assert {"Results per type", "RTT by country", "Ingest lag", "Ping packet loss"} <= set(checked), checked


@pytest.mark.parametrize("spec,field", [
    ({"type": "pong", "target": "127.0.0.1"}, "spec.type"),
    ({"type": "ping", "target": "not a host"}, "spec.target"),
    ({"type": "ping", "target": "127.0.0.1", "packets": -2}, "spec.packets"),
])
def test_invalid_measurement_gets_invalid_condition(cluster, spec, field):
    name = f"bad-{uuid.uuid4().hex[:8]}"
    cluster.kubectl_apply(measurement(name, probes=[{"type": "area", "value": "WW", "requested": 1}], **spec))
    obj = wait_for("the Invalid condition", lambda: (o := cluster.get("measurement", name, "default")) and condition(o, "Invalid") and o, timeout=30)
    invalid = condition(obj, "Invalid")
    assert invalid["status"] == "True" and invalid["reason"] == "InvalidSpec"
    assert invalid["message"].startswith(field), invalid["message"]
    assert obj["status"]["state"] == "Failed"
    cluster.kubectl("delete", "measurement", name, "-n", "default", "--wait=true", "--timeout=30s")


def test_measurement_without_target_is_refused_at_admission(cluster):
    """The CRD's CEL rule (x-kubernetes-validations on spec) refuses a ping without a target:
    the API server answers 422 Invalid and kubectl prints the rule's message; no object is stored."""
    name = f"bad-{uuid.uuid4().hex[:8]}"
    out = cluster.kubectl_run("apply", "-f", "-", input=json.dumps(
        measurement(name, type="ping", probes=[{"type": "area", "value": "WW", "requested": 1}])))
    assert out.returncode != 0, out.stdout
    assert f'The Measurement "{name}" is invalid: spec.target: Required value: ' \
        "target is required unless type is dns with use_probe_resolver: true" in out.stderr, out.stderr
    missing = cluster.kubectl_run("get", "measurement", name, "-n", "default")
    assert missing.returncode != 0 and "NotFound" in missing.stderr, missing


def test_unknown_key_is_refused_and_logged(cluster, probe):
    pid, key, _ = cluster.add_probe(register=False)
    cluster.start_probe(pid, key)
    wait_for("the refusal in the registration log", lambda: "refused: no Probe resource lists this key" in cluster.logs("registration"), timeout=30)
    assert cluster.metric("registration", 'vantage_registration_refused_total{reason="unknown_key"}') >= 1
    cluster.stop(f"probe-{pid}")
    # The good probe is still connected.
    assert cluster.get("probe", f"probe-{probe}")["status"]["connected"] is True




def test_openssh_client_malformed_result_is_dropped_and_session_stays(cluster, probe):
    """A real OpenSSH client registers, opens the intake forward, sends junk then a result."""
    pid, key, _ = cluster.add_probe(country="NL", asn=64502)
    reg = cluster.register_with_openssh(pid, key)
    assert reg["probe_id"] == pid and reg["controller"].startswith("ctl-0")
    host, port = reg["controller_addr"].rsplit(":", 1)
    local = free_port()
    forbidden = free_port()
    ssh = subprocess.Popen(["ssh", *SSH_OPTS, "-i", str(key), "-p", port, "-N",
                            "-L", f"127.0.0.1:{local}:127.0.0.1:8080", "-L", f"127.0.0.1:{forbidden}:127.0.0.1:22", f"probe@{host}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        conn = wait_for("the local forward", lambda: socket.create_connection(("127.0.0.1", local), timeout=2), timeout=20)
        result_id = str(uuid.uuid4())
        good = {"kind": "result", "v": 1, "result": {
            "result_id": result_id, "fw": 5020, "lts": -1, "msm_id": 999, "prb_id": pid, "timestamp": int(time.time()), "type": "ping",
            "af": 4, "from": "127.0.0.1", "src_addr": "127.0.0.1", "dst_addr": "127.0.0.1", "dst_name": "127.0.0.1", "proto": "ICMP",
            "size": 48, "step": None, "ttl": 64, "sent": 1, "rcvd": 1, "dup": 0, "min": 0.1, "avg": 0.1, "max": 0.1, "result": [{"rtt": 0.1}]}}
        spoofed = json.loads(json.dumps(good))
        spoofed["result"]["prb_id"] = probe
        spoofed["result"]["result_id"] = str(uuid.uuid4())
        conn.sendall(b"{this is not json\n" + json.dumps(spoofed).encode() + b"\n" + json.dumps(good).encode() + b"\n")
        wait_for("the good result in ClickHouse",
                 lambda: cluster.ch.rows(f"SELECT result_id FROM {cluster.db}.results WHERE result_id = '{result_id}'"), timeout=30)
        assert cluster.metric("ctl-0", 'vantage_controller_dropped_total{reason="malformed"}') >= 1
        assert cluster.metric("ctl-0", 'vantage_controller_dropped_total{reason="wrong_probe"}') >= 1
        assert ssh.poll() is None, "the session must stay up after a malformed frame"
        # A forward to anything but the intake is refused.
        with socket.create_connection(("127.0.0.1", forbidden), timeout=5) as s:
            s.settimeout(5)
            assert s.recv(16) == b""
        wait_for("the refused forward counted", lambda: cluster.metric("ctl-0", 'vantage_controller_refused_total{reason="local_forward"}') >= 1, timeout=10)
        conn.close()
    finally:
        ssh.terminate()
        ssh.wait(timeout=10)


def test_unassigned_key_is_refused_by_controller(cluster):
    """A probe known to registration but never assigned here cannot log in to the controller."""
    pid, key, _ = cluster.add_probe()
    out = subprocess.run(["ssh", *SSH_OPTS, "-i", str(key), "-p", str(cluster.ports["ctl-0"]), "-N", "probe@127.0.0.1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "Permission denied" in out.stderr, out.stderr
    assert cluster.metric("ctl-0", 'vantage_controller_refused_total{reason="not_assigned"}') >= 1



def test_openssh_remote_forward_only_for_the_allocated_port(cluster):
    """OpenSSH as a probe: `-R` of the allocated port carries the schedule; any other is refused."""
    pid, key, _ = cluster.add_probe()
    reg = cluster.register_with_openssh(pid, key)
    host, port = reg["controller_addr"].rsplit(":", 1)

    wrong = subprocess.run(["ssh", *SSH_OPTS, "-i", str(key), "-p", port, "-N", "-o", "ExitOnForwardFailure=yes",
                            "-R", f"127.0.0.1:{reg['command_port'] + 1}:127.0.0.1:9", f"probe@{host}"],
                           capture_output=True, text=True, timeout=30)
    assert wrong.returncode != 0 and "forwarding failed" in wrong.stderr, wrong.stderr
    assert cluster.metric("ctl-0", 'vantage_controller_refused_total{reason="remote_forward"}') >= 1

    # The allowed forward: the controller opens the command channel through it, and the
    # schedule arrives at whatever listens behind the probe's end.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(20)
        ssh = subprocess.Popen(["ssh", *SSH_OPTS, "-i", str(key), "-p", port, "-N", "-o", "ExitOnForwardFailure=yes",
                                "-R", f"127.0.0.1:{reg['command_port']}:127.0.0.1:{listener.getsockname()[1]}", f"probe@{host}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(20)
                line = conn.makefile("rb").readline()
            frame = json.loads(line)
            assert frame["cmd"] == "schedule" and frame["v"] == 1 and frame["tasks"] == []
        finally:
            ssh.terminate()
            ssh.wait(timeout=10)
