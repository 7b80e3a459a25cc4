"""The measurement lifecycle as RIPE Atlas has it, driven with the stock client
(ripe-atlas-cousteau) against `vantage api` over HTTPS:

- a one-off ends in Stopped (status 4) once every probe reported;
- `AtlasStopRequest` (DELETE) stops a measurement, for the key that created it only;
- `AtlasChangeRequest` (participation requests) adds and removes probes, answered
  with the request ids; removing every probe ends it in Forced to stop (5);
- a measurement whose probes all leave (disabled) ends in Forced to stop;
- `requested` above the installation's maximum and a 20 MB body are refused with the
  RIPE Atlas error object (400 naming the maximum, 413).

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import json
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import running_cluster, wait_for  # noqa: E402

from ripe.atlas.cousteau import (  # noqa: E402
    AtlasChangeRequest, AtlasChangeSource, AtlasCreateRequest, AtlasSource, AtlasStopRequest, Measurement, Ping,
)


@pytest.fixture(scope="module")
def cluster():
    with running_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def probes(cluster):
    """Three connected NL probes in different networks."""
    out = []
    for asn in (64701, 64702, 64703):
        pid, key, _ = cluster.add_probe(country="NL", asn=asn)
        cluster.start_probe(pid, key)
        out.append(pid)
    for pid in out:
        wait_for(f"probe {pid} connected", lambda p=pid: cluster.get("probe", f"probe-{p}").get("status", {}).get("connected"), timeout=60)
    return out



@pytest.fixture(scope="module")
def api(cluster):
    """`vantage api` over HTTPS; yields (server, ca path, owner key, another key of the namespace)."""
    port, ca = cluster.start_api()
    yield f"localhost:{port}", ca, cluster.api_key("lifecycle-owner"), cluster.api_key("lifecycle-other")


def create(api, sources, is_oneoff=False, description="lifecycle e2e") -> int:
    server, ca, key, _ = api
    ping = Ping(af=4, target="127.0.0.1", description=description, packets=2, packet_interval=100, interval=60, spread=0)
    # The key's Secret may take a moment to reach the API's reflector.
    ok, response = wait_for("the measurement created", lambda: (r := AtlasCreateRequest(
        server=server, verify=ca, key=key, measurements=[ping], sources=sources, is_oneoff=is_oneoff).create())[0] and r, timeout=30)
    assert ok, response
    [msm_id] = response["measurements"]
    return msm_id


def meta(api, msm_id: int) -> Measurement:
    server, ca, _, _ = api
    return Measurement(id=msm_id, server=server, verify=ca)


def resource(cluster, msm_id: int) -> dict:
    items = json.loads(cluster.kubectl("get", "measurements", "-n", "default", "-o", "json"))["items"]
    return next(m for m in items if m.get("status", {}).get("id") == msm_id)


def wait_status(api, msm_id: int, name: str, timeout: float = 90) -> Measurement:
    return wait_for(f"measurement {msm_id} {name}", lambda: (m := meta(api, msm_id)).status == name and m, timeout=timeout, interval=1)


def ready(obj: dict) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def test_a_oneoff_reaches_stopped_once_every_probe_reported(cluster, probes, api):
    p1, p2, _ = probes
    msm_id = create(api, [AtlasSource(type="probes", value=f"{p1},{p2}", requested=2)], is_oneoff=True)
    m = wait_status(api, msm_id, "Stopped")
    assert m.status_id == 4
    assert m.meta_data["status"]["when"] >= m.meta_data["creation_time"]
    rows = cluster.ch.rows(f"SELECT DISTINCT prb_id FROM {cluster.db}.results WHERE msm_id = {msm_id}")
    assert sorted(int(r["prb_id"]) for r in rows) == sorted([p1, p2]), "Stopped only once both reported"
    obj = resource(cluster, msm_id)
    assert obj["status"]["probesReported"] == 2 and obj["status"]["statusId"] == 4
    assert ready(obj)["reason"] == "AllProbesReported"
    # kubectl get shows the state and the RIPE Atlas status id.
    table = cluster.kubectl("get", "measurements", "-n", "default").splitlines()
    header = table[0].split()
    row = next(l for l in table if l.startswith(obj["metadata"]["name"] + " ")).split()
    assert row[header.index("STATE")] == "Stopped" and row[header.index("STATUS")] == "4", table


def test_only_the_owner_stops_a_measurement(cluster, probes, api):
    server, ca, key, other = api
    p1, _, _ = probes
    msm_id = create(api, [AtlasSource(type="probes", value=str(p1), requested=1)])
    wait_status(api, msm_id, "Ongoing")
    ok, response = AtlasStopRequest(server=server, verify=ca, key=other, msm_id=msm_id).create()
    assert not ok and response["error"]["status"] == 403, response
    assert "only the key that created it" in response["error"]["detail"]
    assert meta(api, msm_id).status == "Ongoing"
    ok, response = AtlasStopRequest(server=server, verify=ca, key=key, msm_id=msm_id).create()
    assert ok, response
    m = wait_status(api, msm_id, "Stopped", timeout=30)
    assert m.status_id == 4
    obj = resource(cluster, msm_id)
    assert obj["spec"]["stopped"] is True and ready(obj)["reason"] == "Stopped"
    # Results are kept; the resource stays.
    assert obj["metadata"].get("deletionTimestamp") is None


def test_participation_requests_add_and_remove_probes(cluster, probes, api):
    server, ca, key, other = api
    p1, p2, _ = probes
    msm_id = create(api, [AtlasSource(type="probes", value=str(p1), requested=1)])
    wait_status(api, msm_id, "Ongoing")

    def change(action, value, k=key):
        return AtlasChangeRequest(server=server, verify=ca, key=k, msm_id=msm_id,
                                  sources=[AtlasChangeSource(action=action, type="probes", value=value, requested=1)]).create()

    ok, response = change("add", str(p2), k=other)
    assert not ok and response["error"]["status"] == 403, response
    ok, response = change("add", str(p2))
    assert ok and response == {"request_ids": [2]}, response
    wait_for("probe added", lambda: sorted(resource(cluster, msm_id)["status"]["probes"]) == sorted([p1, p2]), timeout=30)
    wait_for("results from the added probe", lambda: cluster.ch.rows(
        f"SELECT count() AS n FROM {cluster.db}.results WHERE msm_id = {msm_id} AND prb_id = {p2}")[0]["n"] not in (0, "0"), timeout=90)
    ok, response = change("remove", str(p1))
    assert ok and response == {"request_ids": [3]}, response
    wait_for("probe removed", lambda: resource(cluster, msm_id)["status"]["probes"] == [p2], timeout=30)
    listed = [(r["id"], r["action"]) for r in meta(api, msm_id).meta_data["participation_requests"]]
    assert listed == [(1, "add"), (2, "add"), (3, "remove")], listed
    # Removing the last probe ends it: Forced to stop.
    ok, response = change("remove", str(p2))
    assert ok and response == {"request_ids": [4]}, response
    m = wait_status(api, msm_id, "Forced to stop", timeout=30)
    assert m.status_id == 5
    # A stopped measurement takes no more requests.
    ok, response = change("add", str(p1))
    assert not ok and response["error"]["status"] == 400 and "Forced to stop" in response["error"]["detail"], response


def test_a_measurement_whose_probes_all_leave_is_forced_to_stop(cluster, probes, api):
    _, _, p3 = probes
    msm_id = create(api, [AtlasSource(type="probes", value=str(p3), requested=1)])
    wait_status(api, msm_id, "Ongoing")
    cluster.kubectl("patch", "probe", f"probe-{p3}", "--type=merge", "-p", '{"spec": {"enabled": false}}')
    try:
        m = wait_status(api, msm_id, "Forced to stop", timeout=30)
        assert m.status_id == 5
        obj = resource(cluster, msm_id)
        assert ready(obj)["reason"] == "ProbesLeft"
        assert "all 1 probes left" in ready(obj)["message"], ready(obj)
        probes_connected = next(c for c in obj["status"]["conditions"] if c["type"] == "ProbesConnected")
        assert probes_connected["status"] == "False"
    finally:
        cluster.kubectl("patch", "probe", f"probe-{p3}", "--type=merge", "-p", '{"spec": {"enabled": true}}')


def test_requested_above_the_maximum_and_a_huge_body_are_refused(cluster, probes, api):
    server, ca, key, _ = api
    ping = Ping(af=4, target="127.0.0.1", description="too many")
    ok, response = AtlasCreateRequest(server=server, verify=ca, key=key, measurements=[ping],
                                      sources=[AtlasSource(type="area", value="WW", requested=1_000_000_000)]).create()
    assert not ok and response["error"]["status"] == 400, response
    assert "maximum of 1000" in response["error"]["detail"]
    assert response["error"]["errors"][0]["source"]["pointer"] == "/probes/0/requested"
    # 20 MB over TLS: a 413 with the RIPE Atlas error object, not a dropped connection.
    r = requests.post(f"https://{server}/api/v2/measurements/", verify=ca, headers={"Authorization": f"Key {key}",
                      "Content-Type": "application/json"}, data=b"x" * (20 << 20), timeout=60)
    assert r.status_code == 413
    err = r.json()["error"]
    assert err["status"] == 413 and "over the limit" in err["detail"], err
