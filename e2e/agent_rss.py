"""Resident memory of the probe agent, idle and with 100 periodic measurements.

    make setup stack-up && cargo build --bins && make deb
    .venv/bin/python e2e/agent_rss.py                # the binary `make deb` packs
    .venv/bin/python e2e/agent_rss.py --probe-bin target/release-probe/vantage-probe   # glibc, dynamic

Starts operator, collector, registration server and one controller (target/debug, or
VANTAGE_BIN_DIR) against the local stack, then the agent under test as a probe, and reads
`/proc/<pid>/status` (and `/proc/<pid>/smaps`, summed by mapping) of the agent:

1. idle: `--settle` seconds (10) after the Probe status says connected;
2. busy: once `--measurements` (100) periodic ping Measurements of 127.0.0.1 (interval
   60 s, spread 60 s, 3 packets 200 ms apart, on this probe only) are scheduled on the
   agent, every second for `--busy-seconds` (130: two periods). It reports the largest
   sample, the last one, the kernel's high-water mark (VmHWM, which includes the start-up
   peak) and how many results reached ClickHouse in that time.

It prints the figures and, with `--json FILE`, writes them as JSON. The Measurements are
deleted and the processes stopped at the end; the logs stay in the run's temp dir
(printed). The figures are in docs/BENCHMARKS.md, "Agent size and idle memory".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vantage_e2e import ROOT, Cluster, wait_for

FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmData", "Threads")


def proc_status(pid: int) -> dict[str, int]:
    """The memory fields of /proc/<pid>/status, in KiB (Threads: a count)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0])
    return out


def smaps(pid: int) -> dict[str, int]:
    """Resident KiB by mapping (file path, or [heap], [stack], [anon]), largest first."""
    by: dict[str, int] = {}
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head:
            continue
        if not head[0].endswith(":"):  # a mapping line: range perms offset dev inode [path]
            name = head[5] if len(head) > 5 else "[anon]"
        elif head[0] == "Rss:":
            by[name] = by.get(name, 0) + int(head[1])
    return dict(sorted(((k, v) for k, v in by.items() if v), key=lambda kv: -kv[1]))


def deb_binary() -> Path:
    """target/<host triple>/release-probe/vantage-probe: what `make deb` builds and packs."""
    host = next((line.split()[1] for line in subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout.splitlines()
                 if line.startswith("host:")), "x86_64-unknown-linux-gnu")
    return ROOT / "target" / host / "release-probe" / "vantage-probe"


def mib(kib: int) -> str:
    return f"{kib / 1024:.2f} MiB"


def measurement(run: str, i: int, probe: int) -> dict:
    return {
        "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
        "metadata": {"name": f"rss-{run}-{i}", "namespace": "default", "labels": {"vantage-e2e-rss": run}},
        "spec": {"type": "ping", "af": 4, "target": "127.0.0.1", "packets": 3, "size": 48, "packet_interval": 200,
                 "interval": 60, "spread": 60, "description": f"agent_rss.py {i}",
                 "probes": [{"type": "probes", "value": str(probe), "requested": 1}]},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probe-bin", type=Path, default=deb_binary(),
                    help="the agent to measure (default: the one `make deb` packs)")
    ap.add_argument("--measurements", type=int, default=100)
    ap.add_argument("--settle", type=float, default=10.0, help="seconds connected before the idle reading")
    ap.add_argument("--busy-seconds", type=float, default=130.0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--label", default="", help="a name for this build, printed and written to the JSON")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the agent")
    ap.add_argument("--cold", action="store_true",
                    help="drop the binary's pages from the page cache before starting it (posix_fadvise DONTNEED)")
    args = ap.parse_args()
    probe_bin = args.probe_bin.resolve()
    if not probe_bin.exists():
        print(f"{probe_bin} is missing: `make deb` builds it", file=sys.stderr)
        return 2

    c = Cluster(log=lambda *_: None)
    c.env.update(kv.split("=", 1) for kv in args.env)
    figures: dict = {"label": args.label, "binary": str(probe_bin), "binary_bytes": probe_bin.stat().st_size}
    run = c.run_id.replace("_", "-")
    made = False
    try:
        c.start_servers()
        pid, key, _ = c.add_probe()
        if args.cold:
            with open(probe_bin, "rb") as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        proc = c.start(f"probe-{pid}", [str(probe_bin), "run", "--key", str(key), "--anchor", str(c.anchor)])
        wait_for(f"probe {pid} connected",
                 lambda: c.get("probe", f"probe-{pid}").get("status", {}).get("connected"), timeout=60)
        time.sleep(args.settle)
        figures["idle"] = proc_status(proc.pid)
        figures["idle_smaps"] = smaps(proc.pid)

        if args.measurements > 0:
            items = [measurement(run, i, pid) for i in range(args.measurements)]
            made = True
            c.kubectl("apply", "-f", "-", input="\n".join(json.dumps(m) for m in items))
            wait_for(f"{args.measurements} measurements scheduled on the agent",
                     lambda: sum(1 for line in c.logs(f"probe-{pid}").splitlines() if "measurement scheduled" in line)
                     >= args.measurements, timeout=120, interval=1)
            samples = []
            deadline = time.monotonic() + args.busy_seconds
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"the agent exited with {proc.returncode}")
                samples.append(proc_status(proc.pid))
                time.sleep(1)
            results = c.ch.rows(f"SELECT count() AS n FROM {c.db}.results FINAL WHERE prb_id = {pid}")[0]["n"]
            if int(results) == 0:
                raise RuntimeError(f"no result of probe {pid} reached ClickHouse in {args.busy_seconds:.0f} s")
            figures["busy"] = {
                "max": max(samples, key=lambda s: s["VmRSS"]),
                "last": samples[-1],
                "results": int(results),
                "seconds": args.busy_seconds,
            }
    except Exception as e:  # noqa: BLE001 - print component logs on any failure
        print(f"agent_rss failed: {e}", file=sys.stderr)
        for name in list(c.procs):
            print(f"--- {name} log (tail) ---\n{c.logs(name)[-2000:]}", file=sys.stderr)
        return 1
    finally:
        if made:
            c.kubectl("delete", "measurements", "-n", "default", "-l", f"vantage-e2e-rss={run}",
                      "--wait=true", "--timeout=60s", check=False)
        c.stop_all()

    print(f"agent {probe_bin} ({figures['binary_bytes']:,} bytes) {args.label}")
    idle = figures["idle"]
    print(f"  idle, {args.settle:.0f} s after connecting: VmRSS {mib(idle['VmRSS'])} "
          f"(anon {mib(idle['RssAnon'])}, file {mib(idle['RssFile'])}), VmHWM {mib(idle['VmHWM'])}, threads {idle['Threads']}")
    print("    resident by mapping: " + ", ".join(f"{Path(k).name or k} {v} KiB" for k, v in figures["idle_smaps"].items()))
    if "busy" in figures:
        b = figures["busy"]
        print(f"  {args.measurements} periodic pings, {args.busy_seconds:.0f} s, {b['results']} results stored: "
              f"VmRSS max {mib(b['max']['VmRSS'])}, last {mib(b['last']['VmRSS'])} "
              f"(anon {mib(b['last']['RssAnon'])}), VmHWM {mib(b['last']['VmHWM'])}, threads {b['last']['Threads']}")
    print(f"  logs: {c.tmp}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
