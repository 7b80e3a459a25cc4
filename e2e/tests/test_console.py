"""The web console in a real browser against a real stack: each console/e2e/*.test.mjs
file (playwright-core driving Debian's /usr/bin/chromium, run with `node --test`) is one
test here, all against the state one module fixture builds:

* operator, collector, registration and a controller; three real probes (`vantage-probe
  run`) connected from three countries, and a Probe resource whose agent never connects;
* `vantage engines` with GeolocationEngine resources (an RIR engine with RIPE NCC's
  statistics format saying the target's /24 is in NL), so that locating an address gives
  a best city; `vantage api` proxies to it (`--engines-url`);
* ping (periodic, so results keep coming), traceroute and dns measurements created
  through the API with an API key, each waited for until `/latest/` has its results; the
  dns target is a DNS responder on loopback port 53 started here (root), or an address
  where nothing answers when port 53 cannot be bound (the results are then timeouts);
* a hostile result: a RIPE dns result with markup in `dst_name` and in a TXT answer
  (inside `abuf`), published for a real measurement and probe on the results subject
  the collector reads, and waited for until the API returns it;
* real OONI measurements (collector/tests/data/ooni) submitted to `vantage intake` over
  its HTTP API, so that `/api/v1/aggregation` on the API has rows; one of them with
  markup in its input.

The fixture JSON (keys in console/e2e/harness.mjs's users) goes to VANTAGE_CONSOLE_FIXTURE,
screenshots to console/test-output/. Needs the local stack (e2e/stack/stack.sh up), the
binaries with the console built in (`cd console && npm run build`, then `cargo build`),
node and /usr/bin/chromium (`make setup` installs both). Wall time: about a minute,
most of it in the browser tests.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import ROOT, Cluster, nats_publish, running_cluster, wait_for  # noqa: E402

CONSOLE = ROOT / "console"
BROWSER_TESTS = sorted((CONSOLE / "e2e").glob("*.test.mjs"))
SHOTS = CONSOLE / "test-output"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
XSS_TEXT = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"
# One browser-test file must finish within this (node's own output says where it hung).
NODE_TIMEOUT = 300

# Where the real probes say they are (country, ASN, latitude, longitude, user tags).
PROBES = [
    ("NL", 64501, 52.37, 4.89, ["home"]),
    ("BR", 64502, -23.55, -46.63, ["office"]),
    ("JP", 64503, 35.68, 139.69, ["datacentre"]),
]
NEVER_CONNECTED = ("AU", 64504, -33.87, 151.21, ["spare"])

# The DNS responder for the dns measurements (port 53 needs root), answering every A
# query with 192.0.2.1; nothing listens on the other address.
DNS_ADDR = "127.77.5.53"
SILENT_DNS_ADDR = "127.77.5.54"
DNS_ANSWER = "192.0.2.1"

# Locating: the RIR file says LOCATE_IP's /24 is registered in the Netherlands.
LOCATE_IP = "193.0.14.129"
RIR_FILE = ("2|ripencc|1732147199|3|19830705|20241120|+0100\n"
            "ripencc|*|ipv4|*|1|summary\n"
            "ripencc|NL|ipv4|193.0.14.0|256|19970324|assigned|x\n")

# Real OONI measurements submitted through the intake; the fixture's `ooni` key names
# the Iranian web_connectivity ones.
OONI_DIR = ROOT / "collector" / "tests" / "data" / "ooni" / "measurements"
OONI_FILES = ["bug_352.json", "web_connectivity_ir_fp.json", "web_connectivity_null2.json",
              "bug_351.json", "report2.json", "signal_022.json", "tor.json", "whatsapp.json"]
OONI_CC, OONI_TEST = "IR", "web_connectivity"
OONI_HOSTILE = "bug_351.json"  # NL, so that the IR count stays that of the real ones


def missing_tools() -> list[str]:
    """What the browser tests need and this machine lacks."""
    missing = []
    if not shutil.which("node"):
        missing.append("node")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(CHROMIUM)
    if not (CONSOLE / "node_modules" / "playwright-core").is_dir():
        missing.append("console/node_modules (cd console && npm ci)")
    return missing


def dns_responder() -> tuple[str, socket.socket | None]:
    """A DNS responder on DNS_ADDR:53 answering every query with one A record; returns
    (address to measure, socket), or (SILENT_DNS_ADDR, None) when port 53 cannot be bound."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((DNS_ADDR, 53))
    except OSError as e:
        s.close()
        print(f"no DNS responder ({e}): the dns measurement goes to {SILENT_DNS_ADDR}, where nothing answers")
        return SILENT_DNS_ADDR, None

    def loop():
        while True:
            try:
                q, peer = s.recvfrom(4096)
            except OSError:
                return
            end = 12
            while end < len(q) and q[end] != 0:
                end += q[end] + 1
            header = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(DNS_ANSWER)
            s.sendto(header + q[12:end + 5] + answer, peer)

    threading.Thread(target=loop, daemon=True).start()
    return DNS_ADDR, s


def txt_abuf(name: str, text: str, qid: int) -> str:
    """A DNS response (wire format, base64, as RIPE's `abuf`) to a TXT query for `name`
    with one TXT record holding `text`."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    data = text.encode()
    rdata = bytes([len(data)]) + data
    msg = (struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + qname + struct.pack("!HH", 16, 1)
           + b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, len(rdata)) + rdata)
    return base64.b64encode(msg).decode()


class Api:
    """`vantage api` over HTTPS as the console sees it."""

    def __init__(self, base: str, ca: str, key: str):
        self.base, self.ca, self.key = base, ca, key

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, verify=self.ca, timeout=30)

    def json(self, path: str):
        r = self.get(path)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
        return r.json()

    def create(self, definition: dict, probes: list[int], oneoff: bool = True) -> int:
        body = {"definitions": [definition], "is_oneoff": oneoff,
                "probes": [{"type": "probes", "value": ",".join(map(str, probes)), "requested": len(probes)}]}

        def post():
            r = requests.post(self.base + "/api/v2/measurements/", json=body, verify=self.ca, timeout=30,
                              headers={"Authorization": f"Key {self.key}"})
            # The key's Secret may take a moment to reach the API's reflector (403 until then).
            if r.status_code == 403:
                return None
            assert r.status_code == 201, f"creating {definition['type']}: {r.status_code} {r.text[:1000]}"
            return r.json()["measurements"][0]

        return wait_for(f"the {definition['type']} measurement created", post, timeout=30)

    def latest(self, msm: int) -> list[dict]:
        return self.json(f"/api/v2/measurements/{msm}/latest/")


def wait_results(api: Api, msm: int, probes: list[int], what: str) -> list[dict]:
    """Wait until `/latest/` of `msm` has a result from each of `probes`."""
    return wait_for(f"results of the {what} measurement {msm} from probes {probes}",
                    lambda: (r := api.latest(msm)) and {x["prb_id"] for x in r} >= set(probes) and r,
                    timeout=120, interval=1)


def submit_ooni(c: Cluster) -> int:
    """Submit OONI_FILES, and OONI_HOSTILE with XSS_TEXT in its input, through the intake
    (a report per measurement, as ooniprobe does); returns how many are OONI_CC's
    OONI_TEST measurements."""
    base = f"http://127.0.0.1:{c.ports['intake']}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with opener.open(req, timeout=10) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"intake POST {path}: {e.code} {e.read()[:500]!r}") from e

    # One more: a real measurement whose input carries markup, which the console must show as text.
    hostile = json.loads((OONI_DIR / OONI_HOSTILE).read_text())
    hostile["input"] = f"http://xss.example/{XSS_TEXT}"
    ours = 0
    for msm in [json.loads((OONI_DIR / name).read_text()) for name in OONI_FILES] + [hostile]:
        report = post("/report", {"format": "json", **{k: msm.get(k) for k in [
            "probe_cc", "probe_asn", "test_name", "software_name", "software_version", "test_start_time",
            "test_version", "data_format_version"]}})
        got = post(f"/report/{report['report_id']}", {"format": "json", "content": msm})
        assert got.get("measurement_uid"), got
        post(f"/report/{report['report_id']}/close", {})
        ours += (msm["probe_cc"], msm["test_name"]) == (OONI_CC, OONI_TEST)
    return ours


def xss_result(msm: int, prb: int, target: str, timestamp: int) -> dict:
    """A RIPE dns result with XSS_TEXT as dst_name and as the TXT answer in abuf."""
    qid = 4242
    abuf = txt_abuf("xss.example.", XSS_TEXT, qid)
    return {"fw": 5080, "lts": 3, "dst_addr": target, "dst_name": XSS_TEXT, "dst_port": "53", "af": 4,
            "src_addr": "127.0.0.1", "proto": "UDP",
            "result": {"rt": 1.5, "size": len(base64.b64decode(abuf)), "abuf": abuf, "ID": qid,
                       "ANCOUNT": 1, "QDCOUNT": 1, "NSCOUNT": 0, "ARCOUNT": 0},
            "msm_id": msm, "prb_id": prb, "timestamp": timestamp, "msm_name": "Tdig", "from": "127.0.0.1",
            "type": "dns", "group_id": msm, "result_id": str(uuid.uuid4())}


@pytest.fixture(scope="module")
def console_state():
    """The stack state the browser tests read; yields (fixture path, API certificate)."""
    if missing := missing_tools():
        pytest.fail(f"the console's browser tests need {', '.join(missing)}: `make setup` installs them")
    started = time.monotonic()
    dns_addr, dns_sock = dns_responder()
    with running_cluster() as c:
        ns = f"console-{c.run_id}".replace("_", "-")
        probe_names: list[str] = []
        key_name = f"console-{c.run_id}".replace("_", "-")
        try:
            # Probes: three connected agents and one that never connects.
            probes = []
            for cc, asn, lat, lon, tags in PROBES:
                pid, key, _ = c.add_probe_at(cc, asn, lat, lon, tags)
                c.start_probe(pid, key)
                probes.append(pid)
            never, _, _ = c.add_probe_at(*NEVER_CONNECTED)
            probe_names = [f"probe-{p}" for p in [*probes, never]]

            # Geolocation engines, before the API that proxies to them.
            c.kubectl_apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            rir = c.tmp / "delegated-ripencc-extended-latest"
            rir.write_text(RIR_FILE)
            for name, spec in [("cbg", {"engine": "latency"}), ("crowd", {"engine": "crowdsourced", "weight": 0.5}),
                               ("rir", {"engine": "rir"})]:
                c.kubectl_apply({"apiVersion": "vantage.dev/v1alpha1", "kind": "GeolocationEngine",
                                 "metadata": {"name": name, "namespace": ns}, "spec": spec})
            c.start_engines(ns, "--no-active", "--rir-file", str(rir))
            port, cert = c.start_api("--engines-url", f"http://127.0.0.1:{c.ports['engines']}")
            api = Api(f"https://127.0.0.1:{port}", cert, c.api_key(key_name))

            page = api.get("/")
            assert page.status_code == 200 and "text/html" in page.headers.get("content-type", ""), (
                f"GET / on the API: {page.status_code} {page.headers.get('content-type')}: the API binary has no "
                "console; build it with `cd console && npm run build` and then `cargo build -p vantage --bin vantage`")

            for pid in probes:
                wait_for(f"probe {pid} connected", lambda p=pid: c.get("probe", f"probe-{p}").get("status", {}).get("connected"),
                         timeout=60)

            # Measurements through the API, from every connected probe.
            ping = api.create({"type": "ping", "af": 4, "target": "127.0.0.1", "description": "console ping",
                               "packets": 3, "packet_interval": 200, "interval": 60, "spread": 0}, probes, oneoff=False)
            trace = api.create({"type": "traceroute", "af": 4, "target": "127.0.0.1", "description": "console traceroute",
                                "protocol": "ICMP", "packets": 2, "response_timeout": 1000}, probes)
            dns = api.create({"type": "dns", "af": 4, "target": dns_addr, "description": "console dns",
                              "query_class": "IN", "query_type": "A", "query_argument": "console.example.",
                              "use_probe_resolver": False, "timeout": 1000}, probes)
            xss = api.create({"type": "dns", "af": 4, "target": dns_addr, "description": "console hostile dns",
                              "query_class": "IN", "query_type": "TXT", "query_argument": "xss.example.",
                              "use_probe_resolver": False, "timeout": 1000}, probes[:1])

            # OONI measurements while the probes measure.
            c.start_intake()
            ooni_count = submit_ooni(c)

            for msm, what in [(ping, "ping"), (trace, "traceroute"), (dns, "dns")]:
                wait_results(api, msm, probes, what)
            own = wait_results(api, xss, probes[:1], "hostile dns")

            # The hostile result is newer than the probe's own, so it is its probe's latest.
            hostile = xss_result(xss, probes[0], dns_addr, max(r["timestamp"] for r in own) + 1)
            nats_publish(f"vantage.results.dns.{xss}", json.dumps(hostile).encode())
            wait_for("the hostile result through the API",
                     lambda: any(r.get("result_id") == hostile["result_id"] for r in api.latest(xss)), timeout=60)

            # Locating: the best location the API (through the engines) gives. Only the
            # RIR engine votes here, so it is country-only: no city name, and the console
            # says "(somewhere in NL)".
            def best_location():
                body = api.json(f"/api/v1/locate/{LOCATE_IP}")
                return (body.get("locations") or [None])[0]

            best = wait_for(f"a best location for {LOCATE_IP}", best_location, timeout=30)
            locate_city = best.get("cityName")
            locate_label = locate_city if best.get("scope", "city") == "city" else f"(somewhere in {best['countryCodeAlpha2']})"
            wait_for("OONI rows in /api/v1/aggregation", lambda: any(
                r.get("probe_cc") == OONI_CC and int(r.get("measurement_count", 0)) >= ooni_count
                for r in api.json(f"/api/v1/aggregation?axis_x=probe_cc&test_name={OONI_TEST}").get("result", [])),
                timeout=30)

            unknown_msm = max(ping, trace, dns, xss) + 1_000_000
            assert api.get(f"/api/v2/measurements/{unknown_msm}/").status_code == 404
            unknown_probe = max([*probes, never]) + 1_000_000
            assert api.get(f"/api/v2/probes/{unknown_probe}/").status_code == 404

            fixture = {
                "base": api.base,
                "api_key": api.key,
                "probes": probes,
                "probe_locations": {str(p): [lat, lon] for p, (_, _, lat, lon, _) in zip(probes, PROBES)},
                "disconnected_probe": never,
                "measurements": {"ping": ping, "traceroute": trace, "dns": dns},
                "xss_measurement": xss,
                "xss_text": XSS_TEXT,
                "locate_ip": LOCATE_IP,
                "locate_city": locate_city,
                "locate_label": locate_label,
                "ooni": {"probe_cc": OONI_CC, "test_name": OONI_TEST, "count": ooni_count},
                "unknown_msm": unknown_msm,
                "unknown_probe": unknown_probe,
            }
            path = c.tmp / "console-fixture.json"
            path.write_text(json.dumps(fixture, indent=2))
            SHOTS.mkdir(parents=True, exist_ok=True)
            print(f"console fixture {path} built in {time.monotonic() - started:.0f}s: {json.dumps(fixture)}")
            yield path, cert
        finally:
            # What would outlive the run in the stand-in: the measurements made with the key
            # (here and by the browser tests; the ping is periodic), the key, the probes.
            listed = json.loads(c.kubectl("get", "measurements", "-n", "default", "-o", "json", check=False) or "{}")
            names = [m["metadata"]["name"] for m in listed.get("items", [])
                     if m["metadata"].get("annotations", {}).get("vantage.dev/api-key") == key_name]
            if names:
                c.kubectl("delete", "measurements", "-n", "default", *names, "--wait=false", check=False)
            c.kubectl("delete", "secret", key_name, "-n", "default", "--wait=false", check=False)
            if probe_names:
                c.kubectl("delete", "probe", *probe_names, "--wait=false", check=False)
            c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
            if dns_sock:
                dns_sock.close()


@pytest.mark.parametrize("test_file", BROWSER_TESTS or [None], ids=lambda f: f.name if f else "none")
def test_console_in_browser(console_state, test_file: Path | None):
    if test_file is None:
        pytest.fail(f"no browser tests: {CONSOLE / 'e2e'} has no *.test.mjs")
    fixture, cert = console_state
    env = {**os.environ, "VANTAGE_CONSOLE_FIXTURE": str(fixture), "CONSOLE_SHOTS": str(SHOTS),
           "NODE_EXTRA_CA_CERTS": cert, "CHROMIUM": CHROMIUM}
    try:
        run = subprocess.run(["node", "--test", "--test-concurrency=1", "--test-reporter=spec", str(test_file.relative_to(CONSOLE))],
                             cwd=CONSOLE, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"{test_file.name} did not finish in {NODE_TIMEOUT}s:\n{out[-8000:]}")
    if run.returncode != 0:
        pytest.fail(f"{test_file.name} failed (node exit {run.returncode}):\n{run.stdout[-12000:]}\n{run.stderr[-4000:]}")
