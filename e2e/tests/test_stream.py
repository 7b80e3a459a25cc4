"""The RIPE Atlas streaming API with the stock client: ripe-atlas-cousteau's
`AtlasStream` against `vantage api` (HTTPS, behind a `--public-url` with a path).

One flow: metadata and probestatus subscriptions; a periodic ping measurement created
with cousteau (its `created` metadata event); a result subscription with `sendBacklog`
(what is stored comes from ClickHouse, later results live, no result twice); a probe
killed mid-test (its `disconnect` probestatus event); unsubscribe; an unknown filter
answered with `atlas_error` naming it.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import connected_probe, free_port, running_cluster, wait_for  # noqa: E402

from ripe.atlas.cousteau import AtlasCreateRequest, AtlasResultsRequest, AtlasSource, AtlasStream, Ping  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with running_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def api(cluster):
    """`vantage api` over HTTPS, public URL with a path; yields (server, ca, key, public url)."""
    port = free_port()
    public = f"https://localhost:{port}/atlas"
    port, ca = cluster.start_api("--public-url", public, port=port)
    yield f"localhost:{port}", ca, cluster.api_key("stream-key"), public


class Events:
    """Everything an AtlasStream received, and waiting for a particular event."""

    def __init__(self, stream: AtlasStream):
        self.stream = stream
        self.seen: list[tuple[str, object]] = []

    def wait(self, what: str, pred, timeout: float):
        for name, payload in self.seen:
            if pred(name, payload):
                return payload
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for name, payload in self.stream.iter(seconds=left):
                self.seen.append((name, payload))
                if pred(name, payload):
                    return payload
        raise AssertionError(f"no {what} within {timeout}s; received: {self.seen[-20:]}")

    def of(self, name: str) -> list:
        return [p for n, p in self.seen if n == name]


def test_atlas_stream_backlog_live_probestatus_and_errors(cluster, api, monkeypatch):
    server, ca, key, public = api
    # websocket-client (under AtlasStream) verifies wss:// against this bundle.
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", ca)
    stay = connected_probe(cluster, country="NL", asn=64501)
    doomed = connected_probe(cluster, country="DE", asn=64502)

    # cousteau builds wss://localhost:<port>/atlas/stream/ from the public URL.
    stream = AtlasStream(base_url=public)
    stream.connect()
    ev = Events(stream)
    stream.subscribe("metadata")
    stream.subscribe("probestatus")
    ev.wait("atlas_subscribed metadata", lambda n, p: n == "atlas_subscribed" and p.get("stream_type") == "metadata", 15)
    ev.wait("atlas_subscribed probestatus", lambda n, p: n == "atlas_subscribed" and p.get("stream_type") == "probestatus", 15)

    ping = Ping(af=4, target="127.0.0.1", description="stream e2e", packets=2, packet_interval=100, interval=60, spread=0)
    source = AtlasSource(type="probes", value=f"{stay},{doomed}", requested=2)
    created = wait_for("the measurement created", lambda: (r := AtlasCreateRequest(
        server=server, verify=ca, key=key, measurements=[ping], sources=[source], is_oneoff=False).create())[0] and r,
        timeout=30)
    msm_id = created[1]["measurements"][0]
    meta = ev.wait("the created metadata event",
                   lambda n, p: n == "atlas_metadata" and p["msm_id"] == msm_id and p["event"] == "created", 30)
    assert meta["measurement"]["id"] == msm_id and meta["measurement"]["type"] == "ping"

    # What is stored before the result subscription comes as backlog.
    def stored():
        ok, res = AtlasResultsRequest(server=server, verify=ca, msm_id=msm_id).create()
        return ok and res
    first = wait_for("a first result stored", stored, timeout=150, interval=1)
    first_ids = {r["result_id"] for r in first}

    subscribed_at = time.time()
    stream.subscribe("result", msm=msm_id, sendBacklog=True)
    ev.wait("atlas_subscribed result", lambda n, p: n == "atlas_subscribed" and p.get("msm") == msm_id, 15)
    ev.wait("the backlog", lambda n, p: first_ids <= {r["result_id"] for r in ev.of("atlas_result")}, 30)
    # A result measured after the subscription can only come live.
    live = ev.wait("a live result", lambda n, p: n == "atlas_result" and p["timestamp"] > subscribed_at, 150)
    assert live["msm_id"] == msm_id and live["type"] == "ping"
    results = ev.of("atlas_result")
    assert all(r["msm_id"] == msm_id for r in results)
    ids = [r["result_id"] for r in results]
    assert len(ids) == len(set(ids)), f"a result came twice: {ids}"

    # A probe killed mid-stream: its controller ends the session, the stream says so.
    proc = cluster.procs.pop(f"probe-{doomed}")
    proc.kill()
    proc.wait(timeout=10)
    gone = ev.wait("the disconnect event",
                   lambda n, p: n == "atlas_probestatus" and p["prb_id"] == doomed and p["event"] == "disconnect", 60)
    assert gone["asn"] == 64502 and gone["country_code"] == "DE" and gone["controller"]
    assert not [p for p in ev.of("atlas_probestatus") if p["prb_id"] == stay and p["event"] == "disconnect"]

    stream.unsubscribe("result", msm=msm_id, sendBacklog=True)
    ev.wait("atlas_unsubscribed", lambda n, p: n == "atlas_unsubscribed" and p.get("msm") == msm_id, 15)
    stream.disconnect()

    # The root path works too; an unknown filter is refused, naming it.
    other = AtlasStream(base_url=f"https://{server}")
    other.connect()
    bad = Events(other)
    other.subscribe("result", msm=msm_id, colour="red")
    err = bad.wait("atlas_error", lambda n, p: n == "atlas_error", 15)
    assert "colour" in err, err
    other.disconnect()

    sent = cluster.metric("api", 'vantage_api_stream_messages_sent_total{type="result"}')
    assert sent >= len(ids)
