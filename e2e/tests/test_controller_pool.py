"""End to end: a ControllerPool applied with kubectl renders its workloads into the API.

The operator runs against the Kubernetes API stand-in and the stack's NATS. The stand-in
stores objects but runs no workload controllers: no pods start, so the test checks what
the operator writes (StatefulSet, Services, registration Deployment, status), scaling by
spec, the drain of removed controllers through NATS KV, and pruning. What a real cluster
adds is listed in docs/ARCHITECTURE.md ("ControllerPool").
"""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN, Cluster, free_port, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(log=lambda *_: None)
    try:
        c.kubectl("apply", "-f", str(Path(__file__).resolve().parents[2] / "crds"))
        c.ports["operator-metrics"] = free_port()
        c.start("operator", [str(BIN / "vantage"), "operator", "--metrics-addr", f"127.0.0.1:{c.ports['operator-metrics']}"])
        wait_for("operator /healthz", lambda: c._healthy("operator"), timeout=60)
        yield c
    finally:
        c.stop_all()
        print(f"component logs: {c.tmp}")


def pool(name: str, **spec) -> dict:
    return {"apiVersion": "vantage.dev/v1alpha1", "kind": "ControllerPool", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def get(c: Cluster, kind: str, name: str) -> dict | None:
    out = c.kubectl("get", kind, name, "-n", "default", "-o", "json", check=False)
    return json.loads(out) if out.strip() else None


def condition(obj: dict, type_: str) -> dict:
    return next((x for x in obj.get("status", {}).get("conditions", []) if x["type"] == type_), {})


def per_pod_services(c: Cluster, name: str) -> list[str]:
    out = json.loads(c.kubectl("get", "services", "-n", "default", "-l", f"vantage.dev/controller-pool={name},vantage.dev/per-pod-service=true", "-o", "json"))
    return sorted(s["metadata"]["name"] for s in out["items"])


def test_pool_renders_workloads_status_and_scales(cluster):
    name = f"cp{cluster.run_id.replace('_', '')}"[:40]
    spec = {"probes_per_controller": 100, "min_replicas": 2, "max_replicas": 4, "service_type": "NodePort", "ssh_port": 2022,
            "image": "ghcr.io/vantage-dev/vantage:e2e", "registration": {"replicas": 1, "service_type": "ClusterIP"}}
    cluster.kubectl_apply(pool(name, **spec))
    uid = get(cluster, "controllerpool", name)["metadata"]["uid"]

    sts = wait_for("the StatefulSet", lambda: get(cluster, "statefulset", f"{name}-controller"), timeout=60)
    assert sts["spec"]["replicas"] == 2
    assert sts["metadata"]["ownerReferences"][0]["uid"] == uid
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/vantage-dev/vantage:e2e"
    assert "--advertise=$(POD_NAME).$(POD_NAMESPACE).svc.cluster.local:2022" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    headless = wait_for("the headless Service", lambda: get(cluster, "service", f"{name}-controller-headless"))
    assert headless["spec"]["clusterIP"] == "None"
    wait_for("2 per-pod Services", lambda: per_pod_services(cluster, name) == [f"{name}-controller-0", f"{name}-controller-1"])
    svc = get(cluster, "service", f"{name}-controller-1")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == f"{name}-controller-1"
    dep = wait_for("the registration Deployment", lambda: get(cluster, "deployment", f"{name}-registration"))
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "registration"
    reg = wait_for("the registration Service", lambda: get(cluster, "service", f"{name}-registration"))
    assert reg["spec"]["type"] == "ClusterIP"

    def status():
        st = get(cluster, "controllerpool", name).get("status", {})
        return st if st.get("replicas") == 2 and condition({"status": st}, "Ready").get("status") == "True" else None

    st = wait_for("pool status", status, timeout=30)
    assert (st["replicas"], st["capacity"], st["connectedProbes"]) == (2, 200, 0)
    printed = cluster.kubectl("get", "cpool", name, "-n", "default")
    assert "NodePort" not in printed and name in printed

    # min raised: up at once, a third Service.
    cluster.kubectl("patch", "controllerpool", name, "-n", "default", "--type=merge", "-p", json.dumps({"spec": {"min_replicas": 3}}))
    wait_for("3 replicas", lambda: get(cluster, "statefulset", f"{name}-controller")["spec"]["replicas"] == 3, timeout=60)
    wait_for("3 per-pod Services", lambda: len(per_pod_services(cluster, name)) == 3, timeout=30)

    # max lowered to 1: controllers 1 and 2 are drained (no probes: at once), then removed
    # with their Services.
    cluster.kubectl("patch", "controllerpool", name, "-n", "default", "--type=merge", "-p", json.dumps({"spec": {"min_replicas": 1, "max_replicas": 1}}))
    wait_for("1 replica", lambda: get(cluster, "statefulset", f"{name}-controller")["spec"]["replicas"] == 1, timeout=60)
    wait_for("Services pruned", lambda: per_pod_services(cluster, name) == [f"{name}-controller-0"], timeout=30)
    st = wait_for("status follows", lambda: (s := get(cluster, "controllerpool", name)["status"])["replicas"] == 1 and s, timeout=30)
    assert st["capacity"] == 100
    assert condition(get(cluster, "controllerpool", name), "Draining").get("status") == "False"
    assert "draining controllers before scale-down" in cluster.logs("operator")


def test_invalid_pool_is_reported_and_renders_nothing(cluster):
    name = f"bad{cluster.run_id.replace('_', '')}"[:40]
    cluster.kubectl_apply(pool(name, min_replicas=5, max_replicas=2))

    def invalid():
        c = condition(get(cluster, "controllerpool", name), "Ready")
        return c if c.get("reason") == "InvalidSpec" else None

    c = wait_for("InvalidSpec", invalid, timeout=30)
    assert c["status"] == "False"
    assert c["message"].startswith("spec.min_replicas:")
    time.sleep(1)
    assert get(cluster, "statefulset", f"{name}-controller") is None
