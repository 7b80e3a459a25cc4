"""The data API with the stock RIPE Atlas client: ripe-atlas-cousteau creates a ping
measurement through `vantage api` (HTTPS, API key from a Secret), waits, fetches its
results and parses them with ripe.atlas.sagan.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import json
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import connected_probe, running_cluster, wait_for  # noqa: E402

from ripe.atlas.cousteau import (  # noqa: E402
    AtlasCreateRequest, AtlasLatestRequest, AtlasResultsRequest, AtlasSource, Measurement, MeasurementRequest, Ping, Probe,
    ProbeRequest,
)
from ripe.atlas.sagan import PingResult  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with running_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def probe(cluster):
    return connected_probe(cluster, country="NL", asn=64501)


@pytest.fixture(scope="module")
def api(cluster):
    """`vantage api` over HTTPS with a certificate made here; yields (server, ca path, key)."""
    port, ca = cluster.start_api()
    yield f"localhost:{port}", ca, cluster.api_key("cousteau-key")


def test_cousteau_creates_fetches_and_sagan_parses(cluster, probe, api):
    server, ca, key = api
    ping = Ping(af=4, target="127.0.0.1", description="cousteau e2e", packets=3, packet_interval=200)
    source = AtlasSource(type="probes", value=str(probe), requested=1)
    # The API key's Secret may take a moment to reach the API's reflector.
    created = wait_for("the measurement created", lambda: (r := AtlasCreateRequest(
        server=server, verify=ca, key=key, measurements=[ping], sources=[source], is_oneoff=True).create())[0] and r, timeout=30)
    ok, response = created
    assert ok, response
    [msm_id] = response["measurements"]
    assert msm_id >= 1_000_001

    # The Measurement resource is in the key's namespace, and labelled.
    msms = json.loads(cluster.kubectl("get", "measurements", "-n", "default", "-l", "vantage.dev/created-by=api", "-o", "json"))["items"]
    mine = [m for m in msms if m.get("status", {}).get("id") == msm_id]
    assert mine and mine[0]["metadata"]["annotations"]["vantage.dev/api-key"] == "cousteau-key"

    def results():
        ok, res = AtlasResultsRequest(server=server, verify=ca, msm_id=msm_id).create()
        assert ok, res
        return res

    res = wait_for("a result through the API", results, timeout=90, interval=1)
    parsed = PingResult(res[0])
    assert not parsed.is_error
    assert parsed.measurement_id == msm_id and parsed.probe_id == probe
    assert parsed.packets_sent == 3 and parsed.packets_received >= 1
    rtts = [p.rtt for p in parsed.packets if p.rtt is not None]
    assert rtts and all(0 < r < 50 for r in rtts), rtts
    assert parsed.rtt_min == pytest.approx(min(rtts))

    # Filters: a probe that is not in the measurement, and a time window before it ran.
    ok, none = AtlasResultsRequest(server=server, verify=ca, msm_id=msm_id, probe_ids=[probe + 1]).create()
    assert ok and none == []
    ok, none = AtlasResultsRequest(server=server, verify=ca, msm_id=msm_id, start=1, stop=2).create()
    assert ok and none == []
    ok, latest = AtlasLatestRequest(msm_id=msm_id, server=server, verify=ca).create()
    assert ok and [PingResult(r).probe_id for r in latest] == [probe]

    # Metadata through cousteau's entity and list classes.
    m = Measurement(id=msm_id, server=server, verify=ca)
    assert m.type == "ping" and m.target == "127.0.0.1" and m.is_oneoff is True
    assert m.status in ("Ongoing", "Scheduled", "Stopped"), m.status
    assert m.description == "cousteau e2e"
    listed = [x["id"] for x in MeasurementRequest(server=server, verify=ca, type="ping", is_oneoff="true")]
    assert msm_id in listed
    p = Probe(id=probe, server=server, verify=ca)
    assert p.country_code == "NL" and p.asn_v4 == 64501 and p.status == "Connected"
    assert p.geometry == {"type": "Point", "coordinates": [4.89, 52.37]}
    assert probe in [x["id"] for x in ProbeRequest(server=server, verify=ca, country_code="NL")]


def test_bad_key_and_bad_definition_are_refused(cluster, probe, api):
    server, ca, key = api
    ping = Ping(af=4, target="127.0.0.1", description="refused")
    source = AtlasSource(type="probes", value=str(probe), requested=1)
    ok, response = AtlasCreateRequest(server=server, verify=ca, key="not-a-key", measurements=[ping], sources=[source]).create()
    assert not ok and response["error"]["status"] == 403, response

    r = requests.post(f"https://{server}/api/v2/measurements/", verify=ca, headers={"Authorization": f"Key {key}"},
                      json={"definitions": [{"type": "ping", "af": 4, "target": "127.0.0.1", "description": "x", "packets": 99}],
                            "probes": [{"type": "probes", "value": str(probe), "requested": 1}]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["errors"][0]["source"]["pointer"] == "/definitions/0/packets" and "out of range" in err["detail"]
    r = requests.get(f"https://{server}/api/v2/measurements/1/results/?start=yesterday", verify=ca)
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["source"]["pointer"] == "?start"

    # Plain HTTP to the HTTPS port is refused; the metrics count what was served.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{server}/api/v2/probes/", timeout=5)
    assert cluster.metric("api", "vantage_api_refused_keys_total") >= 1
    assert cluster.metric("api", 'vantage_api_requests_total{method="POST",route="/api/v2/measurements",code="201"}') >= 1
