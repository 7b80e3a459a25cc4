"""`make soak`: many full probe sessions that churn, periodic measurements, and the API
under steady query load, for a long run (default 30 minutes, 2,000 probes).

The real components run as processes against the local stack, as in the e2e tests:
operator, collector, registration server, controllers and `vantage api` (HTTPS). The
probes are `fleet/examples/soak_probes.rs`, one process holding every session, each on
the agent's own loop and measurement code (pings, traceroutes and DNS answered on
loopback). The run:

1. creates the Probe resources (with the probes' keys) and starts the probes; waits
   until every session is up and the operator sees every probe connected;
2. creates periodic ping, traceroute and DNS Measurements through the API (RIPE Atlas
   body, API key), each on up to 1,000 probes, so every probe runs one of each;
3. for --minutes: 10 % of the probes a minute reconnect (session ended, registration
   again), a thread queries the API a few times a second (measurement list and detail,
   latest results, results of the last two minutes, probe list and detail), and a
   progress line every --progress-secs gives sessions, results, RSS and open files;
4. stops the Measurements through the API, lets the probes drain their outboxes, and
   checks that every result a probe handed to its outbox is in ClickHouse and comes
   back through the API (`lost` must be 0).

It prints VmRSS and the open file descriptors (/proc/<pid>/fd) of every component at the
start and the end of step 3, and writes everything to <workdir>/soak-summary.json. The
exit status is 1 if a result was lost or a probe never came up.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from vantage_e2e import BIN, ROOT, STACK_DIR, Cluster, wait_for

MAX_REQUESTED = 1000  # the operator's default --max-requested (RIPE Atlas's cap too)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}", flush=True)


# -- /proc readings -----------------------------------------------------------------------
def proc_reading(pid: int) -> dict:
    """VmRSS and VmHWM (KiB) and the number of open file descriptors of `pid`."""
    out = {"pid": pid, "rss_kib": None, "hwm_kib": None, "fds": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm_kib"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def stack_pids() -> dict[str, int]:
    """The local stack's servers (their pid files)."""
    pids = {}
    for name, label in [("nats", "nats-server"), ("clickhouse", "clickhouse"), ("kube", "kube-standin")]:
        try:
            pids[label] = int((STACK_DIR / "pids" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            pass
    return pids


def mib(kib) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


# -- the Kubernetes API stand-in ----------------------------------------------------------------
class Kube:
    """Plain HTTP to the API server of the kubeconfig (many Probes at once: kubectl would
    start one process per object)."""

    def __init__(self, kubeconfig: str):
        text = Path(kubeconfig).read_text()
        self.server = re.search(r"server:\s*(\S+)", text).group(1).rstrip("/")
        token = re.search(r"token:\s*(\S+)", text)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token.group(1)}"

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=self.headers)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"{}")


# -- the API under query load ---------------------------------------------------------------------
class QueryLoad(threading.Thread):
    """Requests at `rate` a second over a keep-alive HTTPS connection, round-robin over the
    read routes; latency kept per route."""

    def __init__(self, base: str, ca: str, rate: float, msm_ids: list[int], probe_ids: list[int]):
        super().__init__(daemon=True)
        self.base, self.rate = base, rate
        self.session = requests.Session()
        self.ca = ca  # per request: a session's `verify` loses to REQUESTS_CA_BUNDLE
        self.msm_ids, self.probe_ids = msm_ids, probe_ids
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.codes: collections.Counter = collections.Counter()
        self.errors: list[str] = []
        self.bytes = 0

    def routes(self):
        i = 0
        while True:
            msm = self.msm_ids[i % len(self.msm_ids)]
            prb = self.probe_ids[(i * 7919) % len(self.probe_ids)]
            now = int(time.time())
            yield from [
                ("measurements list", f"/api/v2/measurements/?id__in={','.join(map(str, self.msm_ids))}"),
                ("measurement", f"/api/v2/measurements/{msm}/"),
                ("latest", f"/api/v2/measurements/{msm}/latest/"),
                ("results, last 2 min", f"/api/v2/measurements/{msm}/results/?start={now - 120}&stop={now}"),
                ("probes list", f"/api/v2/probes/?asn={64600 + i % 20}"),
                ("probe", f"/api/v2/probes/{prb}/"),
            ]
            i += 1

    def run(self):
        gap = 1.0 / self.rate
        next_at = time.monotonic()
        for route, path in self.routes():
            if self.stop_event.is_set():
                return
            t0 = time.monotonic()
            try:
                r = self.session.get(self.base + path, timeout=60, verify=self.ca)
                body = r.content
                ms = (time.monotonic() - t0) * 1000
                with self.lock:
                    self.codes[r.status_code] += 1
                    self.bytes += len(body)
                    if r.status_code == 200:
                        self.latency[route].append(ms)
                    elif len(self.errors) < 20:
                        self.errors.append(f"{route}: {r.status_code} {body[:200]!r}")
            except requests.RequestException as e:
                with self.lock:
                    self.codes["error"] += 1
                    if len(self.errors) < 20:
                        self.errors.append(f"{route}: {e}")
            next_at += gap
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up

    def summary(self) -> dict:
        with self.lock:
            out = {}
            every = []
            for route, ms in self.latency.items():
                s = sorted(ms)
                every += s
                out[route] = {"n": len(s), "p50_ms": pct(s, 0.5), "p99_ms": pct(s, 0.99), "max_ms": round(s[-1], 1)}
            every.sort()
            out["all"] = {"n": len(every), "p50_ms": pct(every, 0.5), "p99_ms": pct(every, 0.99),
                          "max_ms": round(every[-1], 1) if every else None}
            return {"routes": out, "codes": {str(k): v for k, v in self.codes.items()}, "errors": list(self.errors),
                    "mib_read": round(self.bytes / 2**20, 1)}


def pct(sorted_values: list[float], p: float):
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(round((len(sorted_values) - 1) * p)))], 1)


# -- the probes process ------------------------------------------------------------------------------
class Probes:
    """`soak_probes run`: commands on its stdin, JSON lines from its stdout."""

    def __init__(self, args: list[str], env: dict, stderr_path: Path):
        self.stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     env=env, cwd=ROOT, text=True, bufsize=1, start_new_session=True)
        self.latest: dict = {}
        self.events: list[dict] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.cond:
                self.events.append(ev)
                if ev.get("event") in ("progress", "final"):
                    self.latest = ev
                self.cond.notify_all()

    def send(self, cmd: str):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if ev.get("event") == name:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"soak_probes: no {name!r} event within {timeout}s (exit {self.proc.poll()})")
                self.cond.wait(min(left, 1.0))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=90)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.stderr.close()


# -- the run ------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 30)))
    ap.add_argument("--probes", type=int, default=int(os.environ.get("SOAK_PROBES", 2000)))
    ap.add_argument("--controllers", type=int, default=int(os.environ.get("SOAK_CONTROLLERS", 2)))
    ap.add_argument("--churn", type=float, default=0.10, help="share of the probes that reconnect a minute")
    ap.add_argument("--interval", type=int, default=60, help="seconds between runs of each periodic measurement")
    ap.add_argument("--query-rate", type=float, default=4.0, help="API requests a second")
    ap.add_argument("--start-rate", type=float, default=50.0, help="probes started a second")
    ap.add_argument("--progress-secs", type=float, default=60.0)
    ap.add_argument("--probes-bin", default=str(ROOT / "target" / "release" / "examples" / "soak_probes"))
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    a.probes_bin = str(Path(a.probes_bin).resolve())

    c = Cluster(workdir=Path(a.workdir) if a.workdir else None, log=log)
    c.env["RUST_LOG"] = os.environ.get("SOAK_RUST_LOG", "info")
    summary: dict = {"probes": a.probes, "controllers": a.controllers, "minutes": a.minutes, "churn_per_min": a.churn,
                     "interval_s": a.interval, "query_rate": a.query_rate, "bin_dir": str(BIN), "workdir": str(c.tmp),
                     "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git("rev-parse", "HEAD"),
                     "uncommitted_files": len(git("status", "--short").splitlines()), "nproc": os.cpu_count()}
    kube = Kube(c.env["KUBECONFIG"])
    probes: Probes | None = None
    load: QueryLoad | None = None
    msm_ids: list[int] = []
    api_key_name = f"soak-{c.run_id}".replace("_", "-")
    label = f"vantage.dev/soak={c.run_id}"
    try:
        log(f"== soak {c.run_id}: {a.probes} probes, {a.controllers} controllers, {a.minutes} min, "
            f"churn {a.churn:.0%}/min, logs in {c.tmp}")
        c.start_servers(controllers=a.controllers)
        # The collector with production's batching (the e2e tests' 200 ms makes five INSERTs a
        # second per table, whose merged-away parts filled the disk within minutes).
        c.stop("collector")
        c.start("collector", [str(BIN / "vantage"), "collector", "--metrics-addr", f"127.0.0.1:{c.ports['collector-metrics']}"])
        wait_for("collector /healthz", lambda: c._healthy("collector"), timeout=60)
        api_port, ca = c.start_api()
        api = f"https://localhost:{api_port}"
        key = c.api_key(api_key_name)

        # 1. Probes: their keys, their resources, the process that holds their sessions.
        first = c.next_probe_id
        c.next_probe_id += a.probes
        seed = random.randint(1, 2**62)
        keys = subprocess.run([a.probes_bin, "keys", "--seed", str(seed), "--first", str(first), "--count", str(a.probes)],
                              check=True, capture_output=True, text=True).stdout.splitlines()
        t0 = time.monotonic()

        def create_probe(line: str):
            pid_s, pub = line.split(" ", 1)
            pid = int(pid_s)
            kube.request("POST", "/apis/vantage.dev/v1alpha1/probes", {
                "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe",
                "metadata": {"name": f"soak-{pid}", "labels": {"vantage.dev/soak": c.run_id}},
                "spec": {"id": pid, "public_key": pub, "enabled": True, "country_code": ["NL", "DE", "FR", "US", "JP"][pid % 5],
                         "asn_v4": 64600 + pid % 20, "location": {"latitude": 52.37, "longitude": 4.89}, "tags": ["soak"]},
            })

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create_probe, keys))
        log(f"created {len(keys)} Probe resources in {time.monotonic() - t0:.1f} s")
        probe_ids = list(range(first, first + a.probes))
        results_file = c.tmp / "probe-results.txt"
        probes = Probes([a.probes_bin, "run", "--seed", str(seed), "--first", str(first), "--count", str(a.probes),
                         "--registration", f"127.0.0.1:{c.registration_port}", "--registration-key", c.registration_host_key,
                         "--results", str(results_file), "--start-rate", str(a.start_rate), "--churn", str(a.churn),
                         "--progress-secs", "5"],
                        dict(c.env, RUST_LOG=os.environ.get("SOAK_PROBES_LOG", "warn")), c.tmp / "soak_probes.log")
        c.procs["probes"] = probes.proc  # for the readings; stopped by probes.close()
        controllers = [f"ctl-{i}" for i in range(a.controllers)]

        def sessions() -> int:
            return int(sum(c.metric(n, "vantage_controller_connected_probes") for n in controllers))

        t0 = time.monotonic()
        wait_for(f"{a.probes} sessions on the controllers", lambda: sessions() >= a.probes,
                 timeout=max(300, 4 * a.probes / a.start_rate), interval=2)
        up_s = time.monotonic() - t0
        log(f"{sessions()} sessions up in {up_s:.1f} s")

        def connected_in_status() -> int:
            items = kube.request("GET", f"/apis/vantage.dev/v1alpha1/probes?labelSelector={label.replace('=', '%3D')}")["items"]
            return sum(1 for p in items if p.get("status", {}).get("connected"))

        wait_for("the operator to see every probe connected", lambda: connected_in_status() >= a.probes, timeout=300, interval=3)
        summary["setup"] = {"sessions_up_s": round(up_s, 1), "status_connected_s": round(time.monotonic() - t0, 1)}
        log("every Probe's status says connected")

        # 2. Periodic measurements through the API.
        per_type = max(1, math.ceil(a.probes / MAX_REQUESTED))
        requested = math.ceil(a.probes / per_type)
        definitions = {
            "ping": {"packets": 3},
            "traceroute": {"protocol": "ICMP"},
            "dns": {"query_class": "IN", "query_type": "A", "query_argument": "soak.example.", "use_probe_resolver": False},
        }
        http = requests.Session()
        for kind, opts in definitions.items():
            for j in range(per_type):
                body = {"definitions": [{"type": kind, "af": 4, "target": "127.0.0.1", "description": f"soak {kind} {j}",
                                         "interval": a.interval, **opts}],
                        "probes": [{"type": "area", "value": "WW", "requested": requested, "tags": {"include": ["soak"]}}],
                        "is_oneoff": False}

                def create(body=body):
                    r = http.post(f"{api}/api/v2/measurements/", json=body, headers={"Authorization": f"Key {key}"}, timeout=30, verify=ca)
                    if r.status_code == 429:
                        time.sleep(float(r.headers.get("Retry-After", "1")))
                        return None
                    if r.status_code == 403:  # the key's Secret is not in the API's reflector yet
                        return None
                    if r.status_code != 201:
                        raise RuntimeError(f"creating {kind}: {r.status_code} {r.text}")
                    return r.json()["measurements"]

                msm_ids += wait_for(f"measurement {kind} {j} created", create, timeout=60, interval=1)
        summary["measurements"] = msm_ids

        def probe_counts() -> list[int]:
            return [http.get(f"{api}/api/v2/measurements/{m}/", timeout=30, verify=ca).json().get("participant_count") or 0
                    for m in msm_ids]

        try:
            wait_for("every measurement on its probes", lambda: sum(probe_counts()) >= requested * len(msm_ids),
                     timeout=120, interval=3)
        except TimeoutError:
            log(f"not every measurement has all its probes: {probe_counts()} (continuing)")
        log(f"measurements {msm_ids}: probes {probe_counts()}")

        # 3. The soak.
        comps = dict(stack_pids())
        comps.update({name: p.pid for name, p in c.procs.items()})
        start = {name: proc_reading(pid) for name, pid in comps.items()}
        peak = {name: dict(r) for name, r in start.items()}
        reg_before = c.metrics("registration")
        ctl_before = {n: c.metrics(n) for n in controllers}
        probes.send("churn on")
        load = QueryLoad(api, ca, a.query_rate, msm_ids, probe_ids)
        load.start()
        t_start = time.monotonic()
        end_at = t_start + a.minutes * 60
        next_progress = t_start + a.progress_secs
        progress_lines = []
        min_sessions = a.probes
        while time.monotonic() < end_at:
            time.sleep(min(5.0, max(0.0, end_at - time.monotonic())))
            for name, pid in comps.items():
                r = proc_reading(pid)
                if r["rss_kib"] is not None and (peak[name]["rss_kib"] or 0) < r["rss_kib"]:
                    peak[name]["rss_kib"] = r["rss_kib"]
                if r["fds"] is not None and (peak[name]["fds"] or 0) < r["fds"]:
                    peak[name]["fds"] = r["fds"]
            try:
                min_sessions = min(min_sessions, sessions())
            except OSError:
                pass
            for name, p in c.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode} during the soak:\n{c.logs(name)[-3000:]}")
            if time.monotonic() >= next_progress or time.monotonic() >= end_at:
                next_progress += a.progress_secs
                line = progress(c, a, probes, load, comps, sessions, msm_ids, t_start)
                progress_lines.append(line)
                log(line)
        end = {name: proc_reading(pid) for name, pid in comps.items()}
        for name, r in end.items():
            for k in ("rss_kib", "fds"):
                if r[k] is not None and (peak[name][k] or 0) < r[k]:
                    peak[name][k] = r[k]
        load.stop_event.set()
        load.join(timeout=70)
        probes.send("churn off")
        soak_s = time.monotonic() - t_start
        reg_after = c.metrics("registration")

        # 4. Stop the measurements, drain, and account for every result.
        for m in msm_ids:
            r = http.delete(f"{api}/api/v2/measurements/{m}/", headers={"Authorization": f"Key {key}"}, timeout=30, verify=ca)
            if r.status_code not in (200, 204):
                raise RuntimeError(f"stopping {m}: {r.status_code} {r.text}")
        log("measurements stopped through the API; waiting for the probes to go quiet and drain")
        quiet_since, last = time.monotonic(), None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(2)
            cur = (probes.latest.get("produced"), probes.latest.get("queued"))
            if cur != last:
                quiet_since, last = time.monotonic(), cur
            elif cur[1] == 0 and time.monotonic() - quiet_since >= 20:
                break
        probes.send("quit")
        final = probes.wait_event("final", timeout=120)
        probes.proc.wait(timeout=60)
        log(f"probes stopped: {json.dumps(final)}")

        sent = collections.defaultdict(collections.Counter)
        kinds = collections.Counter()
        for line in results_file.read_text().splitlines():
            msm, prb, ts, kind = line.split()
            sent[int(msm)][(int(prb), int(ts))] += 1
            kinds[kind] += 1
        produced = sum(kinds.values())
        # Two runs of one measurement on one probe in the same second share (msm, prb, timestamp);
        # their result_ids differ, so both are stored. Counted apart, for the record.
        same_second = produced - sum(len(v) for v in sent.values())
        ids_sql = ",".join(map(str, sorted(sent) or [0]))

        def stored() -> int:
            return int(c.ch.query(f"SELECT count() FROM {c.db}.results FINAL WHERE msm_id IN ({ids_sql})").strip())

        try:
            wait_for("every result in ClickHouse", lambda: stored() >= produced, timeout=120, interval=2)
        except TimeoutError:
            pass
        in_ch = stored()
        foreign = sorted(set(sent) - set(msm_ids))
        lost_api, extra_api, api_rows = 0, 0, 0
        missing_examples = []
        t0 = time.monotonic()
        for m in sorted(sent):
            r = http.get(f"{api}/api/v2/measurements/{m}/results/", timeout=300, verify=ca)
            r.raise_for_status()
            got = collections.Counter((x["prb_id"], x["timestamp"]) for x in r.json())
            api_rows += sum(got.values())
            missing = sent[m] - got  # Counter difference: results sent more often than returned
            lost_api += sum(missing.values())
            extra_api += sum((got - sent[m]).values())
            missing_examples += [(m, *k) for k in sorted(missing)[:5]]
        fetch_s = time.monotonic() - t0
        lost = max(lost_api, produced - in_ch)
        summary.update({
            "soak_s": round(soak_s, 1),
            "readings": {name: {"start": start[name], "end": end[name], "peak_rss_kib": peak[name]["rss_kib"],
                                "peak_fds": peak[name]["fds"]} for name in comps},
            "results": {"produced": produced, "by_type": dict(kinds), "same_second_pairs": same_second,
                        "queued_at_quit": final.get("queued_at_quit"), "dropped_by_outbox": final.get("dropped"),
                        "in_clickhouse": in_ch, "through_api": api_rows, "lost": lost,
                        "lost_through_api": lost_api, "lost_in_clickhouse": max(0, produced - in_ch),
                        "in_api_not_sent": extra_api, "missing_examples": missing_examples[:20],
                        "msm_ids_in_log_not_created": foreign, "api_full_download_s": round(fetch_s, 1)},
            "churn": {"kicks": final.get("kicks"), "restarts": final.get("restarts"),
                      "registrations": registrations(reg_after) - registrations(reg_before),
                      "min_sessions_sampled": min_sessions},
            "refusals_before_soak": {"registration": deltas("", reg_before), **{n: deltas("", ctl_before[n]) for n in controllers}},
            "refusals_during_soak": {"registration": deltas(reg_before, reg_after),
                                     **{n: deltas(ctl_before[n], c.metrics(n)) for n in controllers}},
            "api": load.summary(),
            "progress": progress_lines,
            "loadavg_end": Path("/proc/loadavg").read_text().strip(),
        })
        report(summary)
        return 0 if lost == 0 and summary["setup"]["sessions_up_s"] is not None else 1
    except Exception as e:  # noqa: BLE001 - print component logs on any failure
        log(f"soak failed: {e}")
        for name in list(c.procs):
            if name != "probes":
                print(f"--- {name} log (tail) ---\n{c.logs(name)[-2000:]}", file=sys.stderr)
        summary["error"] = str(e)
        return 1
    finally:
        if load is not None:
            load.stop_event.set()
        if probes is not None:
            probes.close()
        c.procs.pop("probes", None)
        try:
            (c.tmp / "soak-summary.json").write_text(json.dumps(summary, indent=2))
        except OSError as e:  # a full disk must not keep the clean-up below from running
            log(f"could not write the summary: {e}")
        c.kubectl_run("delete", "probes", "-l", label, "--wait=false")
        try:
            for m in kube.request("GET", "/apis/vantage.dev/v1alpha1/namespaces/default/measurements")["items"]:
                if m["metadata"].get("annotations", {}).get("vantage.dev/api-key") == api_key_name:
                    c.kubectl_run("delete", "measurement", m["metadata"]["name"], "-n", "default", "--wait=false")
        except OSError as e:
            log(f"could not delete the soak's Measurements: {e}")
        c.kubectl_run("delete", "secret", api_key_name, "-n", "default")
        c.stop_all()
        log(f"summary: {c.tmp / 'soak-summary.json'}")


def git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def registrations(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("vantage_registration_registrations"):
            total += float(line.rsplit(" ", 1)[1])
    return total


WORDS = ("refused", "dropped", "limit", "reject", "timeout", "timed_out", "spool", "failures", "error")


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and " " in line:
            series, value = line.rsplit(" ", 1)
            try:
                out[series] = float(value)
            except ValueError:
                pass
    return out


def deltas(before: str, after: str) -> dict[str, float]:
    """Counters about refusals, drops and failures that grew from `before` to `after`."""
    b, a = parse_metrics(before), parse_metrics(after)
    return {k: v - b.get(k, 0.0) for k, v in a.items()
            if any(w in k for w in WORDS) and v - b.get(k, 0.0) != 0 and not k.endswith(("_created", "_bucket"))}


def progress(c: Cluster, a, probes: Probes, load: QueryLoad, comps: dict, sessions, msm_ids, t_start: float) -> str:
    p = probes.latest
    try:
        stored = int(c.ch.query(f"SELECT count() FROM {c.db}.results WHERE msm_id IN ({','.join(map(str, msm_ids))})").strip())
    except OSError:
        stored = -1
    q = load.summary()["routes"]["all"]
    readings = " ".join(f"{n} {mib(r['rss_kib'])}/{r['fds']}"
                        for n, r in ((n, proc_reading(pid)) for n, pid in comps.items()))
    return (f"[{(time.monotonic() - t_start) / 60:5.1f} min] sessions {sessions()}/{a.probes} "
            f"reconnects {p.get('restarts', 0)} results produced {p.get('produced', 0)} queued {p.get('queued', 0)} "
            f"stored {stored} | api {q['n']} req p50 {q['p50_ms']} p99 {q['p99_ms']} ms | "
            f"load {Path('/proc/loadavg').read_text().split()[0]} | MiB/fds: {readings}")


def report(s: dict) -> None:
    print("\n== soak summary")
    print(f"{s['probes']} probes, {s['controllers']} controllers, {s['soak_s'] / 60:.1f} min, churn {s['churn_per_min']:.0%}/min, "
          f"interval {s['interval_s']} s; set-up: sessions up in {s['setup']['sessions_up_s']} s")
    print(f"\n{'component':<14} {'RSS start MiB':>14} {'RSS end MiB':>12} {'peak MiB':>9} {'fds start':>10} {'fds end':>8} {'peak fds':>9}")
    for name, r in s["readings"].items():
        print(f"{name:<14} {mib(r['start']['rss_kib']):>14} {mib(r['end']['rss_kib']):>12} {mib(r['peak_rss_kib']):>9} "
              f"{r['start']['fds'] or '-':>10} {r['end']['fds'] or '-':>8} {r['peak_fds'] or '-':>9}")
    res = s["results"]
    print(f"\nresults: produced {res['produced']} {res['by_type']} ({res['same_second_pairs']} pairs in one second), "
          f"queued at quit {res['queued_at_quit']}, dropped by outboxes {res['dropped_by_outbox']}, "
          f"in ClickHouse {res['in_clickhouse']}, through the API {res['through_api']}, LOST {res['lost']}")
    ch = s["churn"]
    print(f"churn: {ch['kicks']} sessions ended, {ch['restarts']} probe loops restarted, "
          f"{ch['registrations']:.0f} registrations, fewest sessions sampled {ch['min_sessions_sampled']}")
    api = s["api"]
    print(f"api: {api['codes']} ({api['mib_read']} MiB read)")
    for route, r in api["routes"].items():
        print(f"  {route:<22} n {r['n']:>6}  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  max {r['max_ms']} ms")
    if api["errors"]:
        print("  errors: " + "; ".join(api["errors"][:5]))
    for phase in ("refusals_before_soak", "refusals_during_soak"):
        for n, d in s.get(phase, {}).items():
            if d:
                print(f"{phase.replace('_', ' ')}, {n}: " + "; ".join(f"{k} {v:g}" for k, v in d.items()))
    print(f"load average at the end: {s['loadavg_end']}; commit {s['commit'][:12]} with {s['uncommitted_files']} files changed "
          f"in the working tree; summary in {s['workdir']}/soak-summary.json")


if __name__ == "__main__":
    sys.exit(main())
