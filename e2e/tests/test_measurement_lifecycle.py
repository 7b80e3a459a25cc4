"""End to end: a periodic Measurement with several sources runs on every chosen probe,
and `kubectl delete` stops it on every probe.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import running_cluster, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with running_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def probes(cluster):
    """Two NL probes in different networks and one DE probe, all connected."""
    out = []
    for country, asn in [("NL", 64601), ("NL", 64602), ("DE", 64603)]:
        pid, key, _ = cluster.add_probe(country=country, asn=asn)
        cluster.start_probe(pid, key)
        out.append(pid)
    for pid in out:
        wait_for(f"probe {pid} connected", lambda p=pid: cluster.get("probe", f"probe-{p}").get("status", {}).get("connected"), timeout=60)
    return out


def results_by_probe(cluster, msm_id: int) -> dict[int, int]:
    rows = cluster.ch.rows(f"SELECT prb_id, count() AS n FROM {cluster.db}.results FINAL WHERE msm_id = {msm_id} GROUP BY prb_id")
    return {int(r["prb_id"]): int(r["n"]) for r in rows}


def test_periodic_measurement_with_several_sources_runs_and_delete_stops_it_everywhere(cluster, probes):
    nl1, nl2, de = probes
    name = "periodic-multi"
    cluster.kubectl_apply({
        "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "ping", "target": "127.0.0.1", "packets": 2, "packet_interval": 100, "interval": 60, "spread": 0,
                 "description": "e2e: country + probe ids",
                 "probes": [{"type": "country", "value": "NL", "requested": 2, "tags": {"include": ["e2e"]}},
                            {"type": "probes", "value": str(de), "requested": 1}]},
    })
    status = wait_for("all three probes chosen", lambda: (s := cluster.get("measurement", name, "default").get("status", {})).get("probeCount") == 3 and s, timeout=60)
    assert status["state"] == "Ongoing"
    assert sorted(status["probes"]) == sorted(probes)
    msm_id = status["id"]
    # Results arrive in ClickHouse from every probe.
    by_probe = wait_for("results from all three probes", lambda: (r := results_by_probe(cluster, msm_id)) and len(r) == 3 and r, timeout=120)
    assert set(by_probe) == {nl1, nl2, de}
    wait_for("results counted in status", lambda: cluster.get("measurement", name, "default")["status"].get("results", 0) >= 3, timeout=30)

    # kubectl delete stops it on every probe: each probe's controller sends it a schedule
    # without the measurement, and the operator's finalizer goes only after that.
    def schedules_sent(pid):
        return [line for line in cluster.logs("ctl-0").splitlines() if f"schedule sent probe={pid} " in line]

    before = {pid: len(schedules_sent(pid)) for pid in probes}
    cluster.kubectl("delete", "measurement", name, "-n", "default", "--wait=true", "--timeout=60s")
    for pid in probes:
        wait_for(f"an empty schedule sent to probe {pid}", lambda p=pid: any("tasks=0" in line for line in schedules_sent(p)[before[p]:]), timeout=30)
    assert cluster.kubectl("get", "measurement", name, "-n", "default", "--ignore-not-found").strip() == ""
    # No new results after the stop: wait out one interval (plus results in flight).
    time.sleep(5)
    settled = results_by_probe(cluster, msm_id)
    time.sleep(65)
    assert results_by_probe(cluster, msm_id) == settled, "a probe kept running the deleted measurement"
