"""End to end: a namespace's TenantPolicy limits Measurements (docs/TENANCY.md).

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import connected_probe, running_cluster, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with running_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def probe(cluster):
    return connected_probe(cluster, country="NL", asn=64700)


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def measurement(name: str, ns: str, probe: int, requested: int = 1) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ping", "target": "127.0.0.1", "interval": 300,
                     "probes": [{"type": "probes", "value": str(probe), "requested": 1},
                                {"type": "area", "value": "WW", "requested": requested - 1}] if requested > 1 else
                               [{"type": "probes", "value": str(probe), "requested": 1}]}}


def test_over_limit_measurement_is_limited_and_runs_once_it_fits(cluster, probe):
    ns = f"team-{cluster.run_id}".replace("_", "-")
    assert cluster.kubectl("create", "namespace", ns).strip() == f"namespace/{ns} created"
    assert cluster.get("namespace", ns)["status"]["phase"] == "Active"
    cluster.kubectl_apply({"apiVersion": "vantage.dev/v1alpha1", "kind": "TenantPolicy", "metadata": {"name": "default", "namespace": ns},
                           "spec": {"max_concurrent_measurements": 1, "max_probes_per_measurement": 2}})
    wait_for("the operator to see the policy", lambda: cluster.get("tenantpolicy", "default", ns).get("status"), timeout=30)

    cluster.kubectl_apply(measurement("first", ns, probe))
    wait_for("first Ongoing", lambda: cluster.get("measurement", "first", ns).get("status", {}).get("state") == "Ongoing", timeout=60)

    # A second one: over max_concurrent_measurements.
    cluster.kubectl_apply(measurement("second", ns, probe))
    second = wait_for("second Limited", lambda: (m := cluster.get("measurement", "second", ns)).get("status", {}).get("state") == "Limited" and m, timeout=60)
    limited = condition(second, "Limited")
    assert limited["status"] == "True" and limited["reason"] == "MaxConcurrentMeasurements"
    assert "allows 1 at once" in limited["message"] and f"TenantPolicy {ns}/default" in limited["message"]
    assert second["status"]["limitedBy"] == "max_concurrent_measurements"
    assert "id" not in second["status"] and second["status"]["probes"] == []
    table = cluster.kubectl("get", "msm", "-n", ns)
    assert any(line.startswith("second ") and "Limited" in line for line in table.splitlines()), table

    # A third: over max_probes_per_measurement (3 requested, 2 allowed).
    cluster.kubectl_apply(measurement("third", ns, probe, requested=3))
    third = wait_for("third Limited", lambda: (m := cluster.get("measurement", "third", ns)).get("status", {}).get("state") == "Limited" and m, timeout=60)
    assert condition(third, "Limited")["reason"] == "MaxProbesPerMeasurement"
    assert "request 3 probes" in condition(third, "Limited")["message"]

    # The policy's status shows the usage.
    usage = wait_for("policy usage", lambda: (u := cluster.get("tenantpolicy", "default", ns).get("status", {}).get("usage", {})).get("limited") == 2 and u, timeout=30)
    assert usage["measurements"] == 1 and usage["probes"] == 1 and usage["resultsPerDay"] == 288
    table = cluster.kubectl("get", "tpol", "-n", ns).splitlines()
    assert table[0].split()[:6] == ["NAME", "MEASUREMENTS", "MAXMEASUREMENTS", "RESULTSPERDAY", "MAXRESULTSPERDAY", "LIMITED"], table
    assert table[1].split()[:5] == ["default", "1", "1", "288", "2"], table

    # Deleting the first frees the slot: the second runs.
    cluster.kubectl("delete", "measurement", "first", "-n", ns, "--wait=true", "--timeout=60s")
    wait_for("second Ongoing", lambda: cluster.get("measurement", "second", ns).get("status", {}).get("state") == "Ongoing", timeout=60)
    second = cluster.get("measurement", "second", ns)
    assert condition(second, "Limited")["status"] == "False" and second["status"]["probes"] == [probe]
    assert "limitedBy" not in second["status"]
    for name in ("second", "third"):
        cluster.kubectl("delete", "measurement", name, "-n", ns, "--wait=true", "--timeout=60s")
