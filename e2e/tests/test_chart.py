"""
The Helm chart charts/vantage, rendered offline with helm-python-sdk (Helm v4's engine).

Run: .venv/bin/python -m pytest e2e/tests/test_chart.py
The kubectl test starts its own Kubernetes API stand-in (e2e/kube_standin.py).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHARTS = ROOT / 'charts'
CHART = CHARTS / 'vantage'
STANDIN = ROOT / 'e2e' / 'kube_standin.py'
KUBECTL = shutil.which('kubectl')

helm = pytest.importorskip('helm_python')
sys.path.insert(0, str(CHARTS))
import render  # noqa: E402  (charts/render.py)

POD_KINDS = {'Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'}
COMPONENT_PORTS = {'operator': 9090, 'registration': 9091, 'controller': 9092, 'collector': 9093, 'intake': 9094,
                   'engines': 9095, 'api': 9096}
# components that talk to the Kubernetes API and so get a token
KUBE_CLIENTS = ('operator', 'registration', 'api', 'engines')
BUILTIN_ENGINES = ['single-radius', 'crowdsourced', 'reverse-dns', 'latency', 'anycast']
# what the operator's leader election does with its Lease (get, watch; create once; renew)
LEASE_VERBS = {'get', 'list', 'watch', 'create', 'update', 'patch'}


def rendered(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render.documents(render.render(values))


@pytest.fixture(scope='module')
def default_docs() -> list[dict[str, Any]]:
    return rendered()


@pytest.fixture(scope='module')
def static_docs() -> list[dict[str, Any]]:
    """The chart's defaults with the static controllers (no ControllerPool)."""
    return rendered({'controllers': {'static': {'enabled': True}}})


@pytest.fixture(scope='module')
def all_cases() -> dict[str, list[dict[str, Any]]]:
    return {case: rendered(values) for case, values in render.cases().items()}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d['kind'] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d['kind'] == kind and d['metadata']['name'] == name]
    assert len(found) == 1, f'{kind}/{name}: found {len(found)}'
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc['spec']
    if doc['kind'] == 'CronJob':
        spec = spec['jobTemplate']['spec']
    return spec['template']['spec']


# --- rendering and snapshots -----------------------------------------------------------

def test_snapshots_and_crd_copies_are_current() -> None:
    result = subprocess.run([sys.executable, str(CHARTS / 'render.py'), '--check'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # the chart's CRDs are byte-for-byte the generated ones
    generated = sorted(p.name for p in (ROOT / 'crds').glob('*.yaml'))
    assert generated == sorted(p.name for p in (CHART / 'crds').glob('*.yaml'))
    for name in generated:
        assert (CHART / 'crds' / name).read_bytes() == (ROOT / 'crds' / name).read_bytes(), name
    for name in ('fingerprints_dns.csv', 'fingerprints_http.csv'):
        assert (CHART / 'files' / name).read_bytes() == (ROOT / 'collector' / 'data' / 'fingerprints' / name).read_bytes()
    assert (CHART / 'files' / 'nats-authorization.conf').read_bytes() == (ROOT / 'nats' / 'authorization.conf').read_bytes()


def test_check_names_a_stale_snapshot_and_the_refresh_command(tmp_path: pathlib.Path) -> None:
    # A copy of charts/ with one snapshot edited: --check must fail and say what to do.
    copy = tmp_path / 'repo'
    shutil.copytree(CHARTS, copy / 'charts', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copytree(ROOT / 'crds', copy / 'crds')
    shutil.copytree(ROOT / 'collector' / 'data', copy / 'collector' / 'data')
    shutil.copytree(ROOT / 'nats', copy / 'nats')
    snap = copy / 'charts' / 'rendered' / 'default.yaml'
    snap.write_text(snap.read_text().replace('replicas: 2', 'replicas: 7', 1))
    result = subprocess.run([sys.executable, str(copy / 'charts' / 'render.py'), '--check'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert 'charts/rendered/default.yaml is stale' in result.stderr
    assert 'charts/render.py' in result.stderr and 'make charts' in result.stderr
    # a CRD copy that drifted from crds/ is named too
    (copy / 'charts' / 'vantage' / 'crds' / 'probes.vantage.dev.yaml').write_text('# old\n')
    result = subprocess.run([sys.executable, str(copy / 'charts' / 'render.py'), '--check'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert 'charts/vantage/crds/probes.vantage.dev.yaml differs from crds/probes.vantage.dev.yaml' in result.stderr
    (copy / 'collector' / 'data' / 'fingerprints' / 'fingerprints_dns.csv').write_text('name\n')
    result = subprocess.run([sys.executable, str(copy / 'charts' / 'render.py'), '--check'],
                            capture_output=True, text=True, timeout=300)
    assert 'charts/vantage/files/fingerprints_dns.csv differs from collector/data/fingerprints/fingerprints_dns.csv' in result.stderr
    # and the NATS authorization block, when `make crds` regenerated nats/authorization.conf
    (copy / 'nats' / 'authorization.conf').write_text('authorization { users = [] }\n')
    result = subprocess.run([sys.executable, str(copy / 'charts' / 'render.py'), '--check'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert 'charts/vantage/files/nats-authorization.conf differs from nats/authorization.conf' in result.stderr


def test_helm_lint_is_clean() -> None:
    for case, values in render.cases().items():
        report = helm.lint(CHART, values, strict=True, namespace=render.NAMESPACE)
        problems = [m for m in report['messages'] if m['severity'] >= 2] + report['errors']
        assert not problems, (case, problems)


def test_default_render_has_every_component(default_docs: list[dict[str, Any]]) -> None:
    kinds = {(d['kind'], d['metadata']['name']) for d in default_docs}
    for want in [('Deployment', 'vantage-operator'),
                 ('Deployment', 'vantage-collector'), ('ControllerPool', 'vantage'),
                 ('ServiceAccount', 'vantage-operator'), ('ClusterRole', 'vantage-operator'),
                 ('ServiceAccount', 'vantage-controller'), ('ServiceAccount', 'vantage-registration'),
                 ('Role', 'vantage-operator'), ('ClusterRole', 'vantage-registration'),
                 ('NetworkPolicy', 'vantage-default-deny'),
                 ('CustomResourceDefinition', 'measurements.vantage.dev')]:
        assert want in kinds, want
    for want in [('Deployment', 'vantage-api'), ('Service', 'vantage-api'), ('Service', 'vantage-api-metrics'),
                 ('ClusterRole', 'vantage-api'), ('ServiceAccount', 'vantage-api'),
                 ('Deployment', 'vantage-engines'), ('Service', 'vantage-engines'), ('Role', 'vantage-engines'),
                 ('ClusterRole', 'vantage-engines'), ('ServiceAccount', 'vantage-engines')]:
        assert want in kinds, want
    # no GeolocationEngine resources means no engines: the chart ships every built-in one
    geo = by_kind(default_docs, 'GeolocationEngine')
    assert [g['metadata']['name'] for g in geo] == BUILTIN_ENGINES
    for g in geo:
        assert g['metadata']['namespace'] == 'vantage'
        assert g['spec'] == {'engine': g['metadata']['name'], 'weight': 1, 'enabled': True}
    assert not by_kind(default_docs, 'ServiceMonitor') and not by_kind(default_docs, 'Secret')
    # the operator renders controllers and registration from the pool: the chart renders
    # none of the objects it would otherwise take over (same names)
    assert not by_kind(default_docs, 'StatefulSet')
    assert not {('Deployment', 'vantage-registration'), ('Service', 'vantage-registration'),
                ('Service', 'vantage-registration-metrics'), ('Service', 'vantage-controller-headless'),
                ('Service', 'vantage-controller-0')} & kinds
    pool = one(default_docs, 'ControllerPool', 'vantage')
    spec = pool['spec']
    assert {k: spec[k] for k in ['probes_per_controller', 'min_replicas', 'max_replicas', 'headroom', 'regions', 'ssh_port', 'service_type']} == {
        'probes_per_controller': 5000, 'min_replicas': 1, 'max_replicas': 10, 'headroom': 1.25,
        'regions': [], 'ssh_port': 443, 'service_type': 'LoadBalancer'}
    # What the operator renders the pods from: the chart's image, NATS, keys and accounts.
    assert spec['image'].startswith('ghcr.io/vantage-dev/vantage:')
    assert spec['nats'] == {'url': 'nats://nats.nats.svc:4222'}
    assert spec['host_keys_secret'] == 'vantage-controller-host-keys'
    assert spec['service_account'] == 'vantage-controller'
    assert spec['registration']['service_account'] == 'vantage-registration'
    assert {k: spec['registration'][k] for k in ['enabled', 'replicas', 'port', 'service_type', 'host_key_secret']} == {
        'enabled': True, 'replicas': 2, 'port': 443, 'service_type': 'LoadBalancer',
        'host_key_secret': 'vantage-registration-host-key'}
    assert spec['labels']['app.kubernetes.io/instance'] == 'vantage'


def test_static_controllers_replace_the_pool(static_docs: list[dict[str, Any]]) -> None:
    kinds = {(d['kind'], d['metadata']['name']) for d in static_docs}
    for want in [('StatefulSet', 'vantage-controller'), ('Service', 'vantage-controller-headless'),
                 ('Service', 'vantage-controller-0'), ('Deployment', 'vantage-registration'),
                 ('Service', 'vantage-registration'), ('Service', 'vantage-registration-metrics'),
                 ('ServiceAccount', 'vantage-controller')]:
        assert want in kinds, want
    assert not by_kind(static_docs, 'ControllerPool'), 'the operator would take over the static StatefulSet'
    registration = one(static_docs, 'Service', 'vantage-registration')
    assert registration['spec']['ports'] == [{'name': 'ssh', 'port': 443, 'targetPort': 'ssh', 'protocol': 'TCP'}]
    # the pool off without static controllers: no controllers, no registration at all
    none = rendered({'controllerPool': {'enabled': False}})
    assert not by_kind(none, 'ControllerPool') and not by_kind(none, 'StatefulSet')
    assert ('ServiceAccount', 'vantage-controller') not in {(d['kind'], d['metadata']['name']) for d in none}
    assert ('Deployment', 'vantage-registration') in {(d['kind'], d['metadata']['name']) for d in none}


def test_commands_ports_and_health_probes(static_docs: list[dict[str, Any]]) -> None:
    default_docs = static_docs  # the static controllers and the chart's registration too
    for doc in by_kind(default_docs, 'Deployment') + by_kind(default_docs, 'StatefulSet'):
        component = doc['metadata']['labels']['app.kubernetes.io/component']
        (container,) = pod_spec(doc)['containers']
        assert container['args'][0] == component, doc['metadata']['name']
        port = COMPONENT_PORTS[component]
        assert f'--metrics-addr=0.0.0.0:{port}' in container['args']
        assert {'name': 'metrics', 'containerPort': port, 'protocol': 'TCP'} in container['ports']
        for probe in ('livenessProbe', 'readinessProbe'):
            assert container[probe]['httpGet'] == {'path': '/healthz', 'port': 'metrics'}, (doc['metadata']['name'], probe)
        env = {e['name']: e for e in container['env']}
        assert env['NATS_URL']['value'] == 'nats://nats.nats.svc:4222'
        if component in ('operator', 'collector'):
            assert env['CLICKHOUSE_URL']['value'] == 'http://clickhouse.clickhouse.svc:8123'
            assert env['CLICKHOUSE_DB']['value'] == 'vantage'
    controller = pod_spec(one(default_docs, 'StatefulSet', 'vantage-controller'))['containers'][0]
    assert '--host-key=/etc/vantage/host-keys/$(POD_NAME)' in controller['args']
    assert '--advertise=$(POD_NAME).$(POD_NAMESPACE).svc.cluster.local:443' in controller['args']
    assert '--spool-dir=/var/lib/vantage/spool' in controller['args']
    assert {'name': 'spool', 'mountPath': '/var/lib/vantage/spool'} in controller['volumeMounts']
    registration = pod_spec(one(default_docs, 'Deployment', 'vantage-registration'))
    assert registration['volumes'][0]['secret']['secretName'] == 'vantage-registration-host-key'
    assert not any(d['metadata']['name'].endswith('-intake') for d in default_docs), 'the intake needs S3: off by default'


def test_every_component_runs_its_subcommand(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    for case, docs in all_cases.items():
        for doc in docs:
            if doc['kind'] not in POD_KINDS:
                continue
            component = doc['metadata']['labels']['app.kubernetes.io/component']
            (container,) = pod_spec(doc)['containers']
            assert container['args'][0] == component, (case, doc['metadata']['name'])
            if doc['kind'] == 'Job':
                assert component == 'migrate' and container['args'] == ['migrate']
                assert doc['metadata']['annotations']['helm.sh/hook'] == 'pre-install,pre-upgrade'
                continue
            assert {'name': 'metrics', 'containerPort': COMPONENT_PORTS[component], 'protocol': 'TCP'} \
                in container['ports'] or case == 'full', (case, doc['metadata']['name'])
            for probe in ('livenessProbe', 'readinessProbe'):
                assert container[probe]['httpGet'] == {'path': '/healthz', 'port': 'metrics'}, (case, doc['metadata']['name'])
            # every writable path is a volume: the root filesystem is read-only
            for mount in container.get('volumeMounts', []):
                assert mount['mountPath'].startswith(('/etc/vantage/', '/var/lib/vantage/')), mount


def test_every_pod_is_restricted(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    checked = 0
    for case, docs in all_cases.items():
        for doc in docs:
            if doc['kind'] not in POD_KINDS:
                continue
            where = f"{case}: {doc['kind']}/{doc['metadata']['name']}"
            spec = pod_spec(doc)
            psc = spec['securityContext']
            assert psc['runAsNonRoot'] is True and psc['seccompProfile'] == {'type': 'RuntimeDefault'}, where
            assert not spec.get('hostNetwork') and not spec.get('hostPID') and not spec.get('hostIPC'), where
            for c in spec['containers'] + spec.get('initContainers', []):
                sc = c['securityContext']
                assert sc['runAsNonRoot'] is True, where
                assert sc['allowPrivilegeEscalation'] is False, where
                assert sc['readOnlyRootFilesystem'] is True, where
                assert sc['capabilities'] == {'drop': ['ALL']}, where
                assert sc['seccompProfile'] == {'type': 'RuntimeDefault'}, where
                assert not sc.get('privileged'), where
                for port in c.get('ports', []):
                    assert port['containerPort'] >= 1024, f'{where}: port {port} needs NET_BIND_SERVICE'
            for v in spec.get('volumes', []):
                assert 'hostPath' not in v, where
            # only the components that talk to the Kubernetes API get a token
            component = doc['metadata']['labels']['app.kubernetes.io/component']
            assert spec['automountServiceAccountToken'] is (component in KUBE_CLIENTS), where
            checked += 1
    assert checked >= 10


def test_rbac_is_least_privilege(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    for case, docs in all_cases.items():
        for doc in by_kind(docs, 'ClusterRole') + by_kind(docs, 'Role'):
            for rule in doc['rules']:
                where = f"{case}: {doc['kind']}/{doc['metadata']['name']} {rule}"
                for field in ('verbs', 'resources', 'apiGroups'):
                    assert '*' not in rule.get(field, []), where
                assert 'nonResourceURLs' not in rule, where
                assert not {'escalate', 'bind', 'impersonate'} & set(rule['verbs']), where
                assert not {'roles', 'clusterroles', 'rolebindings', 'clusterrolebindings'} & set(rule['resources']), where
                if 'secrets' in rule['resources']:
                    # only the data API, to find API keys by label (RBAC cannot filter by label): never get
                    assert doc['metadata']['name'].endswith('-api') and rule['resources'] == ['secrets'], where
                    assert rule['verbs'] == ['list', 'watch'] and doc['kind'] == 'ClusterRole', where

    docs = all_cases['default']

    def grants(role: dict[str, Any]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for rule in role['rules']:
            for group in rule['apiGroups']:
                for res in rule['resources']:
                    out.setdefault(f'{group}/{res}', set()).update(rule['verbs'])
        return out

    op = grants(one(docs, 'ClusterRole', 'vantage-operator'))
    assert op == {
        'vantage.dev/measurements': {'get', 'list', 'watch', 'patch'},
        'vantage.dev/probes': {'get', 'list', 'watch'},
        'vantage.dev/tenantpolicies': {'get', 'list', 'watch'},
        'vantage.dev/measurements/status': {'get', 'patch', 'update'},
        'vantage.dev/probes/status': {'get', 'patch', 'update'},
        'vantage.dev/tenantpolicies/status': {'get', 'patch', 'update'},
        'vantage.dev/measurements/finalizers': {'update'},
        '/events': {'create', 'patch'},
        'events.k8s.io/events': {'create', 'patch'},
    }
    ns_role = one(docs, 'Role', 'vantage-operator')
    assert ns_role['metadata']['namespace'] == 'vantage'
    # the operator renders the default pool's workloads, in its own namespace only: exactly
    # the verbs of operator/src/pool/apply.rs (get the StatefulSet, server-side apply = create +
    # patch, watch what the pool owns, delete per-pod Services and swept registration objects), no update, no pods
    assert grants(ns_role) == {
        'vantage.dev/controllerpools': {'get', 'list', 'watch'},
        'vantage.dev/geolocationengines': {'get', 'list', 'watch'},
        'vantage.dev/controllerpools/status': {'get', 'patch', 'update'},
        'vantage.dev/geolocationengines/status': {'get', 'patch', 'update'},
        'apps/statefulsets': {'get', 'list', 'watch', 'create', 'patch'},
        'apps/deployments': {'list', 'watch', 'create', 'patch', 'delete'},
        '/services': {'list', 'watch', 'create', 'patch', 'delete'},
        # leader election (on by default): the Lease in its own namespace
        'coordination.k8s.io/leases': LEASE_VERBS,
    }
    # with static controllers the operator manages no workloads
    assert grants(one(all_cases['full'], 'Role', 'measure-operator')) == {
        'vantage.dev/controllerpools': {'get', 'list', 'watch'},
        'vantage.dev/geolocationengines': {'get', 'list', 'watch'},
        'vantage.dev/controllerpools/status': {'get', 'patch', 'update'},
        'vantage.dev/geolocationengines/status': {'get', 'patch', 'update'},
        'coordination.k8s.io/leases': LEASE_VERBS,
    }
    assert grants(one(docs, 'ClusterRole', 'vantage-registration')) == {'vantage.dev/probes': {'get', 'list', 'watch'}, 'vantage.dev/probefirmwares': {'get', 'list', 'watch'}}
    # the data API: Measurements in any tenant namespace (patch: stop, participation requests),
    # Probes, API key Secrets (list/watch only)
    assert grants(one(docs, 'ClusterRole', 'vantage-api')) == {
        'vantage.dev/measurements': {'create', 'get', 'list', 'watch', 'patch'},
        'vantage.dev/probes': {'get', 'list', 'watch'},
        '/secrets': {'list', 'watch'},
    }
    # the engines: Probes cluster-wide; GeolocationEngines and one-off Measurements only in
    # the release namespace
    assert grants(one(docs, 'ClusterRole', 'vantage-engines')) == {'vantage.dev/probes': {'get', 'list', 'watch'}}
    engines_role = one(docs, 'Role', 'vantage-engines')
    assert engines_role['metadata']['namespace'] == 'vantage'
    assert grants(engines_role) == {
        'vantage.dev/geolocationengines': {'get', 'list', 'watch'},
        'vantage.dev/geolocationengines/status': {'patch'},
        'vantage.dev/measurements': {'create', 'get', 'delete'},
    }
    # without active single-radius the engines create no Measurements
    assert 'vantage.dev/measurements' not in grants(one(all_cases['api-tls'], 'Role', 'vantage-engines'))
    # bindings point at the component's own ServiceAccount in the release namespace
    for binding in by_kind(docs, 'ClusterRoleBinding') + by_kind(docs, 'RoleBinding'):
        (subject,) = binding['subjects']
        assert subject == {'kind': 'ServiceAccount', 'name': binding['roleRef']['name'], 'namespace': 'vantage'}
    # tenants: Measurements aggregate into edit/view; Probes and ControllerPools do not
    edit = one(docs, 'ClusterRole', 'vantage-measurement-edit')
    assert edit['metadata']['labels']['rbac.authorization.k8s.io/aggregate-to-edit'] == 'true'
    assert grants(edit)['vantage.dev/probes'] == {'get', 'list', 'watch'}
    assert 'rbac.authorization.k8s.io/aggregate-to-edit' not in one(docs, 'ClusterRole', 'vantage-probe-admin')['metadata']['labels']
    # tenants read their TenantPolicy; only the unaggregated tenancy-admin writes it
    assert grants(edit)['vantage.dev/tenantpolicies'] == {'get', 'list', 'watch'}
    assert grants(one(docs, 'ClusterRole', 'vantage-measurement-view'))['vantage.dev/tenantpolicies'] == {'get', 'list', 'watch'}
    tenancy = one(docs, 'ClusterRole', 'vantage-tenancy-admin')
    assert 'create' in grants(tenancy)['vantage.dev/tenantpolicies']
    assert not any(k.startswith('rbac.authorization.k8s.io/aggregate') for k in tenancy['metadata']['labels'])
    # the operator's workload rights are namespaced, never cluster-wide
    for case, cdocs in all_cases.items():
        for role in by_kind(cdocs, 'ClusterRole'):
            assert not {'apps/statefulsets', 'apps/deployments', '/services', '/pods',
                        'coordination.k8s.io/leases'} & set(grants(role)), (case, role['metadata']['name'])


def test_network_policies(default_docs: list[dict[str, Any]]) -> None:
    pols = {d['metadata']['name']: d['spec'] for d in by_kind(default_docs, 'NetworkPolicy')}
    deny = pols['vantage-default-deny']
    assert deny['policyTypes'] == ['Ingress', 'Egress'] and 'ingress' not in deny and 'egress' not in deny
    assert deny['podSelector']['matchLabels'] == {'app.kubernetes.io/name': 'vantage', 'app.kubernetes.io/instance': 'vantage'}
    ssh = pols['vantage-probes-ssh']
    assert ssh['podSelector']['matchExpressions'][0]['values'] == ['registration', 'controller']
    assert ssh['ingress'][0]['ports'] == [{'protocol': 'TCP', 'port': 'ssh'}]
    assert pols['vantage-metrics']['ingress'][0]['ports'] == [{'protocol': 'TCP', 'port': 'metrics'}]
    assert pols['vantage-egress-nats']['egress'][0]['ports'] == [{'protocol': 'TCP', 'port': 4222}]
    assert pols['vantage-egress-clickhouse']['egress'][0]['ports'] == [{'protocol': 'TCP', 'port': 8123}]
    assert pols['vantage-egress-clickhouse']['podSelector']['matchExpressions'][0]['values'] == ['operator', 'collector', 'intake', 'engines', 'api', 'migrate']
    assert pols['vantage-egress-nats']['podSelector']['matchExpressions'][0]['values'] == ['operator', 'registration', 'controller', 'collector', 'engines', 'api']
    assert pols['vantage-egress-kube-api']['podSelector']['matchExpressions'][0]['values'] == ['operator', 'registration', 'api', 'engines']
    # users -> the data API port and the geolocation API port, from anywhere by default
    api = pols['vantage-api-http']
    assert api['podSelector']['matchLabels']['app.kubernetes.io/component'] == 'api'
    assert api['ingress'] == [{'ports': [{'protocol': 'TCP', 'port': 8443}],
                               'from': [{'ipBlock': {'cidr': '0.0.0.0/0'}}, {'ipBlock': {'cidr': '::/0'}}]}]
    assert pols['vantage-engines-http']['ingress'][0]['ports'] == [{'protocol': 'TCP', 'port': 'http'}]
    assert 'vantage-engines-egress' not in pols, 'no external engines by default'
    # the data API (the console's Locate page) -> the engines, both ends opened
    api_sel = {'app.kubernetes.io/name': 'vantage', 'app.kubernetes.io/instance': 'vantage', 'app.kubernetes.io/component': 'api'}
    eng_sel = {**api_sel, 'app.kubernetes.io/component': 'engines'}
    assert pols['vantage-api-to-engines']['egress'] == [{'ports': [{'protocol': 'TCP', 'port': 8081}], 'to': [{'podSelector': {'matchLabels': eng_sel}}]}]
    assert pols['vantage-engines-from-api']['ingress'] == [{'ports': [{'protocol': 'TCP', 'port': 'http'}], 'from': [{'podSelector': {'matchLabels': api_sel}}]}]
    # ports follow the URLs
    docs = rendered({'nats': {'url': 'nats://n:4333'}, 'clickhouse': {'url': 'https://ch.example.net', 'database': 'x'}})
    pols = {d['metadata']['name']: d['spec'] for d in by_kind(docs, 'NetworkPolicy')}
    assert pols['vantage-egress-nats']['egress'][0]['ports'] == [{'protocol': 'TCP', 'port': 4333}]
    assert pols['vantage-egress-clickhouse']['egress'][0]['ports'] == [{'protocol': 'TCP', 'port': 443}]


def test_dashboards_carry_the_sidecar_label(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    shipped = sorted(p.name for p in (CHART / 'dashboards').glob('*.json'))
    assert shipped, 'no dashboards'
    for case in ('default', 'full'):
        cms = [d for d in by_kind(all_cases[case], 'ConfigMap') if '-dashboard-' in d['metadata']['name']]
        assert sorted(k for cm in cms for k in cm['data']) == shipped, case
        for cm in cms:
            assert cm['metadata']['labels']['grafana_dashboard'] == '1', cm['metadata']['name']
            for text in cm['data'].values():
                dash = json.loads(text)
                assert dash['uid'] and dash['panels']
    full = {cm['metadata']['name']: cm for cm in by_kind(all_cases['full'], 'ConfigMap')}
    results = full['measure-dashboard-vantage-results']
    assert results['metadata']['namespace'] == 'monitoring'
    assert results['metadata']['annotations'] == {'grafana_folder': 'Measurements'}
    db_var = next(v for v in json.loads(results['data']['vantage-results.json'])['templating']['list'] if v['name'] == 'database')
    assert db_var['query'] == db_var['current']['value'] == 'vantage_prod', 'the database follows clickhouse.database'


def test_non_default_values(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    docs = all_cases['full']
    registration = one(docs, 'Service', 'measure-registration')
    assert registration['spec']['type'] == 'NodePort' and registration['spec']['ports'][0]['port'] == 2222
    assert registration['spec']['externalTrafficPolicy'] == 'Local'
    dep = pod_spec(one(docs, 'Deployment', 'measure-registration'))
    assert dep['nodeSelector'] == {'example.net/edge': 'true'} and dep['imagePullSecrets'] == [{'name': 'regcred'}]
    container = dep['containers'][0]
    assert container['image'] == 'registry.example.net/vantage/vantage:0.1.0-rc1'
    assert '--listen=0.0.0.0:2200' in container['args']
    env = {e['name']: e for e in container['env']}
    assert env['NATS_URL']['valueFrom']['secretKeyRef'] == {'name': 'vantage-nats', 'key': 'url'}
    assert dep['volumes'][0]['secret']['items'] == [{'key': 'ed25519', 'path': 'ssh_host_ed25519_key'}]
    sts = one(docs, 'StatefulSet', 'measure-controller')
    args = pod_spec(sts)['containers'][0]['args']
    assert '--advertise=$(POD_NAME).controllers.example.net:8443' in args and '--regions=NL,DE,FR' in args
    assert [one(docs, 'Service', f'measure-controller-{i}')['spec']['selector']['statefulset.kubernetes.io/pod-name']
            for i in range(3)] == [f'measure-controller-{i}' for i in range(3)]
    assert one(docs, 'Deployment', 'measure-engines')
    secrets = {s['metadata']['name']: s for s in by_kind(docs, 'Secret')}
    assert set(secrets['measure-controller-host-keys']['stringData']) == {f'measure-controller-{i}' for i in range(3)}
    # the controllers' spool on a volume claim; the intake with its queue, S3 and fingerprints
    assert sts['spec']['volumeClaimTemplates'][0]['spec']['resources']['requests']['storage'] == '5120Mi'
    assert '--spool-max-mib=4096' in args
    intake = one(docs, 'StatefulSet', 'measure-intake')
    claim = intake['spec']['volumeClaimTemplates'][0]['spec']
    assert claim['storageClassName'] == 'fast-ssd' and claim['resources']['requests']['storage'] == '50Gi'
    ic = pod_spec(intake)['containers'][0]
    ienv = {e['name']: e.get('value') for e in ic['env']}
    assert ienv['S3_BUCKET'] == 'measurements-archive' and ienv['S3_ENDPOINT'] == 'https://minio.example.net:9000'
    assert ic['envFrom'] == [{'secretRef': {'name': 'vantage-s3'}}]
    fp = one(docs, 'ConfigMap', 'measure-fingerprints')['data']
    for name in ('fingerprints_dns.csv', 'fingerprints_http.csv'):
        assert fp[name] == (ROOT / 'collector' / 'data' / 'fingerprints' / name).read_text().rstrip('\n')
    assert '--fingerprints-url=/etc/vantage/fingerprints' in ic['args']
    assert '--test-lists-url=https://github.com/citizenlab/test-lists/archive/refs/heads/master.tar.gz' in ic['args']
    pols = {d['metadata']['name']: d['spec'] for d in by_kind(docs, 'NetworkPolicy')}
    assert pols['measure-egress-s3']['egress'][0]['ports'] == [{'protocol': 'TCP', 'port': 9000}]
    assert pols['measure-intake-http']['ingress'][0]['ports'] == [{'protocol': 'TCP', 'port': 'http'}]
    assert pols['measure-egress-intake-sources']['egress'][0]['ports'] == [{'protocol': 'TCP', 'port': 443}]
    monitors = {m['metadata']['name']: m for m in by_kind(docs, 'ServiceMonitor')}
    assert set(monitors) == {f'measure-{c}' for c in ('operator', 'registration', 'controller', 'collector', 'intake', 'engines', 'api')}
    # every ServiceMonitor selects exactly one metrics Service with a `metrics` port
    services = by_kind(docs, 'Service')
    for mon in monitors.values():
        sel = mon['spec']['selector']['matchLabels']
        hits = [s for s in services if sel.items() <= s['metadata']['labels'].items()]
        assert len(hits) == 1, (mon['metadata']['name'], [s['metadata']['name'] for s in hits])
        assert 'metrics' in {p['name'] for p in hits[0]['spec']['ports']}
        assert mon['metadata']['labels']['release'] == 'prometheus'
    for d in docs:
        assert d['metadata'].get('labels', {}).get('team') == 'netops' or d['kind'] == 'CustomResourceDefinition', d['metadata']['name']


def test_nats_per_role_users(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    # off by default: the URL as given, no password, no authorization ConfigMap
    default = all_cases['default']
    assert not any(d['metadata']['name'].endswith('-nats-authorization') for d in by_kind(default, 'ConfigMap'))
    assert 'password_secret' not in one(default, 'ControllerPool', 'vantage')['spec']['nats']
    docs = all_cases['operator-managed']
    cm = one(docs, 'ConfigMap', 'vantage-nats-authorization')
    assert cm['metadata']['namespace'] == 'nats'
    block = cm['data']['authorization.conf']
    assert block == (ROOT / 'nats' / 'authorization.conf').read_text()
    roles = ['operator', 'registration', 'controller', 'collector', 'engines', 'api']
    for role in roles:
        assert f'user: "vantage-{role}"' in block and f'password: $VANTAGE_NATS_{role.upper()}' in block
    # every NATS client of the chart connects as its own user, its password from the Secret
    seen = set()
    for doc in by_kind(docs, 'Deployment') + by_kind(docs, 'StatefulSet'):
        component = doc['metadata']['labels']['app.kubernetes.io/component']
        env = pod_spec(doc)['containers'][0].get('env', [])
        names = [e['name'] for e in env]
        if 'NATS_URL' not in names:
            continue
        seen.add(component)
        pw = names.index('NATS_PASSWORD')
        assert pw < names.index('NATS_URL'), 'Kubernetes substitutes only variables defined before'
        assert env[pw]['valueFrom']['secretKeyRef'] == {'name': 'vantage-nats-passwords', 'key': component}
        assert env[names.index('NATS_URL')]['value'] == f'nats://vantage-{component}:$(NATS_PASSWORD)@nats.nats.svc:4222'
    assert seen == {'operator', 'collector', 'engines', 'api'}, seen
    # the pool's pods (controller, registration) too: the operator renders them from password_secret
    nats = one(docs, 'ControllerPool', 'vantage')['spec']['nats']
    assert nats == {'url': 'nats://nats.nats.svc:4222', 'password_secret': 'vantage-nats-passwords'}
    # and the static controllers and registration of the chart
    static = rendered({'controllers': {'static': {'enabled': True}},
                       'nats': {'auth': {'enabled': True, 'existingSecret': 'pw'}}})
    for kind, name, role in [('StatefulSet', 'vantage-controller', 'controller'), ('Deployment', 'vantage-registration', 'registration')]:
        env = {e['name']: e for e in pod_spec(one(static, kind, name))['containers'][0]['env']}
        assert env['NATS_PASSWORD']['valueFrom']['secretKeyRef'] == {'name': 'pw', 'key': role}
        assert env['NATS_URL']['value'] == f'nats://vantage-{role}:$(NATS_PASSWORD)@nats.nats.svc:4222'
    # never a generated password: without the Secret, rendering refuses and says what to do
    with pytest.raises(Exception, match='nats.auth.existingSecret'):
        rendered({'nats': {'auth': {'enabled': True}}})
    with pytest.raises(Exception, match='unset nats.existingSecret'):
        rendered({'nats': {'existingSecret': 'url', 'auth': {'enabled': True, 'existingSecret': 'pw'}}})


def test_notes_tell_the_next_kubectl_apply() -> None:
    text = render.notes(None)
    assert 'kind: Probe' in text and 'kind: Measurement' in text and 'kubectl apply -f -' in text
    assert 'create secret generic vantage-registration-host-key' in text



# The HTTP limits every HTTP server gets by default (docs/SECURITY.md), and the API's
# per-key creation limits.
HTTP_ARGS = ['--http-header-timeout-secs=10', '--http-idle-timeout-secs=60', '--http-body-timeout-secs=60',
             '--http-max-connections=10000', '--http-max-header-bytes=32768']
RATE_ARGS = ['--rate-limit-per-minute=60', '--rate-limit-burst=60']


def test_api_and_engines_defaults(default_docs: list[dict[str, Any]]) -> None:
    api = pod_spec(one(default_docs, 'Deployment', 'vantage-api'))
    (c,) = api['containers']
    assert c['args'] == ['api', '--listen=0.0.0.0:8443', '--metrics-addr=0.0.0.0:9096', '--create-timeout-secs=20',
                         *HTTP_ARGS, *RATE_ARGS, '--engines-url=http://vantage-engines.vantage.svc:80']
    assert {'name': 'http', 'containerPort': 8443, 'protocol': 'TCP'} in c['ports']
    assert 'volumes' not in api and 'volumeMounts' not in c, 'no TLS Secret without api.tls.secretName'
    env = {e['name']: e.get('value') for e in c['env']}
    assert env['NATS_URL'] == 'nats://nats.nats.svc:4222' and env['CLICKHOUSE_DB'] == 'vantage'
    assert 'VANTAGE_API_PUBLIC_URL' not in env
    assert api['serviceAccountName'] == 'vantage-api'
    svc = one(default_docs, 'Service', 'vantage-api')
    assert svc['spec']['type'] == 'ClusterIP'
    assert svc['spec']['ports'] == [{'name': 'http', 'port': 80, 'targetPort': 'http', 'protocol': 'TCP', 'appProtocol': 'http'}]
    assert 'vantage.dev/metrics' not in svc['metadata']['labels'], 'the ServiceMonitor must select only the metrics Service'
    engines = pod_spec(one(default_docs, 'Deployment', 'vantage-engines'))
    (e,) = engines['containers']
    assert e['args'] == ['engines', '--listen=0.0.0.0:8081', '--metrics-addr=0.0.0.0:9095', '--namespace=vantage',
                         '--cache-max-age-s=3600', *HTTP_ARGS]
    assert {'name': 'http', 'containerPort': 8081, 'protocol': 'TCP'} in e['ports']
    eenv = {x['name']: x.get('value') for x in e['env']}
    assert eenv['NATS_URL'] == 'nats://nats.nats.svc:4222' and eenv['CLICKHOUSE_URL'] == 'http://clickhouse.clickhouse.svc:8123'
    assert one(default_docs, 'Service', 'vantage-engines')['spec']['ports'] == [
        {'name': 'http', 'port': 80, 'targetPort': 'http', 'protocol': 'TCP'}]
    # both off: no trace of them
    docs = rendered({'api': {'enabled': False}, 'engines': {'enabled': False}})
    assert not [d for d in docs if d['metadata'].get('labels', {}).get('app.kubernetes.io/component') in ('api', 'engines')]
    assert not by_kind(docs, 'GeolocationEngine')


def test_api_tls_and_engine_values(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    docs = all_cases['api-tls']
    api = pod_spec(one(docs, 'Deployment', 'vantage-api'))
    (c,) = api['containers']
    assert c['args'] == ['api', '--listen=0.0.0.0:9443', '--metrics-addr=0.0.0.0:9096', '--create-timeout-secs=45',
                         *HTTP_ARGS, *RATE_ARGS,
                         '--tls-cert=/etc/vantage/tls/tls.crt', '--tls-key=/etc/vantage/tls/tls.key', '--nats-url=',
                         '--engines-url=http://vantage-engines.vantage.svc:8081']
    assert {'name': 'https', 'containerPort': 9443, 'protocol': 'TCP'} in c['ports']
    assert c['volumeMounts'] == [{'name': 'tls', 'mountPath': '/etc/vantage/tls', 'readOnly': True}]
    assert api['volumes'] == [{'name': 'tls', 'secret': {'secretName': 'atlas-example-net-tls', 'items': [
        {'key': 'tls.crt', 'path': 'tls.crt'}, {'key': 'tls.key', 'path': 'tls.key'}]}}]
    env = {e['name']: e.get('value') for e in c['env']}
    assert env['VANTAGE_API_PUBLIC_URL'] == 'https://atlas.example.net'
    assert one(docs, 'Deployment', 'vantage-api')['spec']['replicas'] == 3
    svc = one(docs, 'Service', 'vantage-api')['spec']
    assert svc['type'] == 'LoadBalancer' and svc['loadBalancerSourceRanges'] == ['198.51.100.0/24']
    assert svc['ports'] == [{'name': 'https', 'port': 443, 'targetPort': 'https', 'protocol': 'TCP', 'appProtocol': 'https'}]
    # an explicit Service port wins over the scheme's
    port = one(rendered({'api': {'tls': {'secretName': 's'}, 'service': {'port': 8443}}}), 'Service', 'vantage-api')
    assert port['spec']['ports'][0]['port'] == 8443
    pols = {d['metadata']['name']: d['spec'] for d in by_kind(docs, 'NetworkPolicy')}
    assert pols['vantage-api-http']['ingress'] == [{'ports': [{'protocol': 'TCP', 'port': 9443}],
                                                    'from': [{'ipBlock': {'cidr': '198.51.100.0/24'}}]}]
    assert pols['vantage-engines-http']['ingress'][0]['from'] == [
        {'namespaceSelector': {'matchLabels': {'kubernetes.io/metadata.name': 'web'}}}]
    assert pols['vantage-engines-egress']['egress'] == [
        {'to': [{'ipBlock': {'cidr': '203.0.113.20/32'}}], 'ports': [{'protocol': 'TCP', 'port': 8080}]}]
    assert pols['vantage-engines-egress']['podSelector']['matchLabels']['app.kubernetes.io/component'] == 'engines'
    e = pod_spec(one(docs, 'Deployment', 'vantage-engines'))['containers'][0]
    assert e['args'] == ['engines', '--listen=0.0.0.0:9081', '--metrics-addr=0.0.0.0:9095', '--namespace=vantage',
                         '--cache-max-age-s=600', *HTTP_ARGS, '--no-active']
    assert one(docs, 'Service', 'vantage-engines')['spec']['ports'][0]['port'] == 8081
    # weights and switches from values; engines not named keep their defaults
    geo = {g['metadata']['name']: g['spec'] for g in by_kind(docs, 'GeolocationEngine')}
    assert list(geo) == BUILTIN_ENGINES
    assert geo['single-radius'] == {'engine': 'single-radius', 'weight': 2, 'enabled': True}
    assert geo['reverse-dns'] == {'engine': 'reverse-dns', 'weight': 0.5, 'enabled': False}
    assert geo['latency'] == {'engine': 'latency', 'weight': 1, 'enabled': True}
    monitors = {m['metadata']['name'] for m in by_kind(docs, 'ServiceMonitor')}
    assert {'vantage-api', 'vantage-engines'} <= monitors


def test_engine_data_files_come_from_a_volume(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    docs = all_cases['full']
    pod = pod_spec(one(docs, 'Deployment', 'measure-engines'))
    (e,) = pod['containers']
    data = '/var/lib/vantage/geo'
    assert e['args'][-6:] == [f'--rir-file={data}/delegated-ripencc-extended-latest',
                              f'--rir-file={data}/delegated-arin-extended-latest',
                              f'--asn-table={data}/ipasn.dat',
                              f'--geofeed-refs={data}/ripe.db.inetnum.gz',
                              f'--geofeed-dir={data}/geofeeds',
                              f'--geofeed-file={data}/own-geofeed.csv']
    assert e['volumeMounts'] == [{'name': 'geo-data', 'mountPath': data, 'readOnly': True}]
    assert pod['volumes'] == [{'name': 'geo-data', 'persistentVolumeClaim': {'claimName': 'geo-data'}}]
    # RIR files turn the `rir` resource on, with its weight from values
    geo = {g['metadata']['name']: g['spec'] for g in by_kind(docs, 'GeolocationEngine')}
    assert list(geo) == BUILTIN_ENGINES + ['rir', 'geofeed']
    assert geo['rir'] == {'engine': 'rir', 'weight': 1.5, 'enabled': True}
    # geofeeds turn the `geofeed` resource on; references need the mirror directory
    assert geo['geofeed'] == {'engine': 'geofeed', 'weight': 2, 'enabled': True}
    with pytest.raises(Exception) as err:
        render.render({'engines': {'data': {'volume': {'emptyDir': {}}, 'geofeedRefs': ['ripe.db.inetnum.gz']}}})
    assert 'needs engines.data.geofeedDir' in str(err.value), str(err.value)
    # files without a volume to read them from: refused, saying what to set
    with pytest.raises(Exception) as err:
        render.render({'engines': {'data': {'rirFiles': ['delegated-ripencc-extended-latest']}}})
    assert 'set engines.data.volume' in str(err.value), str(err.value)
    with pytest.raises(helm.HelmValuesError) as bad:
        render.render({'engines': {'data': {'asnTable': '/etc/ipasn.dat', 'volume': {'emptyDir': {}}}}})
    assert '/engines/data/asnTable' in str(bad.value), str(bad.value)


def test_notes_tell_how_to_make_an_api_key() -> None:
    text = render.notes(None)
    assert 'vantage.dev/api-key=true' in text and 'create secret generic' in text
    assert 'http://vantage-api.vantage.svc:80/api/v2/measurements/' in text
    assert 'https://vantage-api.vantage.svc:443/' in render.notes({'api': {'tls': {'secretName': 'x'}}})
    assert 'api-key' not in render.notes({'api': {'enabled': False}})


@pytest.mark.parametrize('values, where', [
    ({'registration': {'port': 'x'}}, '/registration/port'),
    ({'registration': {'port': 70000}}, '/registration/port'),
    ({'registration': {'containerPort': 443}}, '/registration/containerPort'),
    ({'clickhouse': {'url': 'clickhouse:8123'}}, '/clickhouse/url'),
    ({'clickhouse': {'database': 'bad-name'}}, '/clickhouse/database'),
    ({'controllerPool': {'serviceType': 'Ingress'}}, '/controllerPool/serviceType'),
    ({'containerSecurityContext': {'allowPrivilegeEscalation': True}}, '/containerSecurityContext/allowPrivilegeEscalation'),
    ({'registy': {'port': 443}}, 'registy'),
    ({'api': {'port': 443}}, '/api/port'),
    ({'api': {'publicUrl': 'atlas.example.net'}}, '/api/publicUrl'),
    ({'api': {'tls': {'secret': 'x'}}}, 'secret'),
    ({'engines': {'builtin': {'latency': {'enabled': True, 'weight': -1}}}}, '/engines/builtin/latency/weight'),
    ({'engines': {'builtin': {'geoip': {'enabled': True, 'weight': 1}}}}, 'geoip'),
])
def test_invalid_values_are_refused_with_a_message(values: dict[str, Any], where: str, tmp_path: pathlib.Path) -> None:
    # as a values file, the way `helm install -f` reads it
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(values))
    loaded = helm.values_from_yaml(path.read_text())
    with pytest.raises(helm.HelmValuesError) as err:
        render.render(loaded)
    assert where in str(err.value), str(err.value)


# --- into the Kubernetes API stand-in with kubectl --------------------------------------

@pytest.fixture(scope='module')
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if KUBECTL is None:
        pytest.skip('kubectl not installed')
    tmp = tmp_path_factory.mktemp('chart-standin')
    ready = tmp / 'port'
    log = open(tmp / 'standin.log', 'w')
    proc = subprocess.Popen([sys.executable, str(STANDIN), '--port', '0', '--ready-file', str(ready)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text().strip():
            assert proc.poll() is None, f'stand-in exited early, see {tmp / "standin.log"}'
            assert time.monotonic() < deadline, 'stand-in did not start in 20s'
            time.sleep(0.05)
        kubeconfig = tmp / 'kubeconfig'
        kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster: {{server: "http://127.0.0.1:{ready.read_text().strip()}"}}
users:
- name: standin
  user: {{token: dummy}}
contexts:
- name: standin
  context: {{cluster: standin, user: standin, namespace: default}}
current-context: standin
""")
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(tmp))

        def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
            cmd = [KUBECTL, '--cache-dir', str(tmp / 'cache'), *args]
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, input=input)
            if check and result.returncode != 0:
                raise AssertionError(f'{" ".join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
            return result
        yield run
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_default_chart_applies_with_kubectl(kubectl: Any, tmp_path: pathlib.Path) -> None:
    snapshot = CHARTS / 'rendered' / 'default.yaml'
    docs = render.documents(snapshot.read_text())
    kubectl('apply', '-f', '-', input='apiVersion: v1\nkind: Namespace\nmetadata: {name: vantage}\n')
    # CRDs first and established, as helm installs them, then everything else
    crds = [d for d in docs if d['kind'] == 'CustomResourceDefinition']
    rest = [d for d in docs if d['kind'] != 'CustomResourceDefinition']
    (tmp_path / 'crds.yaml').write_text(yaml.safe_dump_all(crds))
    (tmp_path / 'rest.yaml').write_text(yaml.safe_dump_all(rest))
    kubectl('apply', '-f', str(tmp_path / 'crds.yaml'))
    for crd in crds:
        kubectl('wait', '--for=condition=established', f"crd/{crd['metadata']['name']}", '--timeout=20s')
    out = kubectl('apply', '-f', str(tmp_path / 'rest.yaml')).stdout
    assert out.count('created') == len(rest), out
    # applying the same snapshot again changes nothing. kubectl patches a
    # PodDisruptionBudget's spec.selector on every apply (its patch strategy is "replace"),
    # so it says "configured" for them: their spec must come back unchanged instead.
    again = kubectl('apply', '-f', str(snapshot)).stdout
    lines = [line for line in again.splitlines() if not line.startswith('poddisruptionbudget.policy/')]
    assert lines and not [line for line in lines if 'created' in line or 'configured' in line], again
    pdbs = json.loads(kubectl('get', 'pdb', '-n', 'vantage', '-o', 'json').stdout)['items']
    assert {p['metadata']['name']: p['spec'] for p in pdbs} == {
        d['metadata']['name']: d['spec'] for d in rest if d['kind'] == 'PodDisruptionBudget'}

    ns = ('-n', 'vantage')
    got = kubectl('get', 'deployments', *ns, '-o', 'jsonpath={.items[*].metadata.name}').stdout.split()
    assert sorted(got) == ['vantage-api', 'vantage-collector', 'vantage-engines', 'vantage-operator']
    image = kubectl('get', 'deployment', 'vantage-operator', *ns,
                    '-o', 'jsonpath={.spec.template.spec.containers[0].args[0]}').stdout
    assert image == 'operator'
    # controllers and registration are the operator's to render, from the pool
    assert kubectl('get', 'statefulsets', *ns, '-o', 'name').stdout.split() == []
    pool = kubectl('get', 'cpool', 'vantage', *ns, '-o', 'json').stdout
    assert json.loads(pool)['spec']['probes_per_controller'] == 5000
    rules = json.loads(kubectl('get', 'clusterrole', 'vantage-operator', '-o', 'json').stdout)['rules']
    assert rules[0]['resources'] == ['measurements']
    labels = kubectl('get', 'configmaps', *ns, '-l', 'grafana_dashboard=1', '-o', 'name').stdout.split()
    assert sorted(labels) == ['configmap/vantage-dashboard-vantage-operations', 'configmap/vantage-dashboard-vantage-results']
    assert len(kubectl('get', 'networkpolicies', *ns, '-o', 'name').stdout.split()) == 11
    # the built-in engines, as `vantage engines` will list them
    geo = json.loads(kubectl('get', 'geolocationengines', *ns, '-o', 'json').stdout)['items']
    assert sorted((g['metadata']['name'], g['spec']['engine'], g['spec']['enabled']) for g in geo) \
        == sorted((n, n, True) for n in BUILTIN_ENGINES)
    assert kubectl('get', 'job', 'vantage-migrate', *ns, '-o', 'jsonpath={.spec.template.spec.containers[0].args}').stdout \
        == '["migrate"]'
    # and the user's next step from NOTES.txt works against the installed CRDs
    kubectl('apply', '-f', str(ROOT / 'examples' / 'ping.yaml'))
    assert kubectl('get', 'msm', 'ping-localhost', '-o', 'jsonpath={.spec.target}').stdout == '127.0.0.1'


def test_ssh_pre_auth_limits_reach_both_ssh_servers(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    """sshPreAuth (docs/SECURITY.md) becomes flags of static controllers and registration,
    and spec.pre_auth of the ControllerPool the operator renders them from."""
    want = ['--preauth-grace=30', '--max-startups=200:30:1000', '--max-startups-per-source=32']
    docs = all_cases['full']
    ctl = pod_spec(one(docs, 'StatefulSet', 'measure-controller'))['containers'][0]['args']
    reg = pod_spec(one(docs, 'Deployment', 'measure-registration'))['containers'][0]['args']
    assert ctl[-3:] == want and reg[-3:] == want
    pools = by_kind(rendered({'sshPreAuth': {'graceSeconds': 12, 'maxStartups': {'start': 5, 'rate': 50, 'full': 50},
                                             'perSource': 4}}), 'ControllerPool')
    assert [p['spec']['pre_auth'] for p in pools] == [
        {'grace_seconds': 12, 'max_startups': {'start': 5, 'rate': 50, 'full': 50}, 'per_source': 4}]


# --- cluster mode (issue 20): NATS cluster, ClickHouse cluster, operator HA ----------------

NATS_SEEDS = ['nats-0.nats.nats.svc:4222', 'nats-1.nats.nats.svc:4222', 'nats-2.nats.nats.svc:4222']
# the components that create, read or write ClickHouse tables (CLICKHOUSE_CLUSTER) and
# those that use NATS (NATS_URL, NATS_REPLICAS)
CLICKHOUSE_CLIENTS = {'operator', 'collector', 'api', 'engines', 'intake', 'migrate'}
NATS_CLIENTS = {'operator', 'registration', 'controller', 'collector', 'engines', 'api'}


def workload_envs(docs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Component -> its container's env by name, for every workload the chart renders."""
    out = {}
    for doc in docs:
        if doc['kind'] in POD_KINDS:
            component = doc['metadata']['labels']['app.kubernetes.io/component']
            assert component not in out, f'two workloads of {component}'
            out[component] = {e['name']: e for e in pod_spec(doc)['containers'][0].get('env', [])}
    return out


def test_cluster_mode_env_reaches_every_component(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    docs = all_cases['cluster']
    envs = workload_envs(docs)
    assert set(envs) == {'operator', 'collector', 'api', 'engines', 'intake', 'migrate'}, set(envs)
    for component, env in envs.items():
        if component in NATS_CLIENTS:
            # every seed URL, each with the component's own NATS user (per-role auth is on)
            want = ','.join(f'nats://vantage-{component}:$(NATS_PASSWORD)@{seed}' for seed in NATS_SEEDS)
            assert env['NATS_URL']['value'] == want, component
            assert env['NATS_REPLICAS']['value'] == '3', component
        else:
            assert 'NATS_URL' not in env and 'NATS_REPLICAS' not in env, component
        if component in CLICKHOUSE_CLIENTS:
            assert env['CLICKHOUSE_CLUSTER']['value'] == 'vantage', component
            assert env['CLICKHOUSE_URL']['value'] == 'http://clickhouse.clickhouse.svc:8123', component
    # the pool's pods (controllers, registration): the operator renders them from the pool's URL
    pool = one(docs, 'ControllerPool', 'vantage')['spec']
    assert pool['nats'] == {'url': ','.join(f'nats://{s}' for s in NATS_SEEDS), 'password_secret': 'vantage-nats-passwords'}
    assert (pool['min_replicas'], pool['max_replicas']) == (3, 30)
    # replicas as asked
    replicas = {d['metadata']['name']: d['spec']['replicas'] for d in by_kind(docs, 'Deployment') + by_kind(docs, 'StatefulSet')}
    assert replicas == {'vantage-operator': 2, 'vantage-collector': 3, 'vantage-api': 3, 'vantage-engines': 2,
                        'vantage-intake': 1}, replicas
    # single node (the default): NATS_REPLICAS 1, and no CLICKHOUSE_CLUSTER anywhere
    for case in ('default', 'full', 'api-tls', 'operator-managed'):
        for component, env in workload_envs(all_cases[case]).items():
            assert 'CLICKHOUSE_CLUSTER' not in env, (case, component)
            if 'NATS_URL' in env:
                assert env['NATS_REPLICAS']['value'] == '1', (case, component)
    # the static controllers and registration get them too, without per-role users
    static = rendered({'controllers': {'static': {'enabled': True}},
                       'nats': {'urls': ['nats://a:4222', 'tls://b:4443'], 'replicas': 3}})
    senvs = workload_envs(static)
    for component in ('controller', 'registration', 'operator', 'collector', 'api', 'engines'):
        assert senvs[component]['NATS_URL']['value'] == 'nats://a:4222,tls://b:4443', component
        assert senvs[component]['NATS_REPLICAS']['value'] == '3', component
    # NetworkPolicy egress opens the port of every seed, once each
    pols = {d['metadata']['name']: d['spec'] for d in by_kind(static, 'NetworkPolicy')}
    assert pols['vantage-egress-nats']['egress'][0]['ports'] == [{'protocol': 'TCP', 'port': 4222}, {'protocol': 'TCP', 'port': 4443}]
    # a Secret URL and a list at once: refused, saying what to do
    with pytest.raises(Exception, match='nats.urls and nats.existingSecret are both set'):
        rendered({'nats': {'urls': ['nats://a:4222'], 'existingSecret': 'nats-url'}})


def test_operator_leader_election(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    for case in ('default', 'cluster'):
        docs = all_cases[case]
        dep = one(docs, 'Deployment', 'vantage-operator')
        assert dep['spec']['replicas'] == 2, case
        # a new operator starts before the old one stops and waits for the Lease
        assert dep['spec']['strategy'] == {'type': 'RollingUpdate', 'rollingUpdate': {'maxSurge': 1, 'maxUnavailable': 0}}
        env = {e['name']: e for e in pod_spec(dep)['containers'][0]['env']}
        assert env['VANTAGE_LEADER_ELECT']['value'] == 'true'
        assert env['VANTAGE_LEASE_NAME']['value'] == 'vantage-operator'
        # identity and the Lease's namespace from the downward API
        assert env['POD_NAME']['valueFrom'] == {'fieldRef': {'fieldPath': 'metadata.name'}}
        assert env['POD_NAMESPACE']['valueFrom'] == {'fieldRef': {'fieldPath': 'metadata.namespace'}}
        role = one(docs, 'Role', 'vantage-operator')
        assert role['metadata']['namespace'] == 'vantage'
        (lease,) = [r for r in role['rules'] if r['apiGroups'] == ['coordination.k8s.io']]
        assert lease['resources'] == ['leases'] and set(lease['verbs']) == LEASE_VERBS, case
    # the Lease name follows the release, or the value
    assert {e['name']: e.get('value') for e in pod_spec(one(all_cases['full'], 'Deployment', 'measure-operator'))['containers'][0]['env']}['VANTAGE_LEASE_NAME'] == 'measure-operator'
    named = rendered({'operator': {'leaderElection': {'leaseName': 'atlas-leader'}}})
    env = {e['name']: e.get('value') for e in pod_spec(one(named, 'Deployment', 'vantage-operator'))['containers'][0]['env']}
    assert env['VANTAGE_LEASE_NAME'] == 'atlas-leader'
    # off (one operator): Recreate, the flag false, no Lease name, no Lease rights
    off = rendered({'operator': {'replicas': 1, 'leaderElection': {'enabled': False}}})
    dep = one(off, 'Deployment', 'vantage-operator')
    assert dep['spec']['strategy'] == {'type': 'Recreate'}
    env = {e['name']: e.get('value') for e in pod_spec(dep)['containers'][0]['env']}
    assert env['VANTAGE_LEADER_ELECT'] == 'false' and 'VANTAGE_LEASE_NAME' not in env
    assert not [r for r in one(off, 'Role', 'vantage-operator')['rules'] if 'leases' in r['resources']]
    # several operators without the Lease would all allocate ids and write schedules: refused
    with pytest.raises(Exception, match=r'operator.replicas is 3 but operator.leaderElection.enabled is false'):
        rendered({'operator': {'replicas': 3, 'leaderElection': {'enabled': False}}})


def test_disruption_budgets_and_anti_affinity(all_cases: dict[str, list[dict[str, Any]]]) -> None:
    hostname = 'kubernetes.io/hostname'

    def check(docs: list[dict[str, Any]], want: set[str], case: str) -> None:
        pdbs = {d['metadata']['name']: d for d in by_kind(docs, 'PodDisruptionBudget')}
        assert set(pdbs) == want, (case, set(pdbs))
        for doc in by_kind(docs, 'Deployment') + by_kind(docs, 'StatefulSet'):
            name, replicas = doc['metadata']['name'], doc['spec']['replicas']
            affinity = pod_spec(doc).get('affinity', {})
            if replicas < 2:
                # one replica: no budget (it would block every drain) and nothing to spread
                assert name not in pdbs and 'podAntiAffinity' not in affinity, (case, name)
                continue
            pdb = pdbs[name]
            assert pdb['apiVersion'] == 'policy/v1' and pdb['metadata']['namespace'] == doc['metadata']['namespace']
            assert pdb['spec']['maxUnavailable'] == 1 and 'minAvailable' not in pdb['spec'], (case, name)
            # the budget selects exactly this workload's pods
            assert pdb['spec']['selector'] == doc['spec']['selector'], (case, name)
            (term,) = affinity['podAntiAffinity']['preferredDuringSchedulingIgnoredDuringExecution']
            assert term['weight'] == 100 and term['podAffinityTerm']['topologyKey'] == hostname, (case, name)
            assert term['podAffinityTerm']['labelSelector'] == doc['spec']['selector'], (case, name)
            assert 'requiredDuringSchedulingIgnoredDuringExecution' not in affinity['podAntiAffinity'], 'preferred only'

    check(all_cases['cluster'], {'vantage-operator', 'vantage-collector', 'vantage-api', 'vantage-engines'}, 'cluster')
    check(all_cases['default'], {'vantage-operator', 'vantage-api'}, 'default')
    # static controllers (3) and registration (3) are the chart's there: they get theirs too
    check(all_cases['full'], {'measure-operator', 'measure-api', 'measure-collector', 'measure-controller',
                              'measure-registration'}, 'full')
    # a component's own affinity stays, the spread is added beside it
    collector = pod_spec(one(all_cases['cluster'], 'Deployment', 'vantage-collector'))['affinity']
    assert collector['nodeAffinity']['preferredDuringSchedulingIgnoredDuringExecution'][0]['weight'] == 50
    assert 'podAntiAffinity' in collector
    # ... and its own podAntiAffinity wins over the chart's
    mine = {'requiredDuringSchedulingIgnoredDuringExecution': [
        {'topologyKey': 'topology.kubernetes.io/zone', 'labelSelector': {'matchLabels': {'x': 'y'}}}]}
    docs = rendered({'api': {'affinity': {'podAntiAffinity': mine}}})
    assert pod_spec(one(docs, 'Deployment', 'vantage-api'))['affinity'] == {'podAntiAffinity': mine}
    # minAvailable instead, a percentage
    docs = rendered({'podDisruptionBudget': {'minAvailable': '50%'}})
    assert one(docs, 'PodDisruptionBudget', 'vantage-api')['spec'] == {
        'minAvailable': '50%', 'selector': one(docs, 'Deployment', 'vantage-api')['spec']['selector']}
    # both off
    docs = rendered({'podDisruptionBudget': {'enabled': False}, 'podAntiAffinity': {'enabled': False},
                     'collector': {'replicas': 3}})
    assert not by_kind(docs, 'PodDisruptionBudget')
    for doc in by_kind(docs, 'Deployment'):
        assert 'affinity' not in pod_spec(doc), doc['metadata']['name']


@pytest.mark.parametrize('values, where', [
    ({'nats': {'replicas': 7}}, '/nats/replicas'),
    ({'nats': {'replicas': 0}}, '/nats/replicas'),
    ({'nats': {'urls': ['nats-0:4222']}}, '/nats/urls'),
    ({'nats': {'urls': 'nats://a:4222,nats://b:4222'}}, '/nats/urls'),
    ({'clickhouse': {'cluster': 'my cluster'}}, '/clickhouse/cluster'),
    ({'operator': {'leaderElection': {'leaseName': 'Not_A_Name'}}}, '/operator/leaderElection/leaseName'),
    ({'podDisruptionBudget': {'maxUnavailable': 0}}, '/podDisruptionBudget/maxUnavailable'),
    ({'podAntiAffinity': {'weight': 0}}, '/podAntiAffinity/weight'),
    ({'podAntiAffinity': {'required': True}}, 'required'),
])
def test_invalid_cluster_values_are_refused(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as err:
        render.render(values)
    assert where in str(err.value), str(err.value)


def test_cluster_chart_applies_with_kubectl(kubectl: Any, tmp_path: pathlib.Path) -> None:
    """The cluster snapshot into the stand-in, in its own namespace: PodDisruptionBudgets
    (policy/v1) and the Lease rule are accepted as rendered."""
    docs = render.documents(render.render(yaml.safe_load((CHART / 'ci' / 'cluster.yaml').read_text()),
                                          name='atlas', namespace='atlas'))
    # the release's namespace, and the NATS server's (the authorization ConfigMap goes there)
    for ns in ('atlas', 'nats'):
        kubectl('apply', '-f', '-', input=f'apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n')
    crds = [d for d in docs if d['kind'] == 'CustomResourceDefinition']
    rest = [d for d in docs if d['kind'] != 'CustomResourceDefinition']
    (tmp_path / 'crds.yaml').write_text(yaml.safe_dump_all(crds))
    (tmp_path / 'rest.yaml').write_text(yaml.safe_dump_all(rest))
    kubectl('apply', '-f', str(tmp_path / 'crds.yaml'))
    for crd in crds:
        kubectl('wait', '--for=condition=established', f"crd/{crd['metadata']['name']}", '--timeout=20s')
    out = kubectl('apply', '-f', str(tmp_path / 'rest.yaml')).stdout
    assert out.count('created') == len(rest), out
    ns = ('-n', 'atlas')
    pdbs = json.loads(kubectl('get', 'pdb', *ns, '-o', 'json').stdout)['items']
    assert sorted((p['metadata']['name'], p['spec']['maxUnavailable']) for p in pdbs) == [
        ('atlas-vantage-api', 1), ('atlas-vantage-collector', 1), ('atlas-vantage-engines', 1), ('atlas-vantage-operator', 1)]
    role = json.loads(kubectl('get', 'role', 'atlas-vantage-operator', *ns, '-o', 'json').stdout)
    assert {'apiGroups': ['coordination.k8s.io'], 'resources': ['leases'],
            'verbs': ['get', 'list', 'watch', 'create', 'update', 'patch']} in role['rules']
    env = json.loads(kubectl('get', 'deployment', 'atlas-vantage-operator', *ns, '-o',
                             'jsonpath={.spec.template.spec.containers[0].env}').stdout)
    assert {'name': 'VANTAGE_LEASE_NAME', 'value': 'atlas-vantage-operator'} in env
    # what an operator does with its Lease, against the stand-in: create, then renew
    lease = {'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
             'metadata': {'name': 'atlas-vantage-operator', 'namespace': 'atlas'},
             'spec': {'holderIdentity': 'atlas-vantage-operator-0', 'leaseDurationSeconds': 15}}
    kubectl('apply', '-f', '-', input=yaml.safe_dump(lease))
    assert kubectl('get', 'lease', 'atlas-vantage-operator', *ns, '-o', 'jsonpath={.spec.holderIdentity}').stdout \
        == 'atlas-vantage-operator-0'
