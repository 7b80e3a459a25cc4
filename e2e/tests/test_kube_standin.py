"""
Tests of e2e/kube_standin.py with real kubectl and raw HTTP.

Run: .venv/bin/python -m pytest e2e/tests/test_kube_standin.py
Needs kubectl on PATH (skipped otherwise for the kubectl tests).
"""
from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / 'fixtures'
STANDIN = HERE.parent / 'kube_standin.py'
KUBECTL = shutil.which('kubectl')
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason='kubectl not installed')


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp('standin')
    ready = tmp / 'port'
    log = open(tmp / 'standin.log', 'w')
    proc = subprocess.Popen([sys.executable, str(STANDIN), '--port', '0', '--ready-file', str(ready), '--log-requests'],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text().strip():
            assert proc.poll() is None, f'stand-in exited early, see {tmp / "standin.log"}'
            assert time.monotonic() < deadline, 'stand-in did not start in 20s'
            time.sleep(0.05)
        yield f'http://127.0.0.1:{ready.read_text().strip()}'
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope='module')
def kubectl(server: str, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp('kubectl')
    kubeconfig = tmp / 'kubeconfig'
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster: {{server: "{server}"}}
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
        cmd = [KUBECTL or 'kubectl', '--cache-dir', str(tmp / 'cache'), *args]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f'{" ".join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
        return result
    return run


class Watch:
    """Collects the events of a raw HTTP watch in a background thread."""

    def __init__(self, url: str, **params: Any) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.response = requests.get(url, params=dict(params, watch='true'), stream=True, timeout=30)
        assert self.response.status_code == 200, self.response.text
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines():
                if line:
                    self.events.put(json.loads(line))
        except Exception:  # closed by close()
            pass
        self.events.put({'type': 'END'})

    def next(self, timeout: float = 5) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def expect_nothing(self, wait: float = 0.7) -> None:
        try:
            event = self.events.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f'unexpected watch event: {event["type"]} {event["object"].get("metadata")}')

    def close(self) -> None:
        # response.close() alone waits for the server to end the stream: shut the socket first.
        try:
            self.response.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        self.response.close()
        self.thread.join(timeout=5)


def summary(event: dict[str, Any]) -> tuple[str, str]:
    return event['type'], event['object']['metadata'].get('name', '')


# ---------------------------------------------------------------------------

def test_version_health_and_core_discovery(server: str) -> None:
    assert requests.get(f'{server}/healthz').text == 'ok'
    assert requests.get(f'{server}/readyz').text == 'ok'
    version = requests.get(f'{server}/version').json()
    assert version['major'] == '1' and version['gitVersion'].startswith('v1.')
    assert requests.get(f'{server}/api').json()['versions'] == ['v1']
    v1 = requests.get(f'{server}/api/v1').json()
    assert v1['groupVersion'] == 'v1'
    by_name = {r['name']: r for r in v1['resources']}
    assert by_name['namespaces']['namespaced'] is False
    assert by_name['configmaps']['namespaced'] is True and by_name['configmaps']['kind'] == 'ConfigMap'
    groups = {g['name'] for g in requests.get(f'{server}/apis').json()['groups']}
    assert {'apps', 'rbac.authorization.k8s.io', 'apiextensions.k8s.io', 'coordination.k8s.io',
            'events.k8s.io', 'networking.k8s.io'} <= groups
    apps = requests.get(f'{server}/apis/apps/v1').json()
    assert apps['groupVersion'] == 'apps/v1'
    assert {'deployments', 'statefulsets', 'deployments/status'} <= {r['name'] for r in apps['resources']}
    nslist = requests.get(f'{server}/api/v1/namespaces').json()
    assert nslist['kind'] == 'NamespaceList' and nslist['metadata']['resourceVersion']
    assert 'default' in {n['metadata']['name'] for n in nslist['items']}
    # aggregated discovery, as kubectl 1.32 asks for it
    agg = requests.get(f'{server}/apis', headers={
        'Accept': 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json'})
    assert agg.headers['Content-Type'].startswith('application/json;g=apidiscovery.k8s.io;v=v2')
    assert agg.json()['kind'] == 'APIGroupDiscoveryList'


@needs_kubectl
def test_crd_lifecycle_with_kubectl(server: str, kubectl) -> None:
    out = kubectl('apply', '-f', str(FIXTURES / 'widget-crd.yaml')).stdout
    assert 'customresourcedefinition.apiextensions.k8s.io/widgets.vantage.dev' in out
    # discovery knows the new kind at once
    res = requests.get(f'{server}/apis/vantage.dev/v1alpha1').json()
    widgets = {r['name']: r for r in res['resources']}
    assert widgets['widgets']['kind'] == 'Widget' and widgets['widgets']['namespaced'] is True
    assert widgets['widgets']['shortNames'] == ['wdg'] and 'widgets/status' in widgets
    kubectl('wait', '--for=condition=established', 'crd/widgets.vantage.dev', '--timeout=10s')

    lst = requests.get(f'{server}/apis/vantage.dev/v1alpha1/namespaces/default/widgets').json()
    assert lst['kind'] == 'WidgetList' and lst['apiVersion'] == 'vantage.dev/v1alpha1'
    watch = Watch(f'{server}/apis/vantage.dev/v1alpha1/namespaces/default/widgets',
                  resourceVersion=lst['metadata']['resourceVersion'], timeoutSeconds='60')
    try:
        assert 'widget.vantage.dev/w1 created' in kubectl('apply', '-f', str(FIXTURES / 'widget.yaml')).stdout
        added = watch.next()
        assert summary(added) == ('ADDED', 'w1')
        meta = added['object']['metadata']
        assert meta['namespace'] == 'default' and meta['uid'] and meta['generation'] == 1
        assert meta['creationTimestamp'].endswith('Z') and int(meta['resourceVersion']) > int(lst['metadata']['resourceVersion'])

        table = kubectl('get', 'widgets').stdout.splitlines()
        assert table[0].split() == ['NAME', 'SIZE', 'PHASE', 'AGE']
        assert table[1].split()[:2] == ['w1', '3']

        # applying the same manifest again changes nothing and sends no event
        assert 'unchanged' in kubectl('apply', '-f', str(FIXTURES / 'widget.yaml')).stdout
        watch.expect_nothing()

        got = kubectl('get', 'wdg', 'w1', '-o', 'jsonpath={.spec.size}/{.spec.color}/{.metadata.generation}').stdout
        assert got == '3/blue/1'

        kubectl('patch', 'widget', 'w1', '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Ready"}}')
        modified = watch.next()
        assert summary(modified) == ('MODIFIED', 'w1')
        assert modified['object']['status'] == {'phase': 'Ready'}
        assert modified['object']['metadata']['generation'] == 1  # status does not bump generation
        assert int(modified['object']['metadata']['resourceVersion']) > int(meta['resourceVersion'])
        kubectl('wait', '--for=jsonpath={.status.phase}=Ready', 'widget/w1', '--timeout=10s')
        assert kubectl('get', 'widgets').stdout.splitlines()[1].split()[:3] == ['w1', '3', 'Ready']

        # a spec change bumps the generation; the main endpoint ignores status
        kubectl('patch', 'widget', 'w1', '--type=merge', '-p', '{"spec":{"size":4},"status":{"phase":"Hacked"}}')
        modified = watch.next()
        assert modified['object']['spec']['size'] == 4 and modified['object']['metadata']['generation'] == 2
        assert modified['object']['status'] == {'phase': 'Ready'}

        assert 'deleted' in kubectl('delete', 'widget', 'w1').stdout
        assert summary(watch.next()) == ('DELETED', 'w1')
        assert kubectl('get', 'widget', 'w1', check=False).returncode != 0
    finally:
        watch.close()


def test_watch_ordering_and_resource_versions(server: str) -> None:
    base = f'{server}/api/v1/namespaces/watch-test/configmaps'
    requests.post(f'{server}/api/v1/namespaces', json={'metadata': {'name': 'watch-test'}})
    cm = requests.post(base, json={'metadata': {'name': 'a', 'labels': {'team': 'x'}}, 'data': {'k': '1'}})
    assert cm.status_code == 201, cm.text
    rv_a = int(cm.json()['metadata']['resourceVersion'])

    # resourceVersion=0 (and absent): current objects come first, as ADDED
    w0 = Watch(base, resourceVersion='0', timeoutSeconds='30')
    try:
        first = w0.next()
        assert summary(first) == ('ADDED', 'a') and first['object']['kind'] == 'ConfigMap'
        assert first['object']['apiVersion'] == 'v1'
    finally:
        w0.close()

    lst = requests.get(base).json()
    list_rv = lst['metadata']['resourceVersion']
    assert int(list_rv) >= rv_a
    w = Watch(base, resourceVersion=list_rv, timeoutSeconds='30', allowWatchBookmarks='true')
    wsel = Watch(base, resourceVersion=list_rv, timeoutSeconds='30', labelSelector='team=x')
    try:
        w.expect_nothing(0.5)  # nothing older than list_rv is replayed
        requests.post(base, json={'metadata': {'name': 'b'}, 'data': {'k': '2'}})
        patch = requests.patch(f'{base}/b', data=json.dumps({'data': {'k': '3'}}),
                               headers={'Content-Type': 'application/merge-patch+json'})
        assert patch.status_code == 200 and patch.json()['data'] == {'k': '3'}
        noop = requests.patch(f'{base}/b', data=json.dumps({'data': {'k': '3'}}),
                              headers={'Content-Type': 'application/merge-patch+json'})
        assert noop.json()['metadata']['resourceVersion'] == patch.json()['metadata']['resourceVersion']
        assert requests.delete(f'{base}/b').status_code == 200
        events = [w.next() for _ in range(3)]
        assert [summary(e) for e in events] == [('ADDED', 'b'), ('MODIFIED', 'b'), ('DELETED', 'b')]
        rvs = [int(e['object']['metadata']['resourceVersion']) for e in events]
        assert rvs == sorted(rvs) and len(set(rvs)) == 3 and rvs[0] > int(list_rv)
        w.expect_nothing()  # the no-op patch sent nothing

        # label selector: objects entering/leaving it look like ADDED/DELETED
        requests.patch(f'{base}/a', data=json.dumps({'metadata': {'labels': {'team': 'y'}}}),
                       headers={'Content-Type': 'application/merge-patch+json'})
        assert summary(wsel.next()) == ('DELETED', 'a')
        assert summary(w.next()) == ('MODIFIED', 'a')

        # resuming from an older resourceVersion replays exactly what came after it
        w2 = Watch(base, resourceVersion=str(rvs[0]), timeoutSeconds='2')
        replay = [summary(w2.next()) for _ in range(3)]
        assert replay == [('MODIFIED', 'b'), ('DELETED', 'b'), ('MODIFIED', 'a')]
        assert w2.next(timeout=5)['type'] == 'END'  # timeoutSeconds ends the stream
        w2.close()
    finally:
        w.close()
        wsel.close()

    # kube-rs streaming lists: initial ADDED events, then a BOOKMARK marking their end
    ws = Watch(base, sendInitialEvents='true', resourceVersionMatch='NotOlderThan',
               allowWatchBookmarks='true', timeoutSeconds='30')
    try:
        assert summary(ws.next()) == ('ADDED', 'a')
        bookmark = ws.next()
        assert bookmark['type'] == 'BOOKMARK'
        assert bookmark['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}
        assert int(bookmark['object']['metadata']['resourceVersion']) >= rvs[-1]
    finally:
        ws.close()

    # kube-rs metadata watchers ask for PartialObjectMetadata
    meta_accept = {'Accept': 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json'}
    plist = requests.get(base, headers=meta_accept).json()
    assert plist['kind'] == 'PartialObjectMetadataList' and plist['items'][0]['metadata']['name'] == 'a'
    assert 'data' not in plist['items'][0]

    # selectors on lists
    requests.post(base, json={'metadata': {'name': 'c', 'labels': {'team': 'x', 'tier': 'db'}}})
    names = lambda r: [o['metadata']['name'] for o in r.json()['items']]  # noqa: E731
    assert names(requests.get(base, params={'labelSelector': 'team=x'})) == ['c']
    assert names(requests.get(base, params={'labelSelector': 'team in (x,y),tier!=web'})) == ['a', 'c']
    assert names(requests.get(base, params={'labelSelector': 'team notin (y),tier'})) == ['c']
    assert names(requests.get(base, params={'labelSelector': '!tier'})) == ['a']
    assert names(requests.get(base, params={'fieldSelector': 'metadata.name=a'})) == ['a']
    assert 'c' not in names(requests.get(f'{server}/api/v1/namespaces/default/configmaps'))
    assert {'a', 'c'} <= set(names(requests.get(f'{server}/api/v1/configmaps')))  # all namespaces
    page = requests.get(base, params={'limit': '1'}).json()
    assert len(page['items']) == 1 and page['metadata']['continue']
    rest = requests.get(base, params={'limit': '1', 'continue': page['metadata']['continue']}).json()
    assert [o['metadata']['name'] for o in page['items'] + rest['items']] == ['a', 'c']


def test_too_old_resource_version_gets_410(tmp_path: pathlib.Path) -> None:
    # A second stand-in that keeps only 5 events: watching from before them is 410 Expired.
    ready = tmp_path / 'port'
    proc = subprocess.Popen([sys.executable, str(STANDIN), '--port', '0', '--ready-file', str(ready),
                             '--event-log-size', '5'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        base = f'http://127.0.0.1:{ready.read_text().strip()}/api/v1/namespaces/default/configmaps'
        first = requests.post(base, json={'metadata': {'name': 'cm0'}}).json()['metadata']['resourceVersion']
        for i in range(1, 10):
            requests.post(base, json={'metadata': {'name': f'cm{i}'}})
        w = Watch(base, resourceVersion=first, timeoutSeconds='5')
        error = w.next()
        w.close()
        assert error['type'] == 'ERROR' and error['object']['code'] == 410 and error['object']['reason'] == 'Expired'
        recent = requests.get(base).json()['metadata']['resourceVersion']
        w = Watch(base, resourceVersion=str(int(recent) - 2), timeoutSeconds='5')
        assert [summary(w.next()) for _ in range(2)] == [('ADDED', 'cm8'), ('ADDED', 'cm9')]
        w.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_finalizers_delay_deletion(server: str) -> None:
    base = f'{server}/api/v1/namespaces/default/configmaps'
    created = requests.post(base, json={'metadata': {'name': 'fin', 'finalizers': ['vantage.dev/cleanup']}})
    assert created.status_code == 201
    w = Watch(base, resourceVersion=created.json()['metadata']['resourceVersion'], timeoutSeconds='30')
    try:
        deleting = requests.delete(f'{base}/fin')
        assert deleting.status_code == 200
        assert deleting.json()['metadata']['deletionTimestamp']
        event = w.next()
        assert summary(event) == ('MODIFIED', 'fin') and event['object']['metadata']['deletionTimestamp']
        still = requests.get(f'{base}/fin')
        assert still.status_code == 200 and still.json()['metadata']['finalizers'] == ['vantage.dev/cleanup']
        # deleting again is accepted and changes nothing
        assert requests.delete(f'{base}/fin').status_code == 200
        w.expect_nothing(0.5)
        released = requests.patch(f'{base}/fin', data=json.dumps({'metadata': {'finalizers': None}}),
                                  headers={'Content-Type': 'application/merge-patch+json'})
        assert released.status_code == 200
        assert summary(w.next()) == ('DELETED', 'fin')
        assert requests.get(f'{base}/fin').status_code == 404
    finally:
        w.close()


def test_errors_are_kubernetes_statuses(server: str) -> None:
    missing = requests.get(f'{server}/api/v1/namespaces/default/configmaps/nope')
    assert missing.status_code == 404
    body = missing.json()
    assert body['kind'] == 'Status' and body['reason'] == 'NotFound' and body['code'] == 404
    assert body['details']['name'] == 'nope'
    base = f'{server}/api/v1/namespaces/default/serviceaccounts'
    assert requests.post(base, json={'metadata': {'name': 'dup'}}).status_code == 201
    dup = requests.post(base, json={'metadata': {'name': 'dup'}})
    assert dup.status_code == 409 and dup.json()['reason'] == 'AlreadyExists'
    assert dup.json()['message'] == 'serviceaccounts "dup" already exists'
    stale = requests.put(f'{base}/dup', json={'metadata': {'name': 'dup', 'resourceVersion': '1'}})
    assert stale.status_code == 409 and stale.json()['reason'] == 'Conflict'
    unknown = requests.get(f'{server}/apis/vantage.dev/v1alpha1/namespaces/default/nosuchthings')
    assert unknown.status_code == 404 and unknown.json()['reason'] == 'NotFound'


@needs_kubectl
def test_kubectl_not_found_and_already_exists(kubectl) -> None:
    missing = kubectl('get', 'configmap', 'does-not-exist', check=False)
    assert missing.returncode != 0 and 'NotFound' in missing.stderr and '"does-not-exist" not found' in missing.stderr
    manifest = 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: twice}\n'
    kubectl('create', '-f', '-', input=manifest)
    again = kubectl('create', '-f', '-', input=manifest, check=False)
    assert again.returncode != 0 and 'AlreadyExists' in again.stderr


@needs_kubectl
def test_cluster_scoped_crd(server: str, kubectl) -> None:
    kubectl('apply', '-f', str(FIXTURES / 'gadget-crd.yaml'))
    res = {r['name']: r for r in requests.get(f'{server}/apis/vantage.dev/v1alpha1').json()['resources']}
    assert res['gadgets']['namespaced'] is False and 'gadgets/status' not in res
    kubectl('apply', '-f', str(FIXTURES / 'gadget.yaml'))
    obj = requests.get(f'{server}/apis/vantage.dev/v1alpha1/gadgets/g1').json()
    assert obj['kind'] == 'Gadget' and 'namespace' not in obj['metadata'] and obj['spec'] == {'mode': 'fast'}
    assert kubectl('get', 'gadgets').stdout.splitlines()[1].split()[0] == 'g1'
    assert kubectl('get', 'gadget', 'g1', '-o', 'jsonpath={.spec.mode}').stdout == 'fast'
    # deleting the CRD deletes its objects and its discovery
    kubectl('delete', 'crd', 'gadgets.vantage.dev')
    gone = requests.get(f'{server}/apis/vantage.dev/v1alpha1/gadgets/g1')
    assert gone.status_code == 404


def test_server_side_apply_and_patch_flavours(server: str) -> None:
    base = f'{server}/apis/apps/v1/namespaces/default/deployments'
    apply = {'Content-Type': 'application/apply-patch+yaml'}
    deploy = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'web'},
              'spec': {'replicas': 1, 'template': {'spec': {'containers': [
                  {'name': 'app', 'image': 'app:1'}, {'name': 'side', 'image': 'side:1'}]}}}}
    created = requests.patch(f'{base}/web', params={'fieldManager': 'test', 'force': 'true'},
                             data=json.dumps(deploy), headers=apply)
    assert created.status_code in (200, 201), created.text
    meta = created.json()['metadata']
    assert meta['generation'] == 1 and meta['namespace'] == 'default'
    again = requests.patch(f'{base}/web', params={'fieldManager': 'test'}, data=json.dumps(deploy), headers=apply)
    assert again.json()['metadata']['resourceVersion'] == meta['resourceVersion']  # no-op

    # YAML works for apply too
    yaml_body = 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n'
    assert requests.patch(f'{base}/web', data=yaml_body, headers=apply).json()['spec']['replicas'] == 2

    # strategic merge with $setElementOrder merges the list by key instead of replacing it
    smp = {'$setElementOrder/containers': [{'name': 'app'}, {'name': 'side'}],
           'containers': [{'name': 'side', 'image': 'side:2'}]}
    r = requests.patch(f'{base}/web', data=json.dumps({'spec': {'template': {'spec': smp}}}),
                       headers={'Content-Type': 'application/strategic-merge-patch+json'})
    assert r.json()['spec']['template']['spec']['containers'] == [
        {'name': 'app', 'image': 'app:1'}, {'name': 'side', 'image': 'side:2'}]
    assert '$setElementOrder/containers' not in json.dumps(r.json())

    # JSON patch
    r = requests.patch(f'{base}/web', data=json.dumps([{'op': 'replace', 'path': '/spec/replicas', 'value': 3},
                                                       {'op': 'add', 'path': '/metadata/labels', 'value': {'a': 'b'}}]),
                       headers={'Content-Type': 'application/json-patch+json'})
    assert r.json()['spec']['replicas'] == 3 and r.json()['metadata']['labels'] == {'a': 'b'}
    # kube-runtime's finalizer() helper: test a missing path against null, then add; then remove by index
    jp = {'Content-Type': 'application/json-patch+json'}
    r = requests.patch(f'{base}/web', headers=jp, data=json.dumps([
        {'op': 'test', 'path': '/metadata/finalizers', 'value': None},
        {'op': 'add', 'path': '/metadata/finalizers', 'value': ['vantage.dev/f']}]))
    assert r.status_code == 200 and r.json()['metadata']['finalizers'] == ['vantage.dev/f']
    r = requests.patch(f'{base}/web', headers=jp, data=json.dumps([
        {'op': 'test', 'path': '/metadata/finalizers/0', 'value': 'vantage.dev/f'},
        {'op': 'remove', 'path': '/metadata/finalizers/0'}]))
    assert r.status_code == 200 and r.json()['metadata'].get('finalizers') == []
    r = requests.patch(f'{base}/web', headers=jp, data=json.dumps([
        {'op': 'test', 'path': '/spec/replicas', 'value': 99}, {'op': 'replace', 'path': '/spec/replicas', 'value': 1}]))
    assert r.status_code == 422 and r.json()['kind'] == 'Status'
    generation = requests.get(f'{base}/web').json()['metadata']['generation']

    # /status: apply, merge and PUT change only the status
    st = requests.patch(f'{base}/web/status', data=json.dumps({'apiVersion': 'apps/v1', 'kind': 'Deployment',
                                                               'metadata': {'name': 'web'}, 'spec': {'replicas': 9},
                                                               'status': {'readyReplicas': 3}}), headers=apply)
    assert st.json()['status'] == {'readyReplicas': 3} and st.json()['spec']['replicas'] == 3
    assert st.json()['metadata']['generation'] == generation
    current = st.json()
    current['status'] = {'readyReplicas': 1}
    current['spec']['replicas'] = 7
    put = requests.put(f'{base}/web/status', json=current)
    assert put.status_code == 200 and put.json()['status'] == {'readyReplicas': 1} and put.json()['spec']['replicas'] == 3
    # PUT on the main resource replaces the spec, keeps status
    current = put.json()
    current['spec'] = {'replicas': 5}
    put = requests.put(f'{base}/web', json=current)
    assert put.json()['spec'] == {'replicas': 5} and put.json()['status'] == {'readyReplicas': 1}
    assert put.json()['metadata']['generation'] == generation + 1
    # status apply on a missing object is NotFound (only the main resource creates)
    assert requests.patch(f'{base}/nope/status', data='{}', headers=apply).status_code == 404


def test_namespace_from_path_and_deletion_cascade(server: str) -> None:
    requests.post(f'{server}/api/v1/namespaces', json={'metadata': {'name': 'cascade'}})
    base = f'{server}/apis/coordination.k8s.io/v1/namespaces/cascade/leases'
    lease = requests.post(base, json={'metadata': {'name': 'leader'}, 'spec': {'holderIdentity': 'a'}})
    assert lease.status_code == 201 and lease.json()['metadata']['namespace'] == 'cascade'
    mismatch = requests.post(base, json={'metadata': {'name': 'x', 'namespace': 'other'}})
    assert mismatch.status_code == 400
    assert requests.delete(f'{server}/api/v1/namespaces/cascade').status_code == 200
    assert requests.get(f'{base}/leader').status_code == 404
