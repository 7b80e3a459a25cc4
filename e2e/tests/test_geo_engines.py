"""Geolocation engines driven by GeolocationEngine resources (Kubernetes API stand-in),
with external engines in Python joining over HTTP and over NATS.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
"""

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN, ROOT, Cluster, wait_for  # noqa: E402

AMSTERDAM = 2759794
TARGET = "193.0.14.129"


def engine(name: str, ns: str, **spec) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "GeolocationEngine",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


@pytest.fixture(scope="module")
def geo():
    c = Cluster(log=lambda *_: None)
    ns = f"geo-{c.run_id}".replace("_", "-")
    subject = f"geo.engine.py{c.run_id}"
    py = None
    try:
        c.kubectl("apply", "-f", str(ROOT / "crds"))
        c.kubectl_apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        subprocess.run([str(BIN / "vantage"), "migrate"], env=c.env, check=True, capture_output=True, timeout=60)
        py = subprocess.Popen([sys.executable, str(ROOT / "e2e" / "geo_engine.py"), "--http", "--nats", c.env["NATS_URL"], "--subject", subject],
                              stdout=subprocess.PIPE, text=True)
        http_port = int(py.stdout.readline().split()[1])
        assert py.stdout.readline().strip() == f"nats {subject}"
        # RIR statistics as RIPE NCC publishes them: the target's /24 is registered in NL.
        rir = c.tmp / "delegated-ripencc-extended-latest"
        rir.write_text("2|ripencc|1732147199|3|19830705|20241120|+0100\n"
                       "ripencc|*|ipv4|*|1|summary\n"
                       "ripencc|NL|ipv4|193.0.14.0|256|19970324|assigned|x\n")
        for obj in [
            engine("cbg", ns, engine="latency"),
            engine("crowd", ns, engine="crowdsourced", weight=0.5),
            engine("py-http", ns, engine="external", http_endpoint=f"http://127.0.0.1:{http_port}/", weight=2),
            engine("py-nats", ns, engine="external", nats_subject=subject),
            engine("bogus", ns, engine="geoip"),
            engine("nowhere", ns, engine="external"),
            engine("rir", ns, engine="rir"),
        ]:
            c.kubectl_apply(obj)
        # Resources and external engines only: no on-demand pings (the rir engine's NL hint
        # would pick the NL probes other tests left in the stand-in).
        c.start_engines(ns, "--no-active", "--rir-file", str(rir))
        c.ns = ns
        yield c
    finally:
        c.stop_all()
        if py:
            py.kill()
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        print(f"component logs: {c.tmp}")


def get(c: Cluster, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{c.ports['engines']}{path}", timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def partial_names(c: Cluster, ip: str = TARGET) -> list[str]:
    status, body = get(c, f"/api/v1/locate/{ip}/partials")
    assert status == 200, body
    return sorted(p["engine"] for p in body["partials"])


def test_enabled_resources_are_the_engine_set(geo):
    assert partial_names(geo) == ["crowdsourced", "latency", "py-http", "py-nats", "rir"]
    good = geo.get("geolocationengine", "py-http", geo.ns)
    assert condition(good, "Ready")["status"] == "True", good
    assert condition(good, "Invalid")["status"] == "False"
    bogus = wait_for("bogus gets Invalid", lambda: condition(geo.get("geolocationengine", "bogus", geo.ns), "Invalid") or None)
    assert bogus["status"] == "True" and bogus["reason"] == "InvalidSpec"
    assert bogus["message"].startswith("spec.engine: unknown engine \"geoip\""), bogus
    nowhere = condition(geo.get("geolocationengine", "nowhere", geo.ns), "Invalid")
    assert nowhere["message"].startswith("spec.http_endpoint or spec.nats_subject"), nowhere


def test_python_engines_score_in_partials_and_the_reducer(geo):
    for name in ["py-http", "py-nats"]:
        status, body = get(geo, f"/api/v1/locate/{TARGET}/partials/{name}")
        assert status == 200, body
        part = body["partial"]
        assert part["error"] is None, part
        scores = {loc["id"]: loc["score"] for loc in part["locations"]}
        assert scores[AMSTERDAM] == 8, part
        assert len(scores) == 2, "the zero score is dropped"
    status, body = get(geo, f"/api/v1/locate/{TARGET}/")
    assert status == 200, body
    best = body["locations"][0]
    assert best["id"] == AMSTERDAM
    # weight 2 × 8 (HTTP) + weight 1 × 8 (NATS) + 3 for "registered in NL"
    assert best["score"] == 27.0, best
    assert best["contributions"]["py-http"] == {"score": 8, "weight": 2.0}
    assert best["contributions"]["py-nats"] == {"score": 8, "weight": 1.0}
    assert best["contributions"]["rir"] == {"score": 3, "weight": 1.0}


def test_the_rir_engine_votes_for_a_country(geo):
    status, body = get(geo, f"/api/v1/locate/{TARGET}/partials/rir")
    assert status == 200, body
    part = body["partial"]
    assert part["scope"] == "country" and part["error"] is None, part
    # one candidate standing for the Netherlands: its most populous city
    (loc,) = part["locations"]
    assert loc["countryCodeAlpha2"] == "NL" and loc["score"] == 3, loc
    # an address in no registered range: nothing
    status, body = get(geo, "/api/v1/locate/9.9.9.9/partials/rir")
    assert status == 200 and body["partial"]["locations"] == [], body


def test_bad_replies_are_dropped_and_counted(geo):
    status, body = get(geo, "/api/v1/locate/1.1.1.1/partials")
    assert status == 200, body
    parts = {p["engine"]: p for p in body["partials"]}
    for name in ["py-http", "py-nats"]:
        assert parts[name]["locations"] == [], parts[name]
        assert "bad answer" in parts[name]["error"], parts[name]
    metrics = geo.metrics("engines")
    for name in ["py-http", "py-nats"]:
        assert f'vantage_engines_external_errors_total{{engine="{name}",reason="malformed"}} 1' in metrics, metrics


def test_disabling_a_resource_takes_it_out(geo):
    geo.kubectl_apply(engine("py-nats", geo.ns, engine="external", nats_subject="geo.unused", enabled=False))
    wait_for("py-nats out of /partials", lambda: "py-nats" not in partial_names(geo), timeout=30)
    assert partial_names(geo) == ["crowdsourced", "latency", "py-http", "rir"]
    cond = wait_for("py-nats Disabled", lambda: condition(geo.get("geolocationengine", "py-nats", geo.ns), "Ready").get("reason") == "Disabled")
    assert cond
    # ?engines= still runs a disabled engine by name (nobody answers on its new subject).
    status, body = get(geo, f"/api/v1/locate/{TARGET}/partials?engines=py-nats")
    assert status == 200 and [p["engine"] for p in body["partials"]] == ["py-nats"], body
    assert body["partials"][0]["error"], body
    geo.kubectl("delete", "geolocationengine", "py-http", "-n", geo.ns)
    wait_for("py-http gone", lambda: partial_names(geo) == ["crowdsourced", "latency", "rir"], timeout=30)
    status, body = get(geo, f"/api/v1/locate/{TARGET}/partials/py-http")
    assert status == 400 and body["error"] == "unknown_engine", body
