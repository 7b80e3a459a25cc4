"""Run vantage's components as local processes against the local stack.

Used by `make demo` (e2e/demo.py) and by the end-to-end tests. It needs the stack
(`e2e/stack/stack.sh up`) and the binaries (`cargo build`). Each run gets its own
ClickHouse database and probe ids, so runs do not see each other's data.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("VANTAGE_BIN_DIR", ROOT / "target" / "debug"))
STACK_DIR = Path(os.environ.get("VANTAGE_STACK_DIR", "/tmp/vantage-stack"))


def stack_env() -> dict[str, str]:
    """The stack's environment (NATS_URL, CLICKHOUSE_URL, KUBECONFIG, ...)."""
    env = dict(os.environ)
    env_file = STACK_DIR / "env"
    if not env_file.exists():
        raise RuntimeError(f"{env_file} is missing: start the stack with e2e/stack/stack.sh up")
    for line in env_file.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        for part in shlex.split(line):
            if "=" in part:
                k, v = part.split("=", 1)
                env[k] = v
    return env


def nats_publish(subject: str, payload: bytes = b"", headers: dict[str, str] | None = None) -> None:
    """Publish one message on the stack's NATS with the plain text protocol (no client
    library in the venv), and wait for the server to have processed it (PING/PONG)."""
    url = urllib.parse.urlparse(stack_env()["NATS_URL"])
    with socket.create_connection((url.hostname, url.port or 4222), timeout=5) as sock:
        f = sock.makefile("rb")
        f.readline()  # INFO
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"lang":"python","protocol":1}\r\n')
        if headers:
            head = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
            sock.sendall(f"HPUB {subject} {len(head)} {len(head) + len(payload)}\r\n".encode() + head + payload + b"\r\n")
        else:
            sock.sendall(f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n")
        sock.sendall(b"PING\r\n")
        while (line := f.readline()) and not line.startswith(b"PONG"):
            if line.startswith(b"-ERR"):
                raise RuntimeError(f"NATS refused {subject}: {line.decode().strip()}")


# Options for the real OpenSSH client acting as a probe.
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=2"]


_PORTS_GIVEN: set[int] = set()


# Below Linux's ephemeral range (32768-60999) and clear of e2e/stack's fixed ports, as
# vantage_testkit::PORT_RANGES: a component a test restarts on its port must not find it
# taken as the source port of some client's outgoing connection.
PORT_RANGES = ((10_000, 13_999), (30_000, 32_767))


def free_port() -> int:
    """A free port on loopback from PORT_RANGES, never one this process handed out
    before: a port is only bound when its component starts (a controller's metrics and
    SSH ports once collided when the kernel offered a just-released port again)."""
    ports = [p for lo, hi in PORT_RANGES for p in range(lo, hi + 1)]
    start = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError("no free port left in vantage_e2e.PORT_RANGES")


def wait_for(what: str, check, timeout: float = 30.0, interval: float = 0.25):
    """Poll `check()` until it returns a truthy value; raise with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polled checks may fail until ready
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


class ClickHouse:
    def __init__(self, url: str, db: str):
        self.url = url.rstrip("/")
        self.db = db

    def query(self, sql: str) -> str:
        req = urllib.request.Request(self.url + "/?" + urllib.parse.urlencode({"query": sql}), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def rows(self, sql: str) -> list[dict]:
        out = self.query(sql + " FORMAT JSONEachRow")
        return [json.loads(line) for line in out.splitlines() if line.strip()]


class Cluster:
    """The vantage components of one run, plus helpers to drive them."""

    def __init__(self, workdir: Path | None = None, log=print):
        self.env = stack_env()
        self.tmp = Path(workdir or tempfile.mkdtemp(prefix="vantage-run-"))
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.run_id = f"{int(time.time())}_{os.getpid()}"
        self.db = f"vantage_{self.run_id}"
        self.env["CLICKHOUSE_DB"] = self.db
        self.env.setdefault("RUST_LOG", "info")
        self.ch = ClickHouse(self.env["CLICKHOUSE_URL"], self.db)
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        # Probe ids unique to this run, so that KV state of earlier runs never matches.
        self.next_probe_id = random.randint(100_000, 900_000)

    # -- processes -------------------------------------------------------------------
    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        logf = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.log(f"starting {name}: {' '.join(args)}")
        p = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True)
        self.procs[name] = p
        return p

    def logs(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str):
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            # Cleanup goes on, but say it: a component that ignores SIGTERM is a bug
            # (Kubernetes would wait its whole grace period).
            self.log(f"{name} still running 5 s after SIGTERM; killed")
            p.kill()
            p.wait(timeout=5)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def metrics(self, name: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name + '-metrics']}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str, prefix: str) -> float:
        """Sum of the samples of component `name` whose line starts with `prefix`."""
        total = 0.0
        for line in self.metrics(name).splitlines():
            if line.startswith(prefix):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def keygen(self, path: Path) -> str:
        out = subprocess.run([str(BIN / "vantage-probe"), "keygen", "--out", str(path)], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def start_servers(self, controllers: int = 1, operator_args: list[str] | tuple[str, ...] = (),
                      ssh_args: list[str] | tuple[str, ...] = ()):
        """Operator (with `operator_args` added), collector, registration server and
        `controllers` controllers; `ssh_args` are added to both SSH servers' flags."""
        vantage = str(BIN / "vantage")
        self.ssh_args = list(ssh_args)
        self.kubectl("apply", "-f", str(ROOT / "crds"))
        for name in ["operator", "collector", "registration"] + [f"ctl-{i}" for i in range(controllers)]:
            self.ports[name + "-metrics"] = free_port()
        self.start_operator(*operator_args)
        self.start("collector", [vantage, "collector", "--max-wait-ms", "200", "--metrics-addr", f"127.0.0.1:{self.ports['collector-metrics']}"])
        # The registration server's host key goes into the probes' trust anchor.
        self.registration_port = free_port()
        self.registration_host_key = self.keygen(self.tmp / "registration_host_key")
        self.firmware_dir = self.tmp / "firmware"
        self.firmware_dir.mkdir(exist_ok=True)
        self.start("registration", [vantage, "registration", "--listen", f"127.0.0.1:{self.registration_port}", "--host-key", str(self.tmp / "registration_host_key"),
                                "--metrics-addr", f"127.0.0.1:{self.ports['registration-metrics']}",
                                "--firmware-dir", str(self.firmware_dir), *self.ssh_args])
        for i in range(controllers):
            self.ports[f"ctl-{i}"] = free_port()
            self.start_controller(i)
        for name in ["operator", "collector", "registration"] + [f"ctl-{i}" for i in range(controllers)]:
            wait_for(f"{name} /healthz", lambda n=name: self._healthy(n), timeout=60)
        self.anchor = self.tmp / "anchor.yaml"
        self.anchor.write_text(f"registration:\n  - addr: 127.0.0.1:{self.registration_port}\n    host_key: \"{self.registration_host_key}\"\n")

    def start_operator(self, *extra: str) -> subprocess.Popen:
        """Start the operator on its metrics port, with `extra` flags."""
        return self.start("operator", [str(BIN / "vantage"), "operator", "--metrics-addr", f"127.0.0.1:{self.ports['operator-metrics']}", *extra])

    def restart_operator(self, *extra: str):
        """Stop the operator and start it again with `extra` flags (the earlier log is kept)."""
        self.stop("operator")
        old = self.tmp / "operator.log"
        if old.exists():
            old.rename(self.tmp / f"operator.{int(time.time() * 1000)}.log")
        self.start_operator(*extra)
        wait_for("operator /healthz", lambda: self._healthy("operator"), timeout=60)

    def start_controller(self, i: int) -> subprocess.Popen:
        """Start controller `i` (same name, port, host key and spool on every start)."""
        port = self.ports[f"ctl-{i}"]
        return self.start(f"ctl-{i}", [str(BIN / "vantage"), "controller", "--name", f"ctl-{i}-{self.run_id}",
                                       "--listen", f"127.0.0.1:{port}", "--advertise", f"127.0.0.1:{port}",
                                       "--host-key", str(self.tmp / f"ctl-{i}_host_key"), "--spool-dir", str(self.tmp / f"ctl-{i}-spool"),
                                       "--metrics-addr", f"127.0.0.1:{self.ports[f'ctl-{i}-metrics']}",
                                       *getattr(self, "ssh_args", [])])

    def restart_controller(self, i: int):
        self.stop(f"ctl-{i}")
        # Keep the earlier log: append a marker and let the new process write a new file.
        old = self.tmp / f"ctl-{i}.log"
        if old.exists():
            old.rename(self.tmp / f"ctl-{i}.{int(time.time() * 1000)}.log")
        self.start_controller(i)
        wait_for(f"ctl-{i} /healthz", lambda: self._healthy(f"ctl-{i}"), timeout=60)

    def start_engines(self, namespace: str, *extra: str):
        """`vantage engines` following GeolocationEngine resources in `namespace`, on
        ports of its own (`self.ports["engines"]`); returns once /healthz answers."""
        self.ports["engines"] = free_port()
        self.ports["engines-metrics"] = free_port()
        self.start("engines", [str(BIN / "vantage"), "engines", "--namespace", namespace,
                               "--listen", f"127.0.0.1:{self.ports['engines']}",
                               "--metrics-addr", f"127.0.0.1:{self.ports['engines-metrics']}", *extra])
        wait_for("engines /healthz", lambda: self._healthy("engines"), timeout=60)

    def start_intake(self, *extra: str, fingerprints: Path | None = None):
        """`vantage intake` (OONI-style submissions) on ports of its own
        (`self.ports["intake"]`), with a disk queue, the shipped fingerprints (or
        `fingerprints`) and a new S3 bucket on the stack's moto; returns once /healthz
        answers."""
        bucket = f"intake-{self.run_id}".replace("_", "-")
        boto3.client("s3", endpoint_url=self.env["S3_ENDPOINT"], region_name=self.env["AWS_REGION"],
                     aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
        self.ports["intake"], self.ports["intake-metrics"] = free_port(), free_port()
        self.start("intake", [str(BIN / "vantage"), "intake", "--listen", f"127.0.0.1:{self.ports['intake']}",
                              "--metrics-addr", f"127.0.0.1:{self.ports['intake-metrics']}",
                              "--queue-dir", str(self.tmp / "intake-queue"),
                              "--fingerprints", str(fingerprints or ROOT / "collector" / "data" / "fingerprints"),
                              "--s3-bucket", bucket, *extra])
        wait_for("intake /healthz", lambda: self._healthy("intake"), timeout=60)

    def _healthy(self, name: str) -> bool:
        p = self.procs[name]
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.logs(name)[-3000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name + '-metrics']}/healthz", timeout=2) as r:
            return r.status == 200

    # -- probes ---------------------------------------------------------------------
    def add_probe(self, country: str = "NL", asn: int = 64500, enabled: bool = True, register: bool = True) -> tuple[int, Path, str]:
        """Make a probe key and (optionally) its Probe resource. Returns (id, key path, public key)."""
        pid = self.next_probe_id
        self.next_probe_id += 1
        key = self.tmp / f"probe-{pid}.key"
        pub = self.keygen(key)
        if register:
            self.kubectl_apply({
                "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe",
                "metadata": {"name": f"probe-{pid}"},
                "spec": {"id": pid, "public_key": pub, "enabled": enabled, "country_code": country, "asn_v4": asn,
                         "location": {"latitude": 52.37, "longitude": 4.89}, "tags": ["e2e"]},
            })
        return pid, key, pub

    def register_with_openssh(self, pid: int, key: Path) -> dict:
        """Run `ssh ... INIT` as RIPE Atlas probes do; return the registration reply."""
        wait_for("the registration server to see the Probe", lambda: self.get("probe", f"probe-{pid}"), timeout=10)
        reply = wait_for("registration over OpenSSH", lambda: subprocess.run(
            ["ssh", *SSH_OPTS, "-i", str(key), "-p", str(self.registration_port), "probe@127.0.0.1", "INIT"],
            capture_output=True, text=True, timeout=20).stdout.strip(), timeout=30)
        return json.loads(reply)

    def start_probe(self, pid: int, key: Path) -> subprocess.Popen:
        return self.start(f"probe-{pid}", [str(BIN / "vantage-probe"), "run", "--key", str(key), "--anchor", str(self.anchor)])

    # -- kubectl --------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        out = self.kubectl_run(*args, input=input)
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def kubectl_run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """kubectl with its exit code, stdout and stderr (errors from the API server are on stderr)."""
        return subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=self.env, timeout=60)

    def kubectl_apply(self, obj: dict) -> str:
        return self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        return json.loads(self.kubectl(*args))

    def start_api(self, *extra: str, port: int | None = None) -> tuple[int, str]:
        """`vantage api` over HTTPS on `port` (default: a free one) with a self-signed
        certificate for localhost made here, `extra` arguments appended (e.g.
        `--public-url`); waits until it is healthy and returns (port, path of the
        certificate, which is its own CA)."""
        cert, key = self.tmp / "api-cert.pem", self.tmp / "api-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
        port = port or free_port()
        self.ports["api-metrics"] = free_port()
        self.start("api", [str(BIN / "vantage"), "api", "--listen", f"127.0.0.1:{port}",
                           "--metrics-addr", f"127.0.0.1:{self.ports['api-metrics']}",
                           "--tls-cert", str(cert), "--tls-key", str(key), *extra])
        wait_for("api /healthz", lambda: self._healthy("api"), timeout=60)
        return port, str(cert)

    def api_key(self, name: str, namespace: str = "default") -> str:
        """A new API key: a Secret `name` labelled `vantage.dev/api-key=true`; returns the key."""
        key = uuid.uuid4().hex
        self.kubectl_apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": {"vantage.dev/api-key": "true"}},
            "data": {"key": base64.b64encode(key.encode()).decode()},
        })
        return key

    def add_probe_at(self, country: str, asn: int, latitude: float, longitude: float,
                     tags: list[str] | tuple[str, ...] = ("e2e",)) -> tuple[int, Path, str]:
        """Like `add_probe`, with the Probe resource at (`latitude`, `longitude`) and with
        user `tags`. Returns (id, key path, public key)."""
        pid, key, pub = self.add_probe(register=False)
        self.kubectl_apply({
            "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe",
            "metadata": {"name": f"probe-{pid}"},
            "spec": {"id": pid, "public_key": pub, "enabled": True, "country_code": country, "asn_v4": asn,
                     "location": {"latitude": latitude, "longitude": longitude}, "tags": list(tags)},
        })
        return pid, key, pub


@contextlib.contextmanager
def running_cluster(controllers: int = 1, operator_args: list[str] | tuple[str, ...] = (),
                    ssh_args: list[str] | tuple[str, ...] = ()):
    """A Cluster with operator (with `operator_args`), collector, registration and
    `controllers` controllers (with `ssh_args`) started; stopped on exit (the component
    logs stay in its temp dir)."""
    c = Cluster(log=lambda *_: None)
    try:
        c.start_servers(controllers=controllers, operator_args=operator_args, ssh_args=ssh_args)
        yield c
    finally:
        c.stop_all()
        print(f"component logs: {c.tmp}")


def connected_probe(cluster: Cluster, country: str = "NL", asn: int = 64501) -> int:
    """Add a probe, start its agent and wait until its Probe status says connected."""
    pid, key, _ = cluster.add_probe(country=country, asn=asn)
    cluster.start_probe(pid, key)
    wait_for(f"probe {pid} connected", lambda: cluster.get("probe", f"probe-{pid}").get("status", {}).get("connected"), timeout=60)
    return pid
