"""End to end: selection spreads measurements over probes by load, skips full probes
(`--max-measurements-per-probe`), and refuses `requested` above the cluster maximum
(`--max-requested`) with an Invalid condition that names it.

The operator runs with a cap of 2 measurements per probe and a maximum of 5 probes per
measurement (through their environment variables). Needs the local stack
(e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import Cluster, connected_probe, wait_for  # noqa: E402

CAP = 2
MAX_REQUESTED = 5


@pytest.fixture(scope="module")
def cluster():
    """Operator and the rest, with the cap and maximum above; `c.ns` is a namespace of
    this run's own, so no Measurement of an earlier run is mistaken for one of this."""
    c = Cluster(log=lambda *_: None)
    c.env["VANTAGE_MAX_MEASUREMENTS_PER_PROBE"] = str(CAP)
    c.env["VANTAGE_MAX_REQUESTED"] = str(MAX_REQUESTED)
    c.ns = f"select-{c.run_id}".replace("_", "-")
    try:
        c.start_servers()
        c.kubectl_apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": c.ns}})
        yield c
    finally:
        # While the operator runs, so that their finalizers go.
        c.kubectl("delete", "measurements", "--all", "-n", c.ns, "--wait=true", "--timeout=60s", check=False)
        c.stop_all()
        c.kubectl("delete", "namespace", c.ns, "--wait=false", check=False)
        print(f"component logs: {c.tmp}")


@pytest.fixture(scope="module")
def probes(cluster):
    """Three connected probes, each in a network of its own."""
    return [connected_probe(cluster, country="NL", asn=64700 + i) for i in range(3)]


def measurement(cluster, name: str, sources: list[dict]):
    cluster.kubectl_apply({
        "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
        "metadata": {"name": name, "namespace": cluster.ns},
        "spec": {"type": "ping", "target": "127.0.0.1", "packets": 1, "interval": 300,
                 "description": "e2e: selection", "probes": sources},
    })


def status(cluster, name: str) -> dict:
    return cluster.get("measurement", name, cluster.ns).get("status", {})


def settled(cluster, name: str) -> dict:
    """The status once the operator has decided a state with probes or without."""
    return wait_for(f"{name} decided", lambda: (s := status(cluster, name)).get("state") in ("Ongoing", "NoSuitableProbes", "Failed") and s, timeout=60)


def test_measurements_spread_over_probes_and_a_full_probe_is_skipped(cluster, probes):
    listed = {"type": "probes", "value": ",".join(map(str, probes)), "requested": 1}
    # Six one-probe measurements over three probes: each probe gets one before any gets
    # a second (the least-loaded probe first).
    chosen = []
    for i in range(6):
        name = f"select-{i}"
        measurement(cluster, name, [listed])
        s = settled(cluster, name)
        assert s["state"] == "Ongoing", s
        assert len(s["probes"]) == 1, s
        chosen.append(s["probes"][0])
        if i == 2:
            assert sorted(chosen) == sorted(probes), f"the first three share probes: {chosen}"
    assert sorted(chosen) == sorted(probes * 2), f"loads are not 2, 2, 2: {chosen}"

    # Every probe is full (2 measurements each): a seventh finds none.
    measurement(cluster, "select-full", [listed])
    s = settled(cluster, "select-full")
    assert s["state"] == "NoSuitableProbes", s
    assert s.get("probes", []) == [], s
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert f"on fewer than {CAP} measurements" in ready["message"], ready

    # Deleting one frees its probe, and the waiting measurement takes that one.
    freed = status(cluster, "select-0")["probes"][0]
    cluster.kubectl("delete", "measurement", "select-0", "-n", cluster.ns, "--wait=true", "--timeout=60s")
    s = wait_for("the waiting measurement to take the freed probe", lambda: (s := status(cluster, "select-full")).get("state") == "Ongoing" and s, timeout=60)
    assert s["probes"] == [freed], s


def test_requested_above_the_cluster_maximum_is_invalid_and_names_it(cluster, probes):
    name = "select-too-many"
    measurement(cluster, name, [{"type": "area", "value": "WW", "requested": MAX_REQUESTED + 1}])
    s = settled(cluster, name)
    assert s["state"] == "Failed", s
    invalid = next(c for c in s["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True", invalid
    assert invalid["reason"] == "InvalidSpec", invalid
    assert invalid["message"].startswith(f"spec.probes[0].requested: {MAX_REQUESTED + 1} is above this cluster's maximum of {MAX_REQUESTED}"), invalid
    assert "--max-requested" in invalid["message"], invalid
    assert s.get("probes", []) == [], s
    # At the maximum it runs.
    measurement(cluster, "select-at-max", [{"type": "probes", "value": ",".join(map(str, probes)), "requested": 1},
                                           {"type": "area", "value": "WW", "requested": MAX_REQUESTED - 1}])
    # (every listed probe is full by now, so it may wait for probes: it is not Failed)
    s = settled(cluster, "select-at-max")
    assert s["state"] in ("Ongoing", "NoSuitableProbes"), s
