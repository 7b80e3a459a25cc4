"""Active single-radius end to end: `vantage engines` has no stored RTT to an address,
finds a probe in the address's ASN (from an ASN table), asks it for a one-off ping
through a Measurement resource, and the ping goes the normal way (operator → schedule
→ probe → controller → NATS → collector → ClickHouse `results`) back into the answer.

The target is a public address on this machine's loopback (traffic stays local), so it
needs root. Needs the local stack and the binaries (cargo build).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import connected_probe, running_cluster, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the target address goes on loopback")

TARGET = "193.0.14.129"
AMSTERDAM = 2759794
ASN = 64533


@pytest.fixture(scope="module")
def local_target():
    # On loopback (this kernel has no dummy interfaces): pings to it stay on the machine.
    subprocess.run(["ip", "addr", "add", f"{TARGET}/32", "dev", "lo"], check=True)
    try:
        yield TARGET
    finally:
        subprocess.run(["ip", "addr", "del", f"{TARGET}/32", "dev", "lo"], check=False)


def test_a_probe_in_the_targets_asn_is_asked_to_ping_and_its_rtt_locates_the_target(local_target):
    with running_cluster() as c:
        ns = f"geo-active-{c.run_id}".replace("_", "-")
        c.kubectl_apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        c.kubectl_apply({"apiVersion": "vantage.dev/v1alpha1", "kind": "GeolocationEngine",
                         "metadata": {"name": "single-radius", "namespace": ns},
                         "spec": {"engine": "single-radius"}})
        # Probe in Amsterdam (the harness's default location), in the target's ASN.
        pid = connected_probe(c, country="NL", asn=ASN)
        table = c.tmp / "ipasn.dat"
        table.write_text(f"; pyasn\n193.0.14.0/24\t{ASN}\n")
        c.start_engines(ns, "--asn-table", str(table), "--active-rounds", "1")
        wait_for("the single-radius resource Ready", lambda: any(
            cond["type"] == "Ready" and cond["status"] == "True"
            for cond in c.get("geolocationengine", "single-radius", ns).get("status", {}).get("conditions", [])),
            timeout=30)

        started = time.monotonic()
        with urllib.request.urlopen(
                f"http://127.0.0.1:{c.ports['engines']}/api/v1/locate/{local_target}/partials", timeout=300) as r:
            body = json.loads(r.read())
        took = time.monotonic() - started
        partial = next(p for p in body["partials"] if p["engine"] == "single-radius")
        assert not partial.get("error"), partial
        # A ping to this machine is well under 1 ms: a 10 km disc around the probe.
        assert partial["locations"], partial
        assert partial["locations"][0]["id"] == AMSTERDAM, partial

        # The measurement went the normal way: the probe's ping is in `results`, and the
        # engines deleted their one-off Measurement afterwards.
        results = c.ch.rows(f"SELECT prb_id, msm_id, rtt_min FROM {c.db}.results "
                            f"WHERE dst_addr = '{local_target}' AND type = 'ping'")
        assert [int(r["prb_id"]) for r in results] == [pid], results
        assert 0 < float(results[0]["rtt_min"]) < 1.0, results
        left = json.loads(c.kubectl("get", "measurements", "-n", ns, "-o", "json"))["items"]
        assert left == [], left
        print(f"locate with active measurement took {took:.1f} s")
