"""The three OpenAPI documents are exact: schemathesis (pinned in e2e/requirements.txt)
runs `--checks all` against each, on the local stack, with a fixed seed and a stated
number of examples per operation, and must pass.

  - the data API (`vantage api`, HTTPS, with the operator giving ids, ClickHouse
    migrated, an API key in the kube stand-in): GET /api/openapi.json;
  - the locate API (`vantage engines`, GeolocationEngine resources rir and crowd):
    GET /openapi.json;
  - the intake (`vantage intake`, disk queue, S3 archive on moto): GET /openapi.json.

e2e/schemathesis.toml holds the few per-operation settings, each with its reason: rules
that JSON Schema cannot state (one field against another, against the clock, or an
address being public) make the server refuse some schema-valid requests with 400 or
422, as RIPE Atlas and IPmap do, so `positive_data_acceptance` accepts those codes there
and only there; a WebSocket upgrade succeeds with 101, which `GET /stream/` accepts.

One check is left out, for the data API only: use_after_free expects a resource that
answered DELETE with 2xx to be gone. The data API's one DELETE is RIPE Atlas's
`DELETE /api/v2/measurements/{id}/`, which stops a measurement: it stays readable with
status 4 (Stopped), with its results, as RIPE Atlas keeps it and as cousteau's clients
expect. schemathesis runs that check in its stateful phase with the run's settings, so it
cannot be scoped to the one operation. The intake and the locate API run every check.

Needs the local stack (e2e/stack/stack.sh up) and the binaries (cargo build).
Wall time: about 1 minute (45-60 s measured; SEED and EXAMPLES below).
"""

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN, ROOT, Cluster, wait_for  # noqa: E402

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = ROOT / "e2e" / "schemathesis.toml"
# Fixed seed, and test cases per operation and phase (examples, coverage, fuzzing;
# the stateful phase follows the intake's links and those schemathesis infers).
SEED = 16
EXAMPLES = 25


def engine(name: str, ns: str, **spec) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "GeolocationEngine",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


@pytest.fixture(scope="module")
def stack():
    c = Cluster(log=lambda *_: None)
    ns = f"oas-{c.run_id}".replace("_", "-")
    try:
        c.start_servers()
        subprocess.run([str(BIN / "vantage"), "migrate"], env=c.env, check=True, capture_output=True, timeout=60)
        # The per-key creation limit off, so that every creation body reaches validation
        # (the limit's own 429 is tested in api/src/rate_limit.rs).
        port, ca = c.start_api("--rate-limit-per-minute", "0")
        c.api = f"https://127.0.0.1:{port}"
        c.ca = ca
        # The key (so the measurements schemathesis creates) in a namespace of this run,
        # deleted at the end: other tests' probes must not be given its measurements.
        c.kubectl_apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        c.key = c.api_key("schemathesis-key", namespace=ns)
        # The API's reflector sees the key's Secret within a moment.
        wait_for("the API key to be known", lambda: _key_known(c), timeout=30)

        rir = c.tmp / "delegated-ripencc-extended-latest"
        rir.write_text("2|ripencc|1732147199|3|19830705|20241120|+0100\n"
                       "ripencc|*|ipv4|*|1|summary\n"
                       "ripencc|NL|ipv4|193.0.14.0|256|19970324|assigned|x\n")
        c.kubectl_apply(engine("rir", ns, engine="rir"))
        c.kubectl_apply(engine("crowd", ns, engine="crowdsourced", weight=0.5))
        c.start_engines(ns, "--no-active", "--rir-file", str(rir))
        wait_for("the engines rir and crowdsourced in force", lambda: {"rir", "crowdsourced"} <= set(
            _get_json(f"http://127.0.0.1:{c.ports['engines']}/openapi.json")["paths"]["/api/v1/locate/{ip}/partials/{engine}"]
            ["get"]["parameters"][1]["schema"].get("enum", [])), timeout=30)

        c.start_intake()
        yield c
    finally:
        c.stop_all()
        c.kubectl("delete", "measurements", "--all", "-n", ns, "--wait=false", check=False)
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        print(f"component logs: {c.tmp}")


def _tls(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def _get_json(url: str, ca: str | None = None) -> dict:
    with urllib.request.urlopen(url, timeout=10, context=_tls(ca) if ca else None) as r:
        return json.loads(r.read())


def _key_known(c: Cluster) -> bool:
    """A stop of a measurement that does not exist is 404 once the key is known (403 before)."""
    req = urllib.request.Request(c.api + "/api/v2/measurements/1/", method="DELETE", headers={"Authorization": f"Key {c.key}"})
    try:
        urllib.request.urlopen(req, timeout=10, context=_tls(c.ca))
    except urllib.error.HTTPError as e:
        return e.code == 404
    return False


def schemathesis(c: Cluster, url: str, *extra: str) -> None:
    """Run schemathesis on the document at `url`; fail with its report when it fails."""
    report = c.tmp / f"schemathesis-{url.rsplit(':', 1)[-1].split('/')[0]}.txt"
    cmd = [str(SCHEMATHESIS), "--no-color", "--config-file", str(CONFIG), "run", url,
           "--checks", "all", "--seed", str(SEED), "--max-examples", str(EXAMPLES),
           "--workers", "1", "--request-timeout", "10", "--output-truncate", "false",
           "--generation-database", "none", "--report", "junit",
           "--report-junit-path", str(report.with_suffix(".xml")), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=c.tmp)
    report.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        pytest.fail(f"schemathesis found disagreements ({' '.join(cmd)}):\n{out.stdout[-20000:]}\n{out.stderr[-3000:]}")


def test_data_api_document_is_exact(stack):
    doc = _get_json(stack.api + "/api/openapi.json", stack.ca)
    assert doc["paths"]["/api/v2/measurements/"]["post"]["responses"]["429"]["headers"]["Retry-After"]
    schemathesis(stack, stack.api + "/api/openapi.json", "--tls-verify", stack.ca,
                 "-H", f"Authorization: Key {stack.key}", "--exclude-checks", "use_after_free")


def test_locate_api_document_is_exact(stack):
    schemathesis(stack, f"http://127.0.0.1:{stack.ports['engines']}/openapi.json")


def test_intake_document_is_exact(stack):
    schemathesis(stack, f"http://127.0.0.1:{stack.ports['intake']}/openapi.json")
