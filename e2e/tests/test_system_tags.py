"""End to end: built-in measurements and RIPE Atlas system tags.

The operator runs with local built-ins (ping and traceroute to 127.0.0.1, a DNS check
through each probe's resolvers) and short intervals. Every probe runs them, their
results land in ClickHouse under the reserved ids, and the operator tags each probe
`system-ipv4-works` in its status. Two anchors ping each other and the plain probe pings
both (the anchoring mesh: a probe without a location pings anchors chosen by a hash).
`/api/v2/probes` lists user and system tags the RIPE Atlas way, and a measurement made
with cousteau and the default filter of RIPE Atlas clients (`system-ipv4-works`, which
ripe-atlas-tools adds to every IPv4 measurement; cousteau's AtlasSource itself sends no
tag filter) gets probes. Then the built-in target stops answering (the operator is
restarted with an unanswered target and no probe→anchor pings, `--builtin-mesh-near 0
--builtin-mesh-spread 0`): the plain probe loses `system-ipv4-works` within the stated
delay (window 8 s + period 2 s + status write), the anchors keep it (their mesh pings
are answered), and it comes back when the target answers again.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import json
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import running_cluster, wait_for  # noqa: E402

from ripe.atlas.cousteau import AtlasCreateRequest, AtlasSource, Ping  # noqa: E402

WINDOW, PERIOD = 8, 2
# Built-ins and system tags for this run's probes only: e2e runs share the stack's
# Kubernetes stand-in and NATS, and another run's probes must not get these schedules.
SCOPE = f"systags-{uuid.uuid4().hex[:8]}"
BUILTINS = ["--builtin-probe-tag", SCOPE, "--builtin-ping-interval", "2", "--builtin-traceroute-interval", "10",
            "--builtin-dns-name", "localhost", "--builtin-dns-interval", "10",
            "--system-tags-period-secs", str(PERIOD), "--system-tags-window-secs", str(WINDOW)]
ANSWERED = ["--builtin-targets", "127.0.0.1", *BUILTINS]
# TEST-NET-3 (RFC 5737): nothing answers there (TEST-NET-1 is this sandbox's own network).
# The plain probe's answered anchor pings would keep its tag: turn them off.
UNANSWERED = ["--builtin-targets", "203.0.113.1", "--builtin-mesh-near", "0", "--builtin-mesh-spread", "0", *BUILTINS]


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(operator_args=ANSWERED) as c:
        yield c


@pytest.fixture(scope="module")
def probes(cluster):
    """Two anchors and one plain probe, connected; returns (anchor, anchor, plain). In
    Iceland, so that measurements of e2e runs sharing the stack do not choose them."""
    out = []
    for i, asn in enumerate([64701, 64702, 64703]):
        pid, key, _ = cluster.add_probe(country="IS", asn=asn)
        spec = {"tags": ["e2e", SCOPE], "anchor": i < 2}
        cluster.kubectl("patch", "probe", f"probe-{pid}", "--type=merge", "-p", json.dumps({"spec": spec}))
        cluster.start_probe(pid, key)
        out.append(pid)
    for pid in out:
        wait_for(f"probe {pid} connected", lambda p=pid: status(cluster, p).get("connected"), timeout=60)
    yield tuple(out)
    # Anchors stay targets of every later run's mesh on the shared stand-in: remove them.
    for pid in out:
        cluster.stop(f"probe-{pid}")
        cluster.kubectl("delete", "probe", f"probe-{pid}", "--ignore-not-found")


def status(cluster, pid: int) -> dict:
    return cluster.get("probe", f"probe-{pid}").get("status", {})


def system_tags(cluster, pid: int) -> list[str]:
    return status(cluster, pid).get("systemTags", [])


def builtin_results(cluster, pid: int) -> dict[int, int]:
    rows = cluster.ch.rows(f"SELECT msm_id, count() AS n FROM {cluster.db}.results WHERE prb_id = {pid} AND msm_id < 1000001 GROUP BY msm_id")
    return {int(r["msm_id"]): int(r["n"]) for r in rows}


@pytest.fixture(scope="module")
def api(cluster):
    """`vantage api` over HTTPS with a certificate made here; yields (server, ca path, key)."""
    port, ca = cluster.start_api()
    yield f"localhost:{port}", ca, cluster.api_key("system-tags-key")


def test_builtins_run_and_probes_get_system_tags(cluster, probes):
    a1, a2, plain = probes
    for pid in probes:
        tags = wait_for(f"probe {pid} tagged system-ipv4-works", lambda p=pid: "system-ipv4-works" in (t := system_tags(cluster, p)) and t, timeout=90)
        assert "system-ipv4-capable" in tags, tags
    assert "system-anchor" in system_tags(cluster, a1) and "system-anchor" in system_tags(cluster, a2)
    assert "system-anchor" not in system_tags(cluster, plain)

    # The built-ins' results are stored under their reserved ids: ping 1001 and
    # traceroute 5001 on every probe; the anchors also ping each other (100000 + id), and
    # the plain probe (no location) pings both anchors (fewer than near + spread).
    for pid in probes:
        got = wait_for(f"built-in ping and traceroute results of {pid}", lambda p=pid: (r := builtin_results(cluster, p)) and 1001 in r and 5001 in r and r, timeout=60)
        assert all(m < 1_000_001 for m in got)
    wait_for("the anchoring mesh", lambda: 100_000 + a2 in builtin_results(cluster, a1) and 100_000 + a1 in builtin_results(cluster, a2), timeout=60)
    wait_for("the plain probe's anchor pings", lambda: {100_000 + a1, 100_000 + a2} <= set(builtin_results(cluster, plain)), timeout=60)
    # The DNS check through the probe's resolvers ran (whether the sandbox resolver
    # answers or not, a result is stored).
    dns = wait_for("DNS check results", lambda: cluster.ch.rows(
        f"SELECT DISTINCT msm_id FROM {cluster.db}.results WHERE prb_id = {plain} AND type = 'dns'"), timeout=60)
    assert {int(r["msm_id"]) for r in dns} <= {10001, 10002}


def test_api_lists_system_tags_and_the_default_filter_selects(cluster, probes, api):
    server, ca, key = api
    a1, _, plain = probes
    for pid in probes:
        wait_for(f"probe {pid} tagged", lambda p=pid: "system-ipv4-works" in system_tags(cluster, p), timeout=90)

    listed = wait_for("probes listed with tags", lambda: (r := requests.get(
        f"https://{server}/api/v2/probes/", params={"tags": "system-ipv4-works,e2e", "id__in": ",".join(map(str, probes))},
        verify=ca, timeout=10).json()) and r["count"] == 3 and r, timeout=30)
    one = next(p for p in listed["results"] if p["id"] == a1)
    assert {"name": "e2e", "slug": "e2e"} in one["tags"]
    assert {"name": "system: IPv4 Works", "slug": "system-ipv4-works"} in one["tags"]
    assert {"name": "system: Anchor", "slug": "system-anchor"} in one["tags"]
    assert one["is_anchor"] is True
    anchors = requests.get(f"https://{server}/api/v2/probes/", params={"is_anchor": "true", "id__in": ",".join(map(str, probes))},
                           verify=ca, timeout=10).json()
    assert sorted(p["id"] for p in anchors["results"]) == sorted(probes[:2])

    ping = Ping(af=4, target="127.0.0.1", description="system-tag selection", packets=2, packet_interval=200)
    source = AtlasSource(type="probes", value=",".join(map(str, probes)), requested=3, tags={"include": ["system-ipv4-works"]})
    created = wait_for("the measurement created", lambda: (r := AtlasCreateRequest(
        server=server, verify=ca, key=key, measurements=[ping], sources=[source], is_oneoff=True).create())[0] and r, timeout=30)
    [msm_id] = created[1]["measurements"]
    msm = wait_for("probes chosen", lambda: (r := requests.get(f"https://{server}/api/v2/measurements/{msm_id}/", verify=ca, timeout=10).json())
                   and r.get("participant_count") and r, timeout=60)
    assert sorted(p["id"] for p in msm["probes"]) == sorted(probes), msm
    assert plain in [p["id"] for p in msm["probes"]]


def test_a_probe_whose_ipv4_stops_answering_loses_the_tag_and_gets_it_back(cluster, probes, api):
    server, ca, key = api
    a1, a2, plain = probes
    wait_for("plain probe tagged", lambda: "system-ipv4-works" in system_tags(cluster, plain), timeout=90)
    cluster.restart_operator(*UNANSWERED)
    started = time.monotonic()
    # Lost within window + period after the last answered ping (one ping interval
    # before the new schedule), plus the status write and schedule delivery.
    wait_for("system-ipv4-works lost", lambda: "system-ipv4-works" not in system_tags(cluster, plain), timeout=WINDOW + PERIOD + 30)
    lost_after = time.monotonic() - started
    assert "system-ipv4-capable" in system_tags(cluster, plain), "capable stays: the probe has an IPv4 address"
    # The anchors still answer each other.
    assert "system-ipv4-works" in system_tags(cluster, a1) and "system-ipv4-works" in system_tags(cluster, a2)
    # The default filter now leaves the plain probe out.
    ping = Ping(af=4, target="127.0.0.1", description="after the loss", packets=2, packet_interval=200)
    source = AtlasSource(type="probes", value=",".join(map(str, probes)), requested=3, tags={"include": ["system-ipv4-works"]})
    ok, created = AtlasCreateRequest(server=server, verify=ca, key=key, measurements=[ping], sources=[source], is_oneoff=True).create()
    assert ok, created
    [msm_id] = created["measurements"]
    msm = wait_for("probes chosen", lambda: (r := requests.get(f"https://{server}/api/v2/measurements/{msm_id}/", verify=ca, timeout=10).json())
                   and r.get("participant_count") and r, timeout=60)
    assert sorted(p["id"] for p in msm["probes"]) == sorted([a1, a2]), msm
    cluster.restart_operator(*ANSWERED)
    wait_for("system-ipv4-works back", lambda: "system-ipv4-works" in system_tags(cluster, plain), timeout=PERIOD + 30)
    print(f"system-ipv4-works lost {lost_after:.1f} s after the target stopped answering")
