"""An OONI-Probe-like client against the real `vantage intake`: check in, measure each
URL it is given (DNS lookup with getaddrinfo, TCP connect, HTTP GET, as web_connectivity
does), submit the measurements with the check-in's report id, close the report; then the
fastpath rows carry that report id and input, `GET /api/v1/measurement/{uid}` returns
each measurement, and the next check-in offers the measured URLs last.

The test lists are Citizen Lab-format files written here, pointing at an HTTP server the
test starts on loopback (and at a closed port, for a URL that cannot be reached). There
is no oohelperd: the control is a second fetch by this process.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
Wall time: a few seconds.
"""

import http.client
import http.server
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import ROOT, Cluster, free_port, wait_for  # noqa: E402

HEADER = "url,category_code,category_description,date_added,source,notes\n"
PROBE = {"probe_cc": "IT", "probe_asn": "AS64500", "software_name": "vantage-e2e-ooniprobe",
         "software_version": "0.1.0", "platform": "linux"}
TEST_HELPER = "https://th.example.org"


class Pages(http.server.BaseHTTPRequestHandler):
    """Small HTML pages with a title, like the sites of a test list."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = f"<html><head><title>vantage e2e {self.path}</title></head><body>page {self.path}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


@pytest.fixture(scope="module")
def world():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    closed = free_port()  # nothing listens there
    c = Cluster(log=lambda *_: None)
    lists = c.tmp / "test-lists" / "lists"
    lists.mkdir(parents=True)
    urls = {
        "it_news": f"http://localhost:{port}/it/news",
        "it_humr": f"http://localhost:{port}/it/humr",
        "g_news": f"http://localhost:{port}/global/news",
        "g_down": f"http://localhost:{closed}/global/down",
    }
    # Line 3 is bad on purpose (no such category): skipped, named in the log and the metric.
    (lists / "global.csv").write_text(HEADER + f"{urls['g_news']},NEWS,News Media,2026-01-10,vantage-e2e,\n"
                                      f"http://localhost:{port}/global/bad,NOPE,Nope,2026-01-10,vantage-e2e,\n"
                                      f"{urls['g_down']},COMT,Communication Tools,2026-01-10,vantage-e2e,\n")
    (lists / "it.csv").write_text(HEADER + f"{urls['it_news']},NEWS,News Media,2026-01-11,vantage-e2e,\n"
                                  f"{urls['it_humr']},HUMR,Human Rights Issues,2026-01-11,vantage-e2e,\n")
    try:
        c.start_intake("--test-lists", str(lists.parent), "--test-helper", TEST_HELPER,
                       fingerprints=ROOT / "collector" / "data" / "fingerprints")
        c.base = f"http://127.0.0.1:{c.ports['intake']}"
        c.urls = urls
        yield c
    finally:
        c.stop_all()
        server.shutdown()
        c.ch.query(f"DROP DATABASE IF EXISTS {c.db}")
        print(f"component logs: {c.tmp}")


def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def check_in(c: Cluster, categories: list[str] | None) -> dict:
    """What OONI Probe sends (probe-cli's OOAPICheckInConfig)."""
    status, answer = call("POST", c.base + "/api/v1/check-in", {
        **PROBE, "charging": False, "on_wifi": True, "run_type": "timed",
        "web_connectivity": {"category_codes": categories}})
    assert status == 200, answer
    return answer


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def fetch(ip: str, port: int, host: str, path: str) -> dict:
    """One HTTP GET to `ip`, with the URL's Host: OONI's requests entry."""
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "vantage-e2e-ooniprobe/0.1.0"})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return {"failure": None, "response": {"code": resp.status, "body": body, "headers": dict(resp.getheaders())}}
    finally:
        conn.close()


def measure(url: str, report_id: str, test_start: str) -> dict:
    """What web_connectivity does, without a test helper: resolve, connect, fetch; the
    control is a second fetch from here."""
    u = urllib.parse.urlsplit(url)
    host, port, path = u.hostname, u.port or 80, u.path or "/"
    start = now()
    t0 = time.monotonic()
    tk = {"agent": "redirect", "client_resolver": None, "queries": [], "tcp_connect": [], "requests": [],
          "dns_experiment_failure": None, "http_experiment_failure": None, "control_failure": None}
    try:
        addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)})
        tk["queries"].append({"engine": "system", "hostname": host, "query_type": "A", "failure": None,
                              "answers": [{"answer_type": "A", "ipv4": a, "ttl": None} for a in addrs],
                              "t": time.monotonic() - t0})
    except socket.gaierror as e:
        addrs = []
        tk["dns_experiment_failure"] = "dns_nxdomain_error"
        tk["queries"].append({"engine": "system", "hostname": host, "query_type": "A", "failure": str(e), "answers": []})
    reachable = []
    for ip in addrs:
        try:
            socket.create_connection((ip, port), timeout=3).close()
            tk["tcp_connect"].append({"ip": ip, "port": port, "status": {"success": True, "failure": None, "blocked": False},
                                      "t": time.monotonic() - t0})
            reachable.append(ip)
        except OSError:
            tk["tcp_connect"].append({"ip": ip, "port": port, "status": {"success": False, "failure": "connection_refused", "blocked": False},
                                      "t": time.monotonic() - t0})
    request = {"method": "GET", "url": url, "headers": {"Host": host}, "body": "", "tor": {"is_tor": False, "exit_ip": None, "exit_name": None}}
    if reachable:
        got = fetch(reachable[0], port, host, path)
        tk["requests"].append({**got, "request": request, "t": time.monotonic() - t0})
        control = fetch(reachable[0], port, host, path)
        tk["control"] = {"http_request": {"body_length": len(control["response"]["body"]), "failure": None,
                                          "status_code": control["response"]["code"], "headers": {}, "title": ""},
                         "tcp_connect": {f"{reachable[0]}:{port}": {"status": True, "failure": None}},
                         "dns": {"addrs": addrs, "failure": None}}
        same = got["response"]["code"] == control["response"]["code"] and got["response"]["body"] == control["response"]["body"]
        tk.update({"dns_consistency": "consistent", "status_code_match": same, "body_length_match": same,
                   "headers_match": True, "title_match": same, "body_proportion": 1.0,
                   "blocking": False, "accessible": same})
    else:
        tk["requests"].append({"failure": "connection_refused", "request": request, "response": None})
        tk["http_experiment_failure"] = "connection_refused"
        # The control cannot connect either: the site is down, not blocked.
        tk["control"] = {"tcp_connect": {f"{a}:{port}": {"status": False, "failure": "connection_refused"} for a in addrs},
                         "dns": {"addrs": addrs, "failure": None}, "http_request": {"failure": "connection_refused"}}
        tk.update({"dns_consistency": "consistent", "blocking": None, "accessible": None})
    return {"annotations": {"platform": "linux"}, "data_format_version": "0.2.0", "input": url,
            "measurement_start_time": start, "probe_asn": PROBE["probe_asn"], "probe_cc": PROBE["probe_cc"],
            "probe_ip": "127.0.0.1", "report_id": report_id, "software_name": PROBE["software_name"],
            "software_version": PROBE["software_version"], "test_helpers": {"backend": {"address": TEST_HELPER, "type": "https"}},
            "test_keys": tk, "test_name": "web_connectivity", "test_runtime": time.monotonic() - t0,
            "test_start_time": test_start, "test_version": "0.4.3"}


def run_nettest(c: Cluster, answer: dict) -> dict[str, str]:
    """Measure every URL of a check-in, submit each with its report id, close the
    report. Returns url -> measurement_uid."""
    wc = answer["tests"]["web_connectivity"]
    report_id, test_start = wc["report_id"], now()
    uids = {}
    for entry in wc["urls"]:
        msm = measure(entry["url"], report_id, test_start)
        status, got = call("POST", f"{c.base}/report/{report_id}", {"format": "json", "content": msm})
        assert status == 200, got
        uids[entry["url"]] = got["measurement_uid"]
    status, got = call("POST", f"{c.base}/report/{report_id}/close")
    assert (status, got) == (200, {})
    return uids


def fastpath_rows(c: Cluster, report_id: str) -> list[dict]:
    return c.ch.rows(f"SELECT measurement_uid, report_id, input, probe_cc, probe_asn, test_name, anomaly, confirmed "
                     f"FROM {c.db}.fastpath FINAL WHERE report_id = '{report_id}' ORDER BY input")


def test_probe_checks_in_measures_and_submits(world):
    c, urls = world, world.urls
    # First run: news only. Italy's list first, then the global one, never measured.
    first = check_in(c, ["NEWS"])
    assert first["v"] == 1 and first["probe_cc"] == "IT" and first["probe_asn"] == "AS64500"
    assert first["conf"]["test_helpers"] == {"web-connectivity": [{"address": TEST_HELPER, "type": "https"}]}
    assert [(u["url"], u["country_code"], u["category_code"]) for u in first["tests"]["web_connectivity"]["urls"]] == [
        (urls["it_news"], "IT", "NEWS"), (urls["g_news"], "XX", "NEWS")]
    report_1 = first["tests"]["web_connectivity"]["report_id"]
    uids_1 = run_nettest(c, first)

    # The fastpath rows carry the check-in's report and each input.
    rows = wait_for("the fastpath rows of the first report", lambda: (r := fastpath_rows(c, report_1)) and len(r) == 2 and r, timeout=30)
    assert sorted(r["input"] for r in rows) == sorted([urls["it_news"], urls["g_news"]])
    for r in rows:
        assert (r["report_id"], r["probe_cc"], int(r["probe_asn"]), r["test_name"]) == (report_1, "IT", 64500, "web_connectivity")
        assert r["measurement_uid"] == uids_1[r["input"]]
        assert (int(r["anomaly"]), int(r["confirmed"])) == (0, 0), r
    # And the measurement API returns each as submitted.
    for url, uid in uids_1.items():
        status, msm = call("GET", f"{c.base}/api/v1/measurement/{uid}")
        assert status == 200, msm
        assert (msm["measurement_uid"], msm["report_id"], msm["input"]) == (uid, report_1, url)
        assert msm["test_keys"]["accessible"] is True and msm["test_keys"]["requests"][0]["response"]["code"] == 200

    # Second run, every category: what was never measured comes first, in list order;
    # the news pages just measured come last.
    expected = [urls["it_humr"], urls["g_down"], urls["it_news"], urls["g_news"]]
    second = wait_for("the measured URLs last", lambda: (a := check_in(c, None)) and
                      [u["url"] for u in a["tests"]["web_connectivity"]["urls"]] == expected and a, timeout=30)
    report_2 = second["tests"]["web_connectivity"]["report_id"]
    assert report_2 != report_1
    uids_2 = run_nettest(c, second)
    rows = wait_for("the fastpath rows of the second report", lambda: (r := fastpath_rows(c, report_2)) and len(r) == 4 and r, timeout=30)
    assert {r["input"]: r["measurement_uid"] for r in rows} == uids_2
    status, down = call("GET", f"{c.base}/api/v1/measurement/{uids_2[urls['g_down']]}")
    assert status == 200 and down["test_keys"]["tcp_connect"][0]["status"]["failure"] == "connection_refused"

    # The test-list API: filtered by country and category, limited, OONI's shape.
    status, listed = call("GET", f"{c.base}/api/v1/test-list/urls?country_code=IT&category_codes=NEWS,HUMR&limit=2")
    assert status == 200, listed
    assert listed["metadata"] == {"count": 2, "current_page": 1, "limit": 2, "next_url": "", "pages": 1}
    assert {u["url"] for u in listed["results"]} <= {urls["it_news"], urls["it_humr"], urls["g_news"]}
    status, listed = call("GET", f"{c.base}/api/v1/test-list/urls?country_code=IT&category_codes=COMT")
    assert (status, listed["results"]) == (200, [{"category_code": "COMT", "country_code": "XX", "url": urls["g_down"]}])
    assert c.metric("intake", "vantage_intake_check_ins_total") >= 2


def test_lists_source_is_reported(world):
    c = world
    assert c.metric("intake", 'vantage_intake_source_bad_lines{kind="test_lists",file="lists/global.csv"}') == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{c.ports['intake-metrics']}/healthz", timeout=5) as r:
        health = json.loads(r.read())
    src = health["detail"]["source.test_lists"]
    assert src["version"].startswith("sha256:") and src["bad_lines"] == 1 and src["last_error"] is None, src
    log = c.logs("intake")
    assert "lists/global.csv" in log and "NOPE" in log, log[-3000:]


def test_bad_check_ins_get_ooni_errors(world):
    c = world
    before = c.metric("intake", 'vantage_intake_rejected_total{reason="bad_country"}')
    status, err = call("POST", c.base + "/api/v1/check-in", {**PROBE, "probe_cc": "QQ"})
    assert status == 400 and "ISO 3166-1" in err["error"] and '"ZZ"' in err["error"], err
    body = {**PROBE}
    del body["software_name"]
    status, err = call("POST", c.base + "/api/v1/check-in", body)
    assert status == 400 and "missing field software_name" in err["error"], err
    status, err = call("POST", c.base + "/api/v1/check-in", {**PROBE, "web_connectivity": {"category_codes": ["NEWS"] * 65}})
    assert status == 400 and "at most 64" in err["error"], err
    status, err = call("POST", c.base + "/api/v1/check-in", {**PROBE, "probe_asn": "64500"})
    assert status == 400 and "AS64500" in err["error"], err
    assert c.metric("intake", 'vantage_intake_rejected_total{reason="bad_country"}') == before + 1
