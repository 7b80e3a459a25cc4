"""`make demo`: one real ping measurement through every vantage component.

Starts the operator, collector, registration server, a controller and a probe against
the local stack, applies examples/ping.yaml with kubectl, waits for results, prints them
from ClickHouse as a table with the Measurement's status, and stops everything.
"""

import json
import sys
import time

from vantage_e2e import ROOT, Cluster, wait_for


def main() -> int:
    c = Cluster()
    try:
        print(f"== run {c.run_id}: logs in {c.tmp}")
        c.start_servers()
        pid, key, _ = c.add_probe()
        c.start_probe(pid, key)
        wait_for(f"probe {pid} connected", lambda: c.get("probe", f"probe-{pid}").get("status", {}).get("connected"), timeout=60)
        print(f"== probe {pid} is connected to {c.get('probe', f'probe-{pid}')['status']['controller']}")
        print(c.kubectl("apply", "-f", str(ROOT / "examples" / "ping.yaml")).strip())
        status = wait_for("results in the Measurement status",
                          lambda: (s := c.get("measurement", "ping-localhost", "default").get("status", {})).get("results", 0) >= 1 and s,
                          timeout=90)
        rows = c.ch.rows(f"SELECT prb_id, toString(timestamp) AS ts, dst_addr, sent, rcvd, rtt_min, rtt_avg, rtt_max, raw "
                         f"FROM {c.db}.results FINAL WHERE msm_id = {status['id']} ORDER BY timestamp")
        print(f"\n== results of measurement {status['id']} read back from ClickHouse ({c.db}.results)")
        print(f"{'probe':>8} {'time (UTC)':>20} {'target':>10} {'sent':>4} {'rcvd':>4} {'min ms':>8} {'avg ms':>8} {'max ms':>8}  rtts")
        for r in rows:
            rtts = [x.get("rtt", x.get("x", "err")) for x in json.loads(r["raw"])["result"]]
            print(f"{r['prb_id']:>8} {r['ts']:>20} {r['dst_addr']:>10} {r['sent']:>4} {r['rcvd']:>4} "
                  f"{r['rtt_min']:>8.3f} {r['rtt_avg']:>8.3f} {r['rtt_max']:>8.3f}  {rtts}")
        print("\n== kubectl get measurements")
        print(c.kubectl("get", "measurements", "-n", "default"))
        print("== Measurement status")
        print(json.dumps(c.get("measurement", "ping-localhost", "default")["status"], indent=2))
        print("\n== kubectl get probes")
        print(c.kubectl("get", "probes"))
        c.kubectl("delete", "-f", str(ROOT / "examples" / "ping.yaml"), "--wait=true", "--timeout=30s")
        return 0 if rows else 1
    except Exception as e:  # noqa: BLE001 - print component logs on any failure
        print(f"demo failed: {e}", file=sys.stderr)
        for name in list(c.procs):
            print(f"--- {name} log (tail) ---\n{c.logs(name)[-2500:]}", file=sys.stderr)
        return 1
    finally:
        c.stop_all()


if __name__ == "__main__":
    sys.exit(main())
