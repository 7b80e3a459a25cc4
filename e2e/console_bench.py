#!/usr/bin/env python3
"""The console's bench: the probe map with 10,000 probes and a measurement with
1,000,000 ping results, in headless Chromium and at the API.

    make console-bench            # private stack, release binaries (the Makefile's target)
    VANTAGE_STACK_DIR=/tmp/x python e2e/console_bench.py [--probes 10000] [--results 1000000]

On a running stack (e2e/stack/stack.sh up; its env file is read from VANTAGE_STACK_DIR):

1. starts `vantage operator` and `vantage api` (HTTPS, self-signed certificate) from
   VANTAGE_BIN_DIR, else target/release if it has `vantage` (build it first: a stale one
   lacks the console's routes; its build time is printed), else target/debug;
2. creates PROBES Probe resources in the Kubernetes API stand-in with parallel POSTs
   (spread over the world's land in 12 regions, 40 countries, 200 ASNs, a few tags),
   and waits until `/api/vantage/v1/probes/map` counts them all;
3. creates a one-off ping through the API (its id allocated by the operator), then
   inserts RESULTS rows for that id straight into ClickHouse's `results` and
   `ping_results` (INSERT ... SELECT FROM numbers(N)): valid RIPE ping results of 1,000
   probes (of the ones just created) x N/1,000 timestamps 240 s apart ending now, 3
   packets each, about 2 % of them losing one packet;
4. runs the browser benches that exist, console/bench/map.mjs (VANTAGE_CONSOLE_URL) and
   console/bench/measurement.mjs (also BENCH_MSM), printing their output, and names
   the ones that are missing;
5. times `/api/vantage/v1/probes/map`, `/api/vantage/v1/measurements/{id}/summary`,
   `.../probes?limit=500` and `/api/v2/measurements/{id}/latest/` with curl (a new TLS
   connection each time, gzip accepted, as a browser's first request): 5 runs, median;
6. deletes the Probe resources, the measurement, the API key and the run's ClickHouse
   database (unless --keep).

Exits non-zero when a browser bench fails (its budget) or the API answers an error.

What it leaves out: no probe connects (no controller, registration or collector run), so
every probe is "Never Connected" and the map's status filter has one class; the results
do not go through NATS and the collector (ingest has its own bench,
collector/examples/bench_ingest.rs) and only the ping tables are filled; no live
results (SSE), OONI or geolocation; one API process, whose catalog is warm when timed;
API, ClickHouse, the stand-in and Chromium share this machine's cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import ssl
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pick_bin_dir() -> Path:
    """VANTAGE_BIN_DIR, else target/release if it has `vantage`, else target/debug."""
    if os.environ.get("VANTAGE_BIN_DIR"):
        return Path(os.environ["VANTAGE_BIN_DIR"])
    release = ROOT / "target" / "release"
    return release if (release / "vantage").exists() else ROOT / "target" / "debug"


os.environ["VANTAGE_BIN_DIR"] = str(pick_bin_dir())
sys.path.insert(0, str(Path(__file__).resolve().parent))
from vantage_e2e import BIN, Cluster, free_port, wait_for  # noqa: E402

BENCHES = [("map.mjs", "the probe map (FRONT-A)"), ("measurement.mjs", "a measurement's page (FRONT-B)")]
RUNS = 5
LABEL = "vantage.dev/bench"

# Regions of land (lat/lon boxes) with their countries, so that probes land on the map's land.
REGIONS = [
    ((36, 60), (-10, 30), ["NL", "DE", "FR", "GB", "IT", "ES", "PL", "SE", "CZ", "AT"]),
    ((30, 48), (-122, -75), ["US"]),
    ((45, 55), (-123, -70), ["CA"]),
    ((-33, -5), (-70, -38), ["BR", "AR"]),
    ((19, 30), (-104, -98), ["MX"]),
    ((-34, -24), (18, 31), ["ZA"]),
    ((5, 12), (3, 9), ["NG"]),
    ((-3, 3), (33, 38), ["KE", "UG"]),
    ((24, 40), (44, 60), ["IR", "SA", "AE"]),
    ((10, 30), (72, 86), ["IN", "BD"]),
    ((22, 40), (105, 120), ["CN", "TW", "HK"]),
    ((33, 43), (131, 141), ["JP", "KR"]),
]
EXTRA_COUNTRIES = ["RU", "UA", "TR", "EG", "ID", "TH", "VN", "PH", "AU", "NZ", "CL", "CO", "PE", "SG"]
TAGS = ["home", "office", "datacentre", "fibre", "dsl", "cable", "lte", "ipv6", "nat", "academic"]


def ssh_ed25519(rng: random.Random) -> str:
    """An OpenSSH ed25519 public key line (random key; no probe uses it)."""
    def field(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b
    return "ssh-ed25519 " + base64.b64encode(field(b"ssh-ed25519") + field(rng.randbytes(32))).decode()


def probe_objects(first: int, n: int, run: str, seed: int = 18) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        (lat0, lat1), (lon0, lon1), ccs = REGIONS[i % len(REGIONS)]
        cc = ccs[rng.randrange(len(ccs))] if i % 10 else EXTRA_COUNTRIES[rng.randrange(len(EXTRA_COUNTRIES))]
        spec = {"id": first + i, "public_key": ssh_ed25519(rng), "enabled": True, "country_code": cc,
                "asn_v4": 64512 + rng.randrange(200), "tags": rng.sample(TAGS, rng.randrange(0, 3)),
                "anchor": i % 250 == 0}
        if i % 50:  # 2 % without a location
            spec["location"] = {"latitude": round(rng.uniform(lat0, lat1), 4), "longitude": round(rng.uniform(lon0, lon1), 4)}
        out.append({"apiVersion": "vantage.dev/v1alpha1", "kind": "Probe",
                    "metadata": {"name": f"bench-{first + i}", "labels": {LABEL: run}}, "spec": spec})
    return out


def kube_server(c: Cluster) -> str:
    for line in Path(c.env["KUBECONFIG"]).read_text().splitlines():
        if line.strip().startswith("server:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no server in {c.env['KUBECONFIG']}")


def create_probes(c: Cluster, objs: list[dict], workers: int = 8) -> None:
    url = kube_server(c) + "/apis/vantage.dev/v1alpha1/probes"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(obj: dict) -> None:
        req = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer bench"})
        with opener.open(req, timeout=60) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"POST {obj['metadata']['name']}: HTTP {r.status}")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, objs))


def delete_probes(c: Cluster, run: str) -> None:
    """Delete this run's Probe resources in one request (DELETE on the collection)."""
    url = kube_server(c) + "/apis/vantage.dev/v1alpha1/probes?" + urllib.parse.urlencode({"labelSelector": f"{LABEL}={run}"})
    req = urllib.request.Request(url, method="DELETE", headers={"Authorization": "Bearer bench"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=300) as r:
        r.read()


def insert_results(c: Cluster, msm: int, prb_first: int, n_results: int, n_probes: int = 1000, step: int = 240) -> None:
    """N ping results of `msm`: n_probes probes from prb_first, N/n_probes timestamps `step`
    apart ending now; raw is a valid RIPE ping result (3 packets, ~2 % losing the third)."""
    t0 = int(time.time()) - (n_results // n_probes) * step
    rows = f"""
        SELECT n, prb, ts, rid, lost, r1, r2, r3,
               if(lost, [r1, r2], [r1, r2, r3]) AS rtts,
               if(lost, 2, 3) AS rcvd,
               arrayReduce('min', rtts) AS mn, round(arrayReduce('avg', rtts), 3) AS av, arrayReduce('max', rtts) AS mx
        FROM (
            SELECT number AS n, {prb_first} + n % {n_probes} AS prb, {t0} + intDiv(n, {n_probes}) * {step} AS ts,
                   concat('00000000-be0c-7000-8000-', substring(concat('000000000000', lower(hex(n))), -12)) AS rid,
                   cityHash64(n, 4) % 100 < 2 AS lost,
                   round(5 + prb % 200 + (cityHash64(n, 1) % 1000) / 100, 3) AS r1,
                   round(5 + prb % 200 + (cityHash64(n, 2) % 1000) / 100, 3) AS r2,
                   round(5 + prb % 200 + (cityHash64(n, 3) % 1000) / 100, 3) AS r3
            FROM numbers({n_results})
        )"""
    raw = ("concat('{\"af\":4,\"avg\":', toString(av), ',\"dst_addr\":\"192.0.2.1\",\"dst_name\":\"192.0.2.1\",\"dup\":0,"
           "\"from\":\"198.51.100.', toString(prb % 250), '\",\"fw\":5020,\"lts\":12,\"max\":', toString(mx), "
           "',\"min\":', toString(mn), ',\"msm_id\":{msm},\"prb_id\":', toString(prb), ',\"proto\":\"ICMP\",\"rcvd\":', "
           "toString(rcvd), ',\"result\":[{\"rtt\":', toString(r1), '},{\"rtt\":', toString(r2), '},', "
           "if(lost, '{\"x\":\"*\"}', concat('{\"rtt\":', toString(r3), '}')), '],\"result_id\":\"', rid, "
           "'\",\"sent\":3,\"size\":48,\"src_addr\":\"10.0.0.2\",\"step\":240,\"timestamp\":', toString(ts), "
           "',\"ttl\":55,\"type\":\"ping\"}')").replace("{msm}", str(msm))
    db = c.db
    c.ch.query(f"""INSERT INTO {db}.results (result_id, msm_id, prb_id, type, timestamp, af, fw, from_addr, src_addr,
        dst_addr, dst_name, sent, rcvd, rtt_min, rtt_avg, rtt_max, raw, inserted_at)
        SELECT rid, {msm}, prb, 'ping', toDateTime(ts), 4, 5020, concat('198.51.100.', toString(prb % 250)), '10.0.0.2',
               '192.0.2.1', '192.0.2.1', 3, rcvd, mn, av, mx, {raw}, now() FROM ({rows})""")
    c.ch.query(f"""INSERT INTO {db}.ping_results (result_id, msm_id, prb_id, timestamp, af, dst_addr, sent, rcvd, loss,
        rtts, rtt_min, rtt_avg, rtt_max, inserted_at)
        SELECT rid, {msm}, prb, toDateTime(ts), 4, '192.0.2.1', 3, rcvd, if(lost, 100 / 3, 0), rtts, mn, av, mx, now()
        FROM ({rows})""")


def curl_times(url: str, ca: str) -> dict:
    """RUNS GETs of `url` with curl; median and all totals (ms), status and bytes."""
    totals, status, size = [], set(), set()
    for _ in range(RUNS):
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--compressed", "--cacert", ca, "-w",
                              "%{http_code} %{size_download} %{time_starttransfer} %{time_total}", url],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"curl {url}: {out.stderr.strip()}")
        code, dl, _ttfb, total = out.stdout.split()
        status.add(int(code))
        size.add(int(dl))
        totals.append(float(total) * 1000)
    return {"median_ms": statistics.median(totals), "runs_ms": [round(t, 1) for t in totals],
            "status": sorted(status), "gzip_bytes": max(size)}


def run_bench(script: Path, env: dict) -> int:
    print(f"\n== node {script.relative_to(ROOT)}", flush=True)
    t = time.monotonic()
    rc = subprocess.run(["node", str(script)], cwd=ROOT / "console", env=env, timeout=1800).returncode
    print(f"== {script.name}: exit {rc} after {time.monotonic() - t:.0f}s", flush=True)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probes", type=int, default=10_000)
    ap.add_argument("--results", type=int, default=1_000_000, help="ping results (a multiple of 1,000)")
    ap.add_argument("--keep", action="store_true", help="keep the Probe resources and the ClickHouse database")
    a = ap.parse_args()
    if a.results % 1000 or a.probes < 1000:
        ap.error("--results must be a multiple of 1,000 and --probes at least 1,000")
    if not shutil.which("node") or not shutil.which("curl"):
        print("needs node and curl: `make setup` installs them", file=sys.stderr)
        return 2

    c = Cluster(log=print)
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((BIN / "vantage").stat().st_mtime))
    print(f"binaries: {BIN} (vantage built {built}); ClickHouse database {c.db}; logs in {c.tmp}")
    run, failed = c.run_id, []
    key_name = f"bench-{run}".replace("_", "-")
    first = 10_000_000 + random.randint(0, 80_000_000)
    try:
        t = time.monotonic()
        c.kubectl("apply", "-f", str(ROOT / "crds"))
        subprocess.run([str(BIN / "vantage"), "migrate"], env=c.env, check=True, capture_output=True, timeout=120)
        c.ports["operator-metrics"] = free_port()
        c.start_operator()
        wait_for("operator /healthz", lambda: c._healthy("operator"), timeout=60)
        port, ca = c.start_api()
        base = f"https://127.0.0.1:{port}"
        key = c.api_key(key_name)
        print(f"operator and api up in {time.monotonic() - t:.1f}s: {base}")

        t = time.monotonic()
        objs = probe_objects(first, a.probes, run)
        create_probes(c, objs)
        print(f"{a.probes} Probe resources created in {time.monotonic() - t:.1f}s")

        def map_count() -> int:
            with urllib.request.urlopen(urllib.request.Request(base + "/api/vantage/v1/probes/map"),
                                        context=_ssl(ca), timeout=60) as r:
                return json.loads(r.read())["count"]
        wait_for(f"the API's map to count {a.probes} probes", lambda: map_count() >= a.probes, timeout=300, interval=2)
        print(f"the API's catalog has them after {time.monotonic() - t:.1f}s")

        body = {"definitions": [{"type": "ping", "af": 4, "target": "192.0.2.1", "description": "console bench",
                                 "packets": 3}],
                "probes": [{"type": "probes", "value": ",".join(str(first + i) for i in range(10)), "requested": 10}],
                "is_oneoff": True}

        def create():
            req = urllib.request.Request(base + "/api/v2/measurements/", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "Authorization": f"Key {key}"})
            try:
                with urllib.request.urlopen(req, context=_ssl(ca), timeout=60) as r:
                    return json.loads(r.read())["measurements"][0]
            except urllib.error.HTTPError as e:
                if e.code == 403:  # the key's Secret has not reached the API yet
                    return None
                raise RuntimeError(f"creating the ping: {e.code} {e.read()[:500]!r}") from e
        msm = wait_for("the ping measurement created", create, timeout=30)
        t = time.monotonic()
        insert_results(c, msm, first, a.results)
        n = int(c.ch.query(f"SELECT count() FROM {c.db}.results WHERE msm_id = {msm}").strip())
        print(f"measurement {msm}: {n} ping results inserted in {time.monotonic() - t:.1f}s")

        env = {**os.environ, "VANTAGE_CONSOLE_URL": base, "BENCH_MSM": str(msm), "NODE_EXTRA_CA_CERTS": ca}
        missing = []
        for name, what in BENCHES:
            script = ROOT / "console" / "bench" / name
            if not script.exists():
                missing.append(f"console/bench/{name} ({what})")
                continue
            if run_bench(script, env) != 0:
                failed.append(f"console/bench/{name}")

        print(f"\n== API, curl, {RUNS} runs each (new TLS connection, gzip accepted)")
        paths = ["/api/vantage/v1/probes/map", f"/api/vantage/v1/measurements/{msm}/summary",
                 f"/api/vantage/v1/measurements/{msm}/probes?limit=500", f"/api/v2/measurements/{msm}/latest/"]
        for path in paths:
            r = curl_times(base + path, ca)
            print(f"{path}: median {r['median_ms']:.1f} ms (runs {r['runs_ms']}), HTTP {r['status']}, "
                  f"{r['gzip_bytes']} bytes on the wire")
            if r["status"] != [200]:
                failed.append(path)
        if missing:
            print(f"\nmissing, not run: {', '.join(missing)}")
    finally:
        c.stop_all()
        if not a.keep:
            delete_probes(c, run)
            listed = json.loads(c.kubectl("get", "measurements", "-n", "default", "-o", "json", check=False) or "{}")
            names = [m["metadata"]["name"] for m in listed.get("items", [])
                     if m["metadata"].get("annotations", {}).get("vantage.dev/api-key") == key_name]
            if names:
                c.kubectl("delete", "measurements", "-n", "default", *names, "--wait=false", check=False)
            c.kubectl("delete", "secret", key_name, "-n", "default", "--wait=false", check=False)
            c.ch.query(f"DROP DATABASE IF EXISTS {c.db}")
        print(f"component logs: {c.tmp}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


def _ssl(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


if __name__ == "__main__":
    sys.exit(main())
