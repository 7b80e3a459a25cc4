"""Two `vantage api` and two `vantage engines` replicas behind one address answer the same.

In Kubernetes a Service spreads connections over a Deployment's replicas; here a real
load balancer does it: HAProxy (Debian `haproxy`) in HTTP mode, `balance roundrobin` per
request, health checks on each replica's `/healthz` (its metrics port). The replicas
read the ClickHouse cluster of `e2e/stack/clickhouse-cluster.sh` (2 shards x 2 replicas +
ZooKeeper) in cluster mode: API replica 1 and engines replica 1 through node 1 (shard
1), replica 2 of each through node 3 (shard 2).

    e2e/cluster/clickhouse-tests.sh        (brings the cluster up and runs this file)
    CH_CLUSTER_DIR=/tmp/vantage-ch-cluster .venv/bin/python -m pytest -s e2e/cluster/test_replicas.py

Without haproxy or without a running cluster every test is SKIPPED with the reason
(under CI=true a skip fails, see e2e/conftest.py).

State loaded first, all through vantage's own paths: Probe and Measurement resources in
a private Kubernetes API stand-in, RIPE Atlas results (ping, dns, traceroute) published
on a private NATS JetStream as controllers publish them and stored by `vantage collector`
in cluster mode, GeolocationEngine resources (latency, crowdsourced, rir) for the engines.

Figures (requests/s with 2 replicas vs 1, the time until HAProxy stops sending to a
killed replica) are printed and written to `<run dir>/replicas-figures.json`.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import http.client
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import free_port, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VANTAGE_BIN_DIR", ROOT / "target" / "debug"))
VENV = Path(os.environ.get("VANTAGE_VENV", ROOT / ".venv"))

TARGET = "193.0.14.129"  # k.root-servers.net: the address the engines locate
AMSTERDAM = 2759794
ROUNDS = 12  # each request of the set, through the one address


def _skip(reason: str):
    print(f"SKIPPED: {reason}", flush=True)
    pytest.skip(reason)


def ch_query(url: str, sql: str) -> str:
    req = urllib.request.Request(url.rstrip("/") + "/", data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def cluster_env() -> dict[str, str]:
    """The cluster's env file (`$CH_CLUSTER_DIR/env`), or a skip naming what is missing."""
    candidates = [os.environ.get("CH_CLUSTER_DIR"), "/tmp/vantage-ch-cluster-tests", "/tmp/vantage-ch-cluster"]
    for d in filter(None, candidates):
        f = Path(d) / "env"
        if not f.exists():
            continue
        env = {}
        for line in f.read_text().splitlines():
            line = line.strip()
            if line.startswith("export "):
                for part in shlex.split(line[len("export "):]):
                    k, _, v = part.partition("=")
                    env[k] = v
        urls = env.get("CLICKHOUSE_URLS", "").split(",")
        if len(urls) != 4 or not env.get("CLICKHOUSE_CLUSTER"):
            _skip(f"{f} does not name four nodes and a cluster; start it with e2e/stack/clickhouse-cluster.sh up")
        for u in urls:
            try:
                ch_query(u, "SELECT 1")
            except OSError as e:
                _skip(f"ClickHouse cluster node {u} does not answer ({e}); start it with e2e/stack/clickhouse-cluster.sh up")
        return env
    _skip("no ClickHouse cluster (no $CH_CLUSTER_DIR/env): run e2e/cluster/clickhouse-tests.sh, "
          "or e2e/stack/clickhouse-cluster.sh up and set CH_CLUSTER_DIR")
    raise AssertionError("unreachable")


# ---- NATS (plain text protocol; the venv has no client library) ---------------------------
class Nats:
    def __init__(self, url: str):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=10)
        self.f = self.sock.makefile("rb")
        self.f.readline()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"lang":"python","protocol":1}\r\n')
        self.sock.sendall(b"SUB _INBOX.replicas.> 1\r\n")
        self.acks = 0

    def publish(self, subject: str, payload: bytes, msg_id: str):
        head = f"NATS/1.0\r\nNats-Msg-Id: {msg_id}\r\n\r\n".encode()
        self.sock.sendall(f"HPUB {subject} _INBOX.replicas.{msg_id} {len(head)} {len(head) + len(payload)}\r\n".encode()
                          + head + payload + b"\r\n")

    def wait_acks(self, n: int, timeout: float = 30):
        """Read JetStream's acks (one reply per publish) until `n` came; fail on an error."""
        self.sock.settimeout(timeout)
        while self.acks < n:
            line = self.f.readline()
            if not line:
                raise RuntimeError("NATS closed the connection")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG"):
                size = int(line.split()[-1])
                body = self.f.read(size + 2)[:size]
                ack = json.loads(body)
                if "error" in ack:
                    raise RuntimeError(f"JetStream refused a result: {ack}")
                self.acks += 1
            elif line.startswith(b"-ERR"):
                raise RuntimeError(f"NATS: {line.decode().strip()}")

    def close(self):
        self.sock.close()


# ---- HAProxy ------------------------------------------------------------------------------
HAPROXY_CFG = """\
# Generated by e2e/cluster/test_replicas.py
global
    maxconn 2000
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    # a request sent to a replica that just died is sent again to another one
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    option httpchk GET /healthz
    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2
frontend api
    bind 127.0.0.1:{api_port}
    default_backend api
frontend engines
    bind 127.0.0.1:{engines_port}
    default_backend engines
backend api
    balance roundrobin
    http-response set-header X-Served-By %[srv_name]
{api_servers}
backend engines
    balance roundrobin
    http-response set-header X-Served-By %[srv_name]
{engines_servers}
"""


class HaProxy:
    def __init__(self, tmp: Path, api: list[tuple[str, int, int]], engines: list[tuple[str, int, int]]):
        self.sock_path = tmp / "haproxy.sock"
        self.api_port, self.engines_port = free_port(), free_port()
        servers = lambda rows: "\n".join(f"    server {n} 127.0.0.1:{p} check port {m}" for n, p, m in rows)  # noqa: E731
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(sock=self.sock_path, api_port=self.api_port, engines_port=self.engines_port,
                                          api_servers=servers(api), engines_servers=servers(engines)))
        check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert check.returncode == 0, f"haproxy -c refused {cfg}: {check.stdout}{check.stderr}"
        self.log = open(tmp / "haproxy.log", "wb")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def command(self, cmd: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock_path))
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        text = self.command("show stat").lstrip("# ")
        return {(r["pxname"], r["svname"]): r for r in csv.DictReader(io.StringIO(text))}

    def server(self, backend: str, name: str) -> dict[str, str]:
        return self.stats()[(backend, name)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# ---- the run ------------------------------------------------------------------------------
class Run:
    """Every process of the run, on private ports; `stop()` ends only these."""

    def __init__(self, ch: dict[str, str]):
        self.tmp = Path(tempfile.mkdtemp(prefix="vantage-replicas-"))
        self.ch = ch
        self.urls = ch["CLICKHOUSE_URLS"].split(",")
        self.cluster = ch["CLICKHOUSE_CLUSTER"]
        self.db = f"vrep_{int(time.time())}_{os.getpid()}"
        self.ns = f"rep-{os.getpid()}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.figures: dict[str, object] = {}
        self.haproxy: HaProxy | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "NATS_", "KUBECONFIG"))}
        self.env.update(RUST_LOG="info", CLICKHOUSE_CLUSTER=self.cluster, CLICKHOUSE_DB=self.db)

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**self.env, **env}, cwd=ROOT,
                             start_new_session=True)
        self.procs[name] = p
        return p

    def logs(self, name: str) -> str:
        f = self.tmp / f"{name}.log"
        return f.read_text(errors="replace")[-4000:] if f.exists() else ""

    def healthy(self, name: str) -> bool:
        p = self.procs[name]
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.logs(name)}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name + '-metrics']}/healthz", timeout=2) as r:
            return r.status == 200

    def kill(self, name: str, sig=signal.SIGKILL):
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            os.killpg(p.pid, sig)
            p.wait(timeout=10)

    def stop(self):
        if self.haproxy:
            self.haproxy.stop()
        for name in reversed(list(self.procs)):
            try:
                self.kill(name, signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.kill(name)
        try:
            ch_query(self.urls[0], f"DROP DATABASE IF EXISTS {self.db} ON CLUSTER {self.cluster}")
        except OSError:
            pass

    # -- Kubernetes API stand-in ----------------------------------------------------------
    def start_kube(self):
        port = free_port()
        self.start("kube", [str(VENV / "bin" / "python"), str(ROOT / "e2e" / "kube_standin.py"), "--host", "127.0.0.1",
                            "--port", str(port)])
        self.kube = f"http://127.0.0.1:{port}"
        wait_for("the Kubernetes API stand-in", lambda: urllib.request.urlopen(f"{self.kube}/version", timeout=2).status == 200)
        cfg = self.tmp / "kubeconfig"
        cfg.write_text(f"apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {self.kube}\n"
                       "users:\n- name: s\n  user: {}\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: s\n"
                       "current-context: s\n")
        self.env["KUBECONFIG"] = str(cfg)
        self.kubectl("apply", "-f", str(ROOT / "crds"))
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}})

    def kubectl(self, *args: str, input: str | None = None) -> str:
        out = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=self.env, timeout=60)
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out.stdout

    def apply(self, obj: dict):
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def patch_status(self, path: str, status: dict):
        req = urllib.request.Request(f"{self.kube}{path}/status", data=json.dumps({"status": status}).encode(),
                                     method="PATCH", headers={"Content-Type": "application/merge-patch+json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200

    # -- NATS and the collector -------------------------------------------------------------
    def start_nats(self):
        port = free_port()
        self.start("nats", [str(VENV / "bin" / "nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js",
                            "-sd", str(self.tmp / "js")])
        self.nats_url = f"nats://127.0.0.1:{port}"
        wait_for("nats-server", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True)

    def vantage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "vantage"), *args], env=self.env, capture_output=True, text=True, timeout=120)

    def migrate(self):
        out = self.vantage("migrate", "--clickhouse-url", self.urls[0], "--clickhouse-db", self.db,
                           "--clickhouse-cluster", self.cluster)
        assert out.returncode == 0, f"vantage migrate on the cluster: {out.stderr}"

    def declare_bus(self):
        """The operator declares the RESULTS stream and the KV buckets at start; run it
        until it is healthy and stop it (it would otherwise reconcile the Measurements
        this test writes by hand)."""
        self.ports["operator-metrics"] = free_port()
        self.start("operator", [str(BIN / "vantage"), "operator", "--nats-url", self.nats_url,
                                "--metrics-addr", f"127.0.0.1:{self.ports['operator-metrics']}"],
                   CLICKHOUSE_URL=self.urls[0])
        wait_for("operator /healthz (streams and buckets declared)", lambda: self.healthy("operator"), timeout=60)
        self.kill("operator", signal.SIGTERM)

    def start_collector(self):
        self.ports["collector-metrics"] = free_port()
        self.start("collector", [str(BIN / "vantage"), "collector", "--nats-url", self.nats_url,
                                 "--clickhouse-url", self.urls[0], "--max-wait-ms", "100",
                                 "--metrics-addr", f"127.0.0.1:{self.ports['collector-metrics']}"])
        wait_for("collector /healthz", lambda: self.healthy("collector"), timeout=60)

    # -- replicas -----------------------------------------------------------------------------
    def start_api(self, i: int, node_url: str):
        name = f"api{i}"
        self.ports[name], self.ports[name + "-metrics"] = free_port(), free_port()
        self.start(name, [str(BIN / "vantage"), "api", "--listen", f"127.0.0.1:{self.ports[name]}",
                          "--metrics-addr", f"127.0.0.1:{self.ports[name + '-metrics']}",
                          "--clickhouse-url", node_url, "--nats-url", self.nats_url])

    def start_engines(self, i: int, node_url: str, rir: Path):
        name = f"engines{i}"
        self.ports[name], self.ports[name + "-metrics"] = free_port(), free_port()
        self.start(name, [str(BIN / "vantage"), "engines", "--namespace", self.ns, "--no-active",
                          "--listen", f"127.0.0.1:{self.ports[name]}",
                          "--metrics-addr", f"127.0.0.1:{self.ports[name + '-metrics']}",
                          "--clickhouse-url", node_url, "--rir-file", str(rir)])

    def save_figures(self):
        (self.tmp / "replicas-figures.json").write_text(json.dumps(self.figures, indent=2))


# RIPE Atlas results as probes send them (firmware 5020 fields).
PROBES = [  # id offset, country, lat, lon, RTT to TARGET in ms
    (0, "NL", 52.37, 4.89, 1.2),
    (1, "DE", 50.11, 8.68, 7.5),
    (2, "GB", 51.51, -0.13, 8.1),
    (3, "FR", 48.86, 2.35, 10.4),
    (4, "US", 40.71, -74.01, 78.0),
]


def ping(rid: str, msm: int, prb: int, ts: int, rtt: float) -> dict:
    rtts = [round(rtt + d, 3) for d in (0.0, 0.21, 0.09)]
    return {"fw": 5020, "lts": 12, "result_id": rid, "msm_id": msm, "prb_id": prb, "timestamp": ts, "type": "ping",
            "af": 4, "from": "192.0.2.10", "src_addr": "192.0.2.10", "dst_addr": TARGET, "dst_name": TARGET,
            "proto": "ICMP", "ttl": 57, "size": 48, "step": 240, "sent": 3, "rcvd": 3, "dup": 0,
            "min": min(rtts), "avg": round(sum(rtts) / 3, 3), "max": max(rtts), "result": [{"rtt": r} for r in rtts]}


def dns(rid: str, msm: int, prb: int, ts: int, rt: float) -> dict:
    return {"fw": 5020, "lts": 9, "result_id": rid, "msm_id": msm, "prb_id": prb, "timestamp": ts, "type": "dns",
            "af": 4, "from": "192.0.2.10", "src_addr": "192.0.2.10", "dst_addr": TARGET, "proto": "UDP",
            "msm_name": "Tdig",
            "result": {"rt": rt, "size": 79, "ID": 35054, "ANCOUNT": 1, "QDCOUNT": 1, "NSCOUNT": 1, "ARCOUNT": 0,
                       "abuf": "iO6EAAABAAEAAQAACGhvc3RuYW1lBGJpbmQAABAAA8AMABAAAwAAAAAAFhVuczEuZmktaGVsLmsucmlwZS5uZXTADAACAAMAAAAAAALADA=="}}


def traceroute(rid: str, msm: int, prb: int, ts: int, rtt: float) -> dict:
    hops = [{"hop": 1, "result": [{"from": "192.168.1.1", "rtt": 0.6, "size": 28, "ttl": 64}] * 3},
            {"hop": 2, "result": [{"x": "*"}] * 3},
            {"hop": 3, "result": [{"from": TARGET, "rtt": rtt, "size": 28, "ttl": 56}] * 3}]
    return {"fw": 5020, "lts": 20, "result_id": rid, "msm_id": msm, "prb_id": prb, "timestamp": ts,
            "endtime": ts + 3, "type": "traceroute", "af": 4, "from": "192.0.2.10", "src_addr": "192.0.2.10",
            "dst_addr": TARGET, "dst_name": TARGET, "proto": "ICMP", "paris_id": 1, "size": 48, "result": hops}


def measurement(name: str, ns: str, kind: str, probes: list[int], **extra) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": kind, "af": 4, "target": TARGET, "description": f"replicas {kind}", "interval": 240,
                     "probes": [{"type": "probes", "value": ",".join(map(str, probes)), "requested": len(probes)}],
                     **extra}}


def engine(name: str, ns: str, **spec) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "GeolocationEngine",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


@pytest.fixture(scope="module")
def run():
    if not shutil.which("haproxy"):
        _skip("haproxy is not installed (Debian package haproxy; e2e/stack/setup.sh installs it)")
    ch = cluster_env()
    if not (BIN / "vantage").exists():
        _skip(f"{BIN / 'vantage'} is missing: cargo build -p vantage")
    r = Run(ch)
    try:
        load_state(r)
        start_replicas(r)
        yield r
    finally:
        r.save_figures()
        r.stop()
        print(f"\nreplicas run dir (logs, haproxy.cfg, figures): {r.tmp}", flush=True)


def load_state(r: Run):
    t0 = time.monotonic()
    r.start_kube()
    r.start_nats()
    r.migrate()
    r.declare_bus()
    r.start_collector()
    base_prb = 700_000 + os.getpid() % 100_000
    r.probes = [base_prb + off for off, *_ in PROBES]
    for (off, cc, lat, lon, _), pid in zip(PROBES, r.probes):
        r.apply({"apiVersion": "vantage.dev/v1alpha1", "kind": "Probe", "metadata": {"name": f"probe-{pid}"},
                 "spec": {"id": pid, "public_key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{pid}", "enabled": True,
                          "country_code": cc, "asn_v4": 64500 + off, "location": {"latitude": lat, "longitude": lon},
                          "tags": ["replicas"]}})
    # Five measurements: ids chosen so that they spread over both shards (intHash64(msm_id)).
    base_msm = 5_000_000 + (os.getpid() % 100_000) * 10
    kinds = ["ping", "ping", "dns", "traceroute", "ping"]
    r.msms = {}
    now = r.now = int(time.time())
    for i, kind in enumerate(kinds):
        msm = base_msm + i
        name = f"rep-{kind}-{i}"
        extra = {"packets": 3} if kind == "ping" else {"query_class": "IN", "query_type": "TXT",
                                                         "query_argument": "hostname.bind"} if kind == "dns" else {"protocol": "ICMP"}
        r.apply(measurement(name, "default", kind, r.probes, **extra))
        r.patch_status(f"/apis/vantage.dev/v1alpha1/namespaces/default/measurements/{name}",
                       {"id": msm, "state": "Ongoing", "probes": r.probes, "probe_count": len(r.probes),
                        "state_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))})
        r.msms[msm] = kind
    # Results: every probe, every measurement, 6 rounds 4 minutes apart, ending now (the
    # latency engine reads RTTs of the last hours). Round 5 of every measurement lands in
    # the same second for a probe (ties in `ORDER BY timestamp`).
    nc = Nats(r.nats_url)
    sent = 0
    make = {"ping": ping, "dns": dns, "traceroute": traceroute}
    for msm, kind in r.msms.items():
        for rnd in range(6):
            for (off, _, _, _, rtt), pid in zip(PROBES, r.probes):
                ts = now - 240 * (6 - rnd) + (0 if rnd == 5 else off)
                rid = f"rep-{msm}-{pid}-{rnd}"
                body = make[kind](rid, msm, pid, ts, rtt + rnd * 0.1)
                nc.publish(f"vantage.results.{kind}.{msm}", json.dumps(body).encode(), rid)
                sent += 1
        # one result delivered twice (a controller's retry): stored once by result_id
        nc.publish(f"vantage.results.{kind}.{msm}", json.dumps(make[kind](rid, msm, pid, ts, rtt + 0.5)).encode(), rid)
    nc.wait_acks(sent + len(r.msms))
    nc.close()
    wait_for(f"{sent} results in {r.db}.results", lambda: int(ch_query(
        r.urls[0], f"SELECT count() FROM {r.db}.results FINAL")) >= sent, timeout=60)
    per_shard = [int(ch_query(u, f"SELECT count() FROM {r.db}.results_local")) for u in (r.urls[0], r.urls[2])]
    assert all(n > 0 for n in per_shard), f"the results should be on both shards: {per_shard}"
    # The engines: latency (stored RTTs), crowdsourced, rir (the target's /24 is NL).
    rir = r.tmp / "delegated-ripencc-extended-latest"
    rir.write_text("2|ripencc|1732147199|3|19830705|20241120|+0100\nripencc|*|ipv4|*|1|summary\n"
                   "ripencc|NL|ipv4|193.0.14.0|256|19970324|assigned|x\n")
    r.rir = rir
    for obj in [engine("cbg", r.ns, engine="latency"), engine("crowd", r.ns, engine="crowdsourced"),
                engine("rir", r.ns, engine="rir")]:
        r.apply(obj)
    r.figures["load_state_s"] = round(time.monotonic() - t0, 1)
    r.figures["results_stored"] = sent
    r.figures["results_per_shard"] = per_shard


def start_replicas(r: Run):
    t0 = time.monotonic()
    node1, node3 = r.urls[0], r.urls[2]
    r.start_api(1, node1)
    r.start_api(2, node3)
    r.start_engines(1, node1, r.rir)
    r.start_engines(2, node3, r.rir)
    for name in ["api1", "api2", "engines1", "engines2"]:
        wait_for(f"{name} /healthz", lambda n=name: r.healthy(n), timeout=90)
    r.haproxy = HaProxy(r.tmp, [(f"api{i}", r.ports[f"api{i}"], r.ports[f"api{i}-metrics"]) for i in (1, 2)],
                        [(f"engines{i}", r.ports[f"engines{i}"], r.ports[f"engines{i}-metrics"]) for i in (1, 2)])
    wait_for("haproxy sees every replica UP", lambda: all(
        r.haproxy.server(b, s)["status"] == "UP"
        for b, s in [("api", "api1"), ("api", "api2"), ("engines", "engines1"), ("engines", "engines2")]), timeout=30)
    r.api = f"http://127.0.0.1:{r.haproxy.api_port}"
    r.engines = f"http://127.0.0.1:{r.haproxy.engines_port}"
    # The engines follow the Probe resources (locations of stored RTTs): wait until both
    # replicas' latency engine answers, each asked directly.
    for i in (1, 2):
        wait_for(f"engines{i}: the latency engine has RTTs for {TARGET}", lambda i=i: any(
            p["engine"] == "latency" and p["locations"] for p in json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{r.ports[f'engines{i}']}/api/v1/locate/{TARGET}/partials?engines=latency",
                timeout=30).read())["partials"]), timeout=60)
    r.figures["replicas_start_s"] = round(time.monotonic() - t0, 1)


def request_set(r: Run) -> list[tuple[str, str]]:
    """(base, path) of the public read routes, with filters."""
    msms = list(r.msms)
    ping1, dns1, trace1 = msms[0], msms[2], msms[3]
    p0, p1 = r.probes[0], r.probes[1]
    now = r.now
    api = [
        "/api/v2/measurements/",
        "/api/v2/measurements/?type=ping&sort=id",
        "/api/v2/measurements/?page_size=2&page=2",
        f"/api/v2/measurements/{ping1}/",
        f"/api/v2/measurements/{trace1}/",
        f"/api/v2/measurements/{ping1}/results/",
        f"/api/v2/measurements/{ping1}/results/?start={now - 900}&stop={now}&probe_ids={p0},{p1}",
        f"/api/v2/measurements/{dns1}/results/?format=txt",
        f"/api/v2/measurements/{ping1}/latest/",
        f"/api/v2/measurements/{trace1}/latest/?probe_ids={p1}",
        "/api/v2/probes/",
        "/api/v2/probes/?country_code=NL",
        f"/api/v2/probes/{p0}/",
        "/api/vantage/v1/probes/map",
        f"/api/vantage/v1/probes/{p0}/measurements",
        f"/api/vantage/v1/probes/{p0}/results?limit=3",
        f"/api/vantage/v1/probes/{p1}/results?limit=2",
        f"/api/vantage/v1/probes/{p0}/connections",
        f"/api/vantage/v1/measurements/{ping1}/summary",
        f"/api/vantage/v1/measurements/{dns1}/summary",
        f"/api/vantage/v1/measurements/{trace1}/summary",
        f"/api/vantage/v1/measurements/{ping1}/probes",
        f"/api/vantage/v1/measurements/{trace1}/probes",
        "/api/openapi.json",
    ]
    engines = [
        f"/api/v1/locate/{TARGET}",
        f"/api/v1/locate/{TARGET}/best",
        f"/api/v1/locate/{TARGET}/partials",
        "/api/v1/locate/193.0.14.1",
        "/api/v1/locate/9.9.9.9/partials/rir",
        "/api/v1/worlds?search=Amster&limit=3",
    ]
    return [(r.api, p) for p in api] + [(r.engines, p) for p in engines]


def fetch(url: str) -> tuple[int, bytes, str]:
    """Status, body and the replica that served it (HAProxy's X-Served-By)."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers.get("X-Served-By", "?")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("X-Served-By", "?")


def sweep(r: Run, rounds: int, requests: list[tuple[str, str]] | None = None):
    """Send the request set `rounds` times; per path: {body digest: set of replicas}, and
    the bodies by digest, and the statuses."""
    seen: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    bodies: dict[str, bytes] = {}
    statuses: dict[str, set[int]] = collections.defaultdict(set)
    for n in range(rounds):
        batch = list(requests or request_set(r))
        # Round robin per request alternates the replicas: with an even number of
        # requests to a backend, a path would meet the same replica every round. Every
        # other round starts with one more request to each backend (compared as well).
        if n % 2:
            batch = [(r.api, "/api/v2/probes/"), (r.engines, f"/api/v1/locate/{TARGET}/best")] + batch
        for base, path in batch:
            status, body, server = fetch(base + path)
            digest = hashlib.sha256(body).hexdigest()[:16]
            seen[path][digest].add(server)
            bodies[digest] = body
            statuses[path].add(status)
    return seen, bodies, statuses


def differences(seen, bodies) -> list[str]:
    out = []
    for path, by_digest in seen.items():
        if len(by_digest) > 1:
            versions = [f"  served by {sorted(servers)}: {bodies[d][:600]!r}" for d, servers in by_digest.items()]
            out.append(f"{path}: {len(by_digest)} different bodies\n" + "\n".join(versions))
    return out


def served(r: Run, backend: str, name: str) -> int:
    """Responses a server sent through HAProxy (its 1xx..5xx counters)."""
    row = r.haproxy.server(backend, name)
    return sum(int(row[f"hrsp_{c}xx"] or 0) for c in range(1, 6))


def test_every_replica_serves_a_share_and_all_answer_the_same(run):
    r = run
    before = {(b, s): served(r, b, s) for b, s in [("api", "api1"), ("api", "api2"),
                                                    ("engines", "engines1"), ("engines", "engines2")]}
    t0 = time.monotonic()
    seen, bodies, statuses = sweep(r, ROUNDS)
    elapsed = time.monotonic() - t0
    bad = {p: s for p, s in statuses.items() if s != {200}}
    assert not bad, f"every request of the set answers 200: {bad}"
    diffs = differences(seen, bodies)
    assert not diffs, "replicas answered differently:\n" + "\n".join(diffs)
    # Round robin per request: every path was answered by both replicas of its backend.
    one_sided = {p: sorted(next(iter(d.values()))) for p, d in seen.items()
                 if len(next(iter(d.values()))) < 2}
    assert not one_sided, f"each path should be served by both replicas (round robin per request): {one_sided}"
    after = {k: served(r, *k) for k in before}
    share = {f"{b}/{s}": after[(b, s)] - before[(b, s)] for b, s in before}
    n_api = sum(1 for base, _ in request_set(r) if base == r.api) * ROUNDS + ROUNDS // 2
    n_eng = sum(1 for base, _ in request_set(r) if base == r.engines) * ROUNDS + ROUNDS // 2
    assert share["api/api1"] + share["api/api2"] == n_api, share
    assert share["engines/engines1"] + share["engines/engines2"] == n_eng, share
    for k, v in share.items():
        total = n_api if k.startswith("api") else n_eng
        assert abs(v - total / 2) <= 1, f"round robin gives each replica half: {share}"
    # The replicas' own counters agree with HAProxy's.
    api_counts = {i: metric_sum(r, f"api{i}", "vantage_api_requests_total") for i in (1, 2)}
    assert all(v > 0 for v in api_counts.values()), api_counts
    r.figures["sweep"] = {"requests": n_api + n_eng, "seconds": round(elapsed, 2), "served": share,
                          "api_metrics_requests": api_counts}
    print(f"\nsweep: {n_api + n_eng} requests in {elapsed:.1f}s, served {share}, identical bodies", flush=True)


def metric_sum(r: Run, name: str, prefix: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{r.ports[name + '-metrics']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_a_crowdsourced_report_reaches_every_replica(run):
    """A report POSTed through the address lands on one replica; the other one answered
    the address before and kept that answer in its memory cache. Both must answer with
    the report counted, soon."""
    r = run
    path = f"/api/v1/locate/{TARGET}"
    # both replicas answered (and cached) the address before the report
    for _ in range(4):
        assert fetch(r.engines + path)[0] == 200
    req = urllib.request.Request(f"{r.engines}/api/v1/crowdsource/{TARGET}", method="POST",
                                 data=json.dumps({"user": "replicas-test", "id": AMSTERDAM}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 202
        took = resp.headers.get("X-Served-By")
    t0 = time.monotonic()

    def all_see_it():
        answers = {}
        for _ in range(4):
            status, body, server = fetch(r.engines + path)
            assert status == 200
            doc = json.loads(body)
            answers.setdefault(server, set()).add(body)
            if not any("crowdsourced" in loc.get("contributions", {}) for loc in doc["locations"]):
                return None
        return answers if len(answers) == 2 and all(len(v) == 1 for v in answers.values()) \
            and len({next(iter(v)) for v in answers.values()}) == 1 else None

    try:
        wait_for("both engines replicas to answer with the crowdsourced report", all_see_it, timeout=15, interval=0.2)
    except TimeoutError as e:
        now = {srv: body.decode()[:1500] for _ in range(2) for _, body, srv in [fetch(r.engines + path)]}
        raise AssertionError(f"{e}; the replicas answer now: {json.dumps(now, indent=1)}") from None
    lag = time.monotonic() - t0
    r.figures["crowd_report_visible_on_every_replica_s"] = round(lag, 2)
    print(f"\ncrowdsourced report (taken by {took}) seen by both replicas after {lag:.2f}s", flush=True)
    # and it stays so
    seen, bodies, _ = sweep(r, 6, [(r.engines, path)])
    assert not differences(seen, bodies), differences(seen, bodies)


def throughput(urls: list[str], seconds: float = 6.0, workers: int = 4) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * workers
    errors = [0] * workers

    def worker(w: int):
        conns: dict[str, http.client.HTTPConnection] = {}
        i = w
        while time.monotonic() < stop:
            u = urllib.parse.urlparse(urls[i % len(urls)])
            i += 1
            c = conns.get(u.netloc) or conns.setdefault(u.netloc, http.client.HTTPConnection(u.netloc, timeout=30))
            try:
                c.request("GET", u.path + ("?" + u.query if u.query else ""))
                resp = c.getresponse()
                resp.read()
                if resp.status == 200:
                    counts[w] += 1
                else:
                    errors[w] += 1
            except (OSError, http.client.HTTPException):
                errors[w] += 1
                c.close()
                conns.pop(u.netloc, None)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(errors) == 0, f"{sum(errors)} requests failed during the throughput run"
    return sum(counts) / (time.monotonic() - t0)


def test_requests_per_second_two_replicas_vs_one(run):
    """One run each, side by side (2 cores: the client, HAProxy, both replicas and four
    ClickHouse servers share them, so 2 replicas cannot double anything here)."""
    r = run
    msm = list(r.msms)[0]
    sets = {
        "api (measurement summary, per-probe rows, latest: ClickHouse-bound)": [
            f"{r.api}/api/vantage/v1/measurements/{msm}/summary", f"{r.api}/api/vantage/v1/measurements/{msm}/probes",
            f"{r.api}/api/v2/measurements/{msm}/latest/"],
        "api (measurement list, probes: in memory)": [f"{r.api}/api/v2/measurements/", f"{r.api}/api/v2/probes/"],
        "engines (locate, cached)": [f"{r.engines}/api/v1/locate/{TARGET}"],
    }
    out = {}
    for what, urls in sets.items():
        backend = "api" if urls[0].startswith(r.api) else "engines"
        two = throughput(urls)
        r.haproxy.command(f"disable server {backend}/{backend}2")
        try:
            one = throughput(urls)
        finally:
            r.haproxy.command(f"enable server {backend}/{backend}2")
        out[what] = {"two_replicas_rps": round(two, 1), "one_replica_rps": round(one, 1)}
        print(f"\n{what}: 2 replicas {two:.0f} req/s, 1 replica {one:.0f} req/s", flush=True)
    wait_for("both replicas UP again", lambda: all(
        r.haproxy.server(b, f"{b}2")["status"] == "UP" for b in ("api", "engines")), timeout=10)
    r.figures["throughput"] = out
    assert all(v["two_replicas_rps"] > 0 and v["one_replica_rps"] > 0 for v in out.values()), out


def test_a_killed_replica_is_taken_out_and_answers_stay_the_same(run):
    r = run
    reference, bodies, _ = sweep(r, 2)
    assert not differences(reference, bodies)
    expected = {p: next(iter(d)) for p, d in reference.items()}
    paths = request_set(r)
    r.kill("api1")
    r.kill("engines1")
    killed_at = time.monotonic()
    down_after: dict[str, float] = {}
    failures: list[str] = []
    requests_during = 0
    # Keep sending the set until HAProxy marks both killed replicas DOWN.
    while len(down_after) < 2 and time.monotonic() - killed_at < 30:
        for base, path in paths:
            status, body, server = fetch(base + path)
            requests_during += 1
            digest = hashlib.sha256(body).hexdigest()[:16]
            if status != 200 or digest != expected[path]:
                failures.append(f"{path}: {status} from {server}: {body[:200]!r}")
            if server in ("api1", "engines1"):
                failures.append(f"{path} served by the killed {server}")
        for b, s in [("api", "api1"), ("engines", "engines1")]:
            if s not in down_after and r.haproxy.server(b, s)["status"].startswith("DOWN"):
                down_after[s] = round(time.monotonic() - killed_at, 2)
    assert len(down_after) == 2, f"HAProxy should mark the killed replicas DOWN: {down_after}"
    assert not failures, f"{len(failures)} of {requests_during} requests failed or differed after the kill:\n" + \
        "\n".join(failures[:20])
    # Afterwards: everything from the survivors, identical to before.
    seen, bodies, statuses = sweep(r, 3)
    assert all(s == {200} for s in statuses.values()), statuses
    assert {p: next(iter(d)) for p, d in seen.items()} == expected
    servers = {s for d in seen.values() for ss in d.values() for s in ss}
    assert servers == {"api2", "engines2"}, servers
    retried = {s: {k: int(r.haproxy.server(b, s)[k] or 0) for k in ("econ", "wretr", "wredis")}
               for b, s in [("api", "api1"), ("engines", "engines1")]}
    r.figures["kill"] = {"marked_down_after_s": down_after, "requests_while_detecting": requests_during,
                         "failed_requests": len(failures), "haproxy_connect_errors_retries_redispatches": retried,
                         "haproxy_check": "inter 500ms fastinter 250ms fall 2, retry-on conn-failure + redispatch"}
    print(f"\nkilled api1 and engines1: HAProxy marked them DOWN after {down_after} "
          f"({requests_during} requests meanwhile, none failed; sent to the dead one and retried: {retried})",
          flush=True)
