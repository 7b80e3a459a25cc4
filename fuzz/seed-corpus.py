#!/usr/bin/env python3
"""Regenerate the fuzz seed corpora (fuzz/corpus/<target>/) from real samples.

Sources: the RIPE Atlas results in ../shared/reference/ripe-atlas-result-samples.json
(or $VANTAGE_REFERENCE), the OONI measurements in collector/tests/fixtures, and the
formats described in ../shared/reference/ANCHORS.md (definitions, RIR statistics).
Usage: python3 fuzz/seed-corpus.py   (from the repository root; `make fuzz-corpus`)
Files are named by the SHA-1 of their content, as libFuzzer names them; the inputs
that once crashed a target are kept beside them as `crash-<sha1>`.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.environ.get("VANTAGE_REFERENCE", os.path.join(ROOT, "..", "shared", "reference"))
SAMPLES = os.path.join(REFERENCE, "ripe-atlas-result-samples.json")
if not os.path.exists(SAMPLES):  # a clean clone without ../shared: the copy in the repo
    SAMPLES = os.path.join(ROOT, "collector", "tests", "fixtures", "ripe-atlas-result-samples.json")
OONI = os.path.join(ROOT, "collector", "tests", "fixtures", "measurements.json")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
TARGETS = ["frame", "definition", "typed_results", "dns_abuf", "x509_chain", "ooni_report", "rir"]


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def compact(v):
    return json.dumps(v, separators=(",", ":"))


def results():
    with open(SAMPLES) as f:
        samples = json.load(f)
    for kind, items in samples.items():
        for i, r in enumerate(items):
            r = dict(r)
            r.setdefault("result_id", f"{kind}-{i}")
            yield kind, r


def pem_blocks(text):
    text = text.replace("\\n", "\n")
    for m in re.finditer(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S):
        try:
            yield base64.b64decode("".join(m.group(1).split()))
        except ValueError:
            pass


DEFINITIONS = [
    {"type": "ping", "af": 4, "target": "193.0.6.139", "description": "ping", "interval": 240, "packets": 3, "size": 48, "packet_interval": 1000},
    {"type": "ping", "af": 6, "target": "2001:67c:2e8:22::c100:68b", "spread": 60, "resolve_on_probe": True},
    {"type": "traceroute", "af": 4, "target": "example.net", "protocol": "UDP", "paris": 16, "first_hop": 1, "max_hops": 32, "size": 48, "port": 33434, "dont_fragment": False},
    {"type": "traceroute", "af": 4, "target": "example.net", "protocol": "TCP", "port": 443},
    {"type": "mtr", "af": 4, "target": "example.org", "packets": 5},
    {"type": "dns", "af": 4, "query_class": "IN", "query_type": "AAAA", "query_argument": "ripe.net", "use_probe_resolver": True, "set_rd_bit": True, "set_do_bit": True, "udp_payload_size": 4096, "protocol": "UDP", "retry": 1},
    {"type": "dns", "af": 6, "target": "k.root-servers.net", "query_class": "CHAOS", "query_type": "TXT", "query_argument": "hostname.bind", "set_nsid_bit": True, "protocol": "TCP"},
    {"type": "http", "af": 4, "target": "www.ripe.net", "method": "GET", "path": "/", "query_string": "a=1", "port": 443, "version": "1.1", "header_bytes": 1024, "timing_verbosity": 1, "https": True},
    {"type": "sslcert", "af": 4, "target": "www.ripe.net", "port": 443, "hostname": "www.ripe.net"},
    {"type": "ntp", "af": 4, "target": "pool.ntp.org", "packets": 3, "timeout": 4000},
    {"type": "pong", "target": "127.0.0.1"},
    {"type": "ping", "target": "example.net", "packets": -3},
]
SOURCES = [
    {"requested": 5, "type": "area", "value": "WW"},
    {"requested": 3, "type": "country", "value": "NL", "tags": {"include": ["system-ipv4-works"], "exclude": ["system-anchor"]}},
    {"requested": 2, "type": "asn", "value": "3333"},
    {"requested": 1, "type": "prefix", "value": "193.0.0.0/21"},
    {"requested": 2, "type": "probes", "value": "1,2,3"},
    {"requested": 10, "type": "msm", "value": "1001"},
]

RIR = [
    "2|ripencc|1732147199|212345|19830705|20241120|+0100\n"
    "ripencc|*|asn|*|38079|summary\nripencc|*|ipv4|*|81238|summary\nripencc|*|ipv6|*|93012|summary\n"
    "ripencc|NL|asn|3333|1|19930901|assigned|a1b2\n"
    "ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|a1b2\n"
    "ripencc|FR|ipv4|2.0.0.0|1048576|20100712|allocated|c3d4\n"
    "ripencc|DE|ipv4|5.1.0.0|1536|20120101|allocated|e5f6\n"
    "ripencc||ipv4|2.56.8.0|1024||available||\n"
    "ripencc|ZZ|ipv4|2.56.12.0|1024||reserved||\n"
    "ripencc|NL|ipv6|2001:67c::|32|20030610|allocated|a1b2\n",
    "2.3|arin|1732161603|154522|19700101|20241120|-0500\n"
    "arin|*|ipv4|*|61538|summary\n"
    "arin|US|ipv4|8.0.0.0|16777216|19921201|allocated|x\n"
    "arin|CA|ipv6|2001:500::|30|20020611|assigned|y\n",
    "2|apnic|20241120|64000|19830613|20241119|+1000\n"
    "apnic|AU|ipv4|1.0.0.0|256|20110811|assigned|A91872ED\n"
    "apnic|CN|ipv4|1.0.1.0|256|20110414|allocated|A92E1062\n"
    "apnic|JP|ipv6|2001:200::|35|19990813|allocated|A91D5A4F\n",
    "2|afrinic|20241120|8000|00000000|20241120|+0000\n"
    "afrinic|ZA|ipv4|41.0.0.0|2097152|20071126|allocated|F36D1D9C\n",
    "2|lacnic|20241120|13000|19870101|20241119|-0300\n"
    "lacnic|BR|ipv4|177.0.0.0|262144|20100622|allocated|123\n"
    "lacnic|AR|ipv6|2800::|12|20061108|allocated|456\n",
]


def main():
    # Seeds are rewritten; inputs that once crashed a target (`crash-*`, kept as
    # regression inputs) stay.
    for t in TARGETS:
        d = os.path.join(CORPUS, t)
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if not f.startswith("crash-"):
                os.remove(os.path.join(d, f))
    per_kind = {}
    for kind, r in results():
        put("typed_results", compact(r))
        if per_kind.setdefault(kind, 0) < 2:
            per_kind[kind] += 1
            put("frame", b"\x00" + compact({"kind": "result", "v": 1, "result": r}).encode() + b"\n")
        res = r.get("result")
        entries = [res] if isinstance(res, dict) else [e.get("result") for e in r.get("resultset", []) if isinstance(e, dict)]
        for e in entries:
            if isinstance(e, dict) and isinstance(e.get("abuf"), str):
                try:
                    put("dns_abuf", base64.b64decode(e["abuf"]))
                except ValueError:
                    pass
        for pem in r.get("cert", []) if isinstance(r.get("cert"), list) else []:
            for der in pem_blocks(pem):
                put("x509_chain", der)
    put("frame", b"\x00" + b'{"kind":"hello","v":1,"fw":5020,"uptime_s":3600}\n{"kind":"schedule_ack","v":1,"revision":3}\n')
    put("frame", b"\x03INIT fw=5020\n")
    put("frame", b"\xf1" + b'{"kind":"result","v":1,"result":{"result_id":"' + b"x" * 200 + b'"}}')
    task = {"msm_id": 1000001, "af": 4, "target": "193.0.6.139", "interval": 240, "spread": 240,
            "is_oneoff": False, "type": "ping", "packets": 3, "size": 48, "packet_interval_ms": 1000}
    dns = {"msm_id": 1000002, "af": 6, "target": "k.root-servers.net", "interval": 300, "spread": 0,
           "start_time": 1800000000, "type": "dns", "protocol": "UDP", "query_class": "IN",
           "query_type": "AAAA", "query_argument": "ripe.net", "use_probe_resolver": False,
           "set_rd_bit": True, "set_do_bit": False, "set_cd_bit": False, "set_nsid_bit": True,
           "udp_payload_size": 1232, "retry": 0, "timeout_ms": 5000}
    put("frame", b"\x07" + compact({"cmd": "schedule", "v": 1, "revision": 9, "tasks": [task, dns]}).encode() + b"\n")
    for d in DEFINITIONS:
        put("definition", compact({"definitions": [d], "probes": SOURCES[:1]}))
    put("definition", compact({"definitions": DEFINITIONS[:3], "probes": SOURCES, "start_time": 1800000000,
                               "stop_time": 1800086400, "is_oneoff": False, "bill_to": "x"}))
    put("definition", compact({"definitions": DEFINITIONS[5:7], "probes": SOURCES[2:], "is_oneoff": True}))
    with open(OONI) as f:
        ooni = json.load(f)
    for name, m in ooni.items():
        put("ooni_report", compact({"format": "json", "content": m}))
    first = next(iter(ooni.values()))
    opening = {k: first.get(k) for k in ["data_format_version", "probe_asn", "probe_cc", "software_name",
                                          "software_version", "test_name", "test_start_time", "test_version"]}
    put("ooni_report", compact(dict(opening, format="json")))
    body = compact({"format": "json", "content": first}).encode()
    if shutil.which("zstd"):
        z = subprocess.run(["zstd", "-q", "-c", "-3"], input=body, capture_output=True, check=True).stdout
        put("ooni_report", z)
    for text in RIR:
        put("rir", text)
    total = 0
    for t in TARGETS:
        d = os.path.join(CORPUS, t)
        n = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += n
        print(f"{t}: {len(os.listdir(d))} files, {n} bytes")
    print(f"total: {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
