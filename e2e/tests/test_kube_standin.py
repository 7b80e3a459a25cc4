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
import yaml

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / 'fixtures'
STANDIN = HERE.parent / 'kube_standin.py'
KUBECTL = shutil.which('kubectl')
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason='kubectl not installed')


@pytest.fixture(scope='module')
def server_log(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp('standin') / 'standin.log'


@pytest.fixture(scope='module')
def server(server_log: pathlib.Path) -> Iterator[str]:
    tmp = server_log.parent
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

    # YAML works for apply too (another manager: it takes spec.replicas over with force)
    yaml_body = 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n'
    r = requests.patch(f'{base}/web', params={'fieldManager': 'yaml', 'force': 'true'}, data=yaml_body, headers=apply)
    assert r.json()['spec']['replicas'] == 2
    # apply needs a field manager (PatchOptions validation)
    r = requests.patch(f'{base}/web', data=yaml_body, headers=apply)
    assert r.status_code == 422 and 'fieldManager: Required value' in r.json()['message']

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
                                                               'status': {'readyReplicas': 3}}), headers=apply,
                        params={'fieldManager': 'test'})
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
    assert requests.patch(f'{base}/nope/status', data='{}', headers=apply, params={'fieldManager': 'test'}).status_code == 404


def test_namespace_from_path_and_deletion_cascade(server: str) -> None:
    requests.post(f'{server}/api/v1/namespaces', json={'metadata': {'name': 'cascade'}})
    base = f'{server}/apis/coordination.k8s.io/v1/namespaces/cascade/leases'
    lease = requests.post(base, json={'metadata': {'name': 'leader'}, 'spec': {'holderIdentity': 'a'}})
    assert lease.status_code == 201 and lease.json()['metadata']['namespace'] == 'cascade'
    mismatch = requests.post(base, json={'metadata': {'name': 'x', 'namespace': 'other'}})
    assert mismatch.status_code == 400
    assert requests.delete(f'{server}/api/v1/namespaces/cascade').status_code == 200
    assert requests.get(f'{base}/leader').status_code == 404


# ---------------------------------------------------------------------------
# What a real API server refuses or does on its own (issue 14): each test names the
# Kubernetes documentation it follows.

SPROCKETS = '/apis/vantage.dev/v1alpha1/namespaces/default/sprockets'
APPLY = {'Content-Type': 'application/apply-patch+yaml'}
MERGE = {'Content-Type': 'application/merge-patch+json'}


def sprocket(name: str, **spec: Any) -> dict[str, Any]:
    return {'apiVersion': 'vantage.dev/v1alpha1', 'kind': 'Sprocket', 'metadata': {'name': name},
            'spec': dict({'teeth': 12, 'kind': 'spur'}, **spec)}


@pytest.fixture(scope='module')
def sprockets(server: str) -> str:
    crd = yaml.safe_load((FIXTURES / 'sprocket-crd.yaml').read_text())
    r = requests.post(f'{server}/apis/apiextensions.k8s.io/v1/customresourcedefinitions', json=crd)
    assert r.status_code == 201, r.text
    return server + SPROCKETS


def causes(r: requests.Response) -> dict[str, str]:
    body = r.json()
    assert r.status_code == 422 and body['reason'] == 'Invalid', r.text
    return {c['field']: c['message'] for c in body['details']['causes']}


def test_schema_types_required_enum_bounds_and_patterns_are_enforced(sprockets: str) -> None:
    """https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
    -- OpenAPI v3 value validations refuse the object with 422 Invalid; the Status names every
    field in details.causes (https://kubernetes.io/docs/reference/using-api/api-concepts/#responses
    and the StatusCause of meta/v1)."""
    missing = requests.post(sprockets, json={'apiVersion': 'vantage.dev/v1alpha1', 'kind': 'Sprocket',
                                             'metadata': {'name': 's-missing'}, 'spec': {'kind': 'spur'}})
    assert causes(missing) == {'spec.teeth': 'Required value'}
    body = missing.json()
    assert body['message'] == 'Sprocket.vantage.dev "s-missing" is invalid: spec.teeth: Required value'
    assert body['details']['kind'] == 'Sprocket' and body['details']['group'] == 'vantage.dev'
    assert body['details']['causes'][0]['reason'] == 'FieldValueRequired'

    cases = [
        ({'teeth': 'twelve'}, 'spec.teeth', 'Invalid value: "string": spec.teeth in body must be of type integer: "string"'),
        ({'teeth': 2}, 'spec.teeth', 'Invalid value: 2: spec.teeth in body should be greater than or equal to 3'),
        ({'teeth': 201}, 'spec.teeth', 'Invalid value: 201: spec.teeth in body should be less than or equal to 200'),
        ({'kind': 'worm'}, 'spec.kind', 'Unsupported value: "worm": supported values: "spur", "chain", "bevel"'),
        ({'label': 'x' * 9}, 'spec.label', 'Too long: may not be more than 8 bytes'),
        ({'label': ''}, 'spec.label', 'Invalid value: "": spec.label in body should be at least 1 chars long'),
        ({'label': 'Bad_1'}, 'spec.label', 'Invalid value: "Bad_1": spec.label in body should match \'^[a-z][a-z0-9-]*$\''),
        ({'tags': []}, 'spec.tags', 'Invalid value: 0: spec.tags in body should have at least 1 items'),
        ({'tags': ['a', 'b', 'c', 'd']}, 'spec.tags', 'Too many: 4: must have at most 3 items'),
        ({'width': True}, 'spec.width', 'Invalid value: "boolean": spec.width in body must be of type integer or string: "boolean"'),
        ({'ratio': 'fast'}, 'spec.ratio', 'Invalid value: "string": spec.ratio in body must be of type number: "string"'),
    ]
    for i, (spec, field, message) in enumerate(cases):
        r = requests.post(sprockets, json=sprocket(f's-bad-{i}', **spec))
        assert r.status_code == 422, r.text
        assert {'field': field, 'message': message} in [
            {'field': c['field'], 'message': c['message']} for c in r.json()['details']['causes']], (spec, r.text)
    several = requests.post(sprockets, json=sprocket('s-several', teeth=1, kind='worm'))
    assert set(causes(several)) == {'spec.teeth', 'spec.kind'}
    assert several.json()['message'].startswith('Sprocket.vantage.dev "s-several" is invalid: [')

    # what the schema allows: int-or-string both ways, nullable null, a valid everything
    for i, width in enumerate((3, '50%')):
        r = requests.post(sprockets, json=sprocket(f's-width-{i}', width=width, note=None, label='ok-1', tags=['a']))
        assert r.status_code == 201, r.text
        assert r.json()['spec']['width'] == width and r.json()['spec']['note'] is None


def test_unknown_fields_are_pruned_and_defaults_applied(sprockets: str) -> None:
    """https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning,
    #defaulting and #defaulting-and-nullable; fieldValidation (Strict refuses, Warn warns):
    https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation"""
    r = requests.post(sprockets, json=dict(sprocket('s-prune', color=None, extra={'anything': {'goes': [1]}},
                                                    bogus=1, mounting={'torque': 'high', 'rust': True}), junk={'a': 1}))
    assert r.status_code == 201, r.text
    obj = r.json()
    assert 'junk' not in obj and 'bogus' not in obj['spec']
    assert 'color' not in obj['spec']  # a null in a non-nullable field without default is pruned
    assert obj['spec']['extra'] == {'anything': {'goes': [1]}}  # x-kubernetes-preserve-unknown-fields
    assert obj['spec']['ratio'] == 1.5  # default
    assert obj['spec']['mounting'] == {'torque': 'high', 'bolts': 4}  # nested default, unknown 'rust' pruned
    warnings = r.headers.get('Warning', '')
    assert 'unknown field \\"spec.bogus\\"' in warnings and 'unknown field \\"junk\\"' in warnings, warnings
    # a default object is defaulted inside too
    assert requests.post(sprockets, json=sprocket('s-default')).json()['spec']['mounting'] == {'bolts': 4}
    strict = requests.post(sprockets, params={'fieldValidation': 'Strict'}, json=sprocket('s-strict', bogus=1))
    assert strict.status_code == 400 and strict.json()['reason'] == 'BadRequest'
    assert 'strict decoding error: unknown field "spec.bogus"' in strict.json()['message']
    ignore = requests.post(sprockets, params={'fieldValidation': 'Ignore'}, json=sprocket('s-ignore', bogus=1))
    assert ignore.status_code == 201 and 'Warning' not in ignore.headers and 'bogus' not in ignore.json()['spec']


def test_cel_rules_self_old_self_messages_and_field_paths(sprockets: str) -> None:
    """https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    (message, messageExpression, reason, fieldPath) and #transition-rules (oldSelf: only on
    updates, where an old value exists)."""
    r = requests.post(sprockets, json=sprocket('s-rpm', min_rpm=100, max_rpm=50))
    assert r.json()['details']['causes'] == [{'reason': 'FieldValueInvalid', 'field': 'spec.max_rpm',
                                              'message': 'Invalid value: "object": max_rpm must be at least min_rpm'}]
    r = requests.post(sprockets, json=sprocket('s-chain', kind='chain'))
    assert causes(r) == {'spec.chain': 'Required value: a chain sprocket needs spec.chain'}  # messageExpression
    assert r.json()['details']['causes'][0]['reason'] == 'FieldValueRequired'
    # the transition rule is not evaluated on create; on update it is
    created = requests.post(sprockets, json=sprocket('s-grow', teeth=10))
    assert created.status_code == 201, created.text
    shrink = requests.patch(f'{sprockets}/s-grow', data=json.dumps({'spec': {'teeth': 9}}), headers=MERGE)
    assert causes(shrink) == {'spec': 'Invalid value: "object": teeth may only grow'}
    grow = requests.patch(f'{sprockets}/s-grow', data=json.dumps({'spec': {'teeth': 11}}), headers=MERGE)
    assert grow.status_code == 200 and grow.json()['spec']['teeth'] == 11


@needs_kubectl
def test_kubectl_shows_the_cel_message(sprockets: str, kubectl) -> None:
    """kubectl prints the API server's Invalid status: ``The Sprocket "x" is invalid: field: message``."""
    out = kubectl('apply', '-f', '-', input=json.dumps(sprocket('s-kubectl', kind='chain')), check=False)
    assert out.returncode != 0
    assert 'The Sprocket "s-kubectl" is invalid: spec.chain: Required value: a chain sprocket needs spec.chain' in out.stderr, out.stderr


def test_unsupported_cel_rule_is_listed_at_registration_and_refused(sprockets: str, server_log: pathlib.Path) -> None:
    """Rules the CEL library cannot evaluate (here isURL, of the Kubernetes URL library:
    https://kubernetes.io/docs/reference/using-api/cel/#kubernetes-url-library) are never
    passed silently: listed at registration, and a write that needs one is refused."""
    log = server_log.read_text()
    assert 'UNSUPPORTED CEL rule in CRD sprockets.vantage.dev version v1alpha1 at spec.homepage' in log, log
    assert "'isURL(self)'" in log
    r = requests.post(sprockets, json=sprocket('s-url', homepage='https://example.com'))
    cause = r.json()['details']['causes'][0]
    assert r.status_code == 422 and cause['field'] == 'spec.homepage' and cause['reason'] == 'InternalError'
    assert 'cannot evaluate' in cause['message']
    assert requests.post(sprockets, json=sprocket('s-no-url')).status_code == 201  # the rule is not needed


def test_namespaces_must_exist(server: str, sprockets: str) -> None:
    """https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#namespacelifecycle:
    no object in a namespace that does not exist (404 NotFound for the namespace)."""
    r = requests.post(f'{server}/api/v1/namespaces/ghost/configmaps', json={'metadata': {'name': 'c'}})
    assert r.status_code == 404 and r.json()['message'] == 'namespaces "ghost" not found'
    assert r.json()['details'] == {'name': 'ghost', 'kind': 'namespaces'}
    r = requests.post(sprockets.replace('/default/', '/ghost/'), json=sprocket('x'))
    assert r.status_code == 404 and r.json()['message'] == 'namespaces "ghost" not found'  # custom resources too
    names = {n['metadata']['name'] for n in requests.get(f'{server}/api/v1/namespaces').json()['items']}
    assert {'default', 'kube-system', 'kube-public'} <= names
    # namespace names are RFC 1123 labels
    bad = requests.post(f'{server}/api/v1/namespaces', json={'metadata': {'name': 'Not_A_Label'}})
    assert bad.status_code == 422 and 'a lowercase RFC 1123 label' in bad.json()['message']


@needs_kubectl
def test_kubectl_create_namespace(server: str, kubectl) -> None:
    """``kubectl create namespace`` sends protobuf (application/vnd.kubernetes.protobuf) and accepts JSON back."""
    out = kubectl('create', 'namespace', 'made-by-kubectl')
    assert out.stdout.strip() == 'namespace/made-by-kubectl created'
    ns = requests.get(f'{server}/api/v1/namespaces/made-by-kubectl').json()
    assert ns['status']['phase'] == 'Active' and ns['metadata']['uid']
    kubectl('create', 'configmap', 'made', '-n', 'made-by-kubectl', '--from-literal=a=b')
    assert requests.get(f'{server}/api/v1/namespaces/made-by-kubectl/configmaps/made').json()['data'] == {'a': 'b'}
    again = kubectl('create', 'namespace', 'made-by-kubectl', check=False)
    assert again.returncode != 0 and 'AlreadyExists' in again.stderr


def managers(obj: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(m['manager'], m['operation'], m.get('subresource', '')): m['fieldsV1']
            for m in obj['metadata'].get('managedFields', [])}


def test_server_side_apply_owns_fields_per_manager(sprockets: str) -> None:
    """https://kubernetes.io/docs/reference/using-api/server-side-apply/: managedFields per
    manager (FieldsV1), a field an applier stops sending is removed unless another manager
    owns it, changing another manager's field is a 409 conflict unless force=true."""
    url = f'{sprockets}/s-ssa'

    def apply(manager: str, body: dict[str, Any], sub: str = '', force: bool = False) -> requests.Response:
        params = {'fieldManager': manager, **({'force': 'true'} if force else {})}
        return requests.patch(url + sub, params=params, data=json.dumps(body), headers=APPLY)

    a = apply('alice', sprocket('s-ssa', label='one', color='red'))
    assert a.status_code == 201, a.text
    fields = managers(a.json())[('alice', 'Apply', '')]
    assert fields == {'f:spec': {'f:color': {}, 'f:kind': {}, 'f:label': {}, 'f:teeth': {}}}
    b = apply('bob', {'apiVersion': 'vantage.dev/v1alpha1', 'kind': 'Sprocket', 'metadata': {'name': 's-ssa'},
                      'spec': {'teeth': 12, 'kind': 'spur', 'tags': ['x']}})
    assert b.status_code == 200, b.text  # same values for teeth/kind: shared, no conflict
    # alice stops sending label and tags-less color: label goes, teeth/kind stay (bob owns them too)
    a = apply('alice', {'apiVersion': 'vantage.dev/v1alpha1', 'kind': 'Sprocket', 'metadata': {'name': 's-ssa'},
                        'spec': {'color': 'red'}})
    assert a.status_code == 200, a.text
    spec = a.json()['spec']
    assert 'label' not in spec and spec['teeth'] == 12 and spec['kind'] == 'spur' and spec['tags'] == ['x']
    # bob changing alice's color: conflict, then force takes it over
    body = {'apiVersion': 'vantage.dev/v1alpha1', 'kind': 'Sprocket', 'metadata': {'name': 's-ssa'},
            'spec': {'teeth': 12, 'kind': 'spur', 'tags': ['x'], 'color': 'blue'}}
    c = apply('bob', body)
    assert c.status_code == 409 and c.json()['reason'] == 'Conflict', c.text
    assert c.json()['message'] == 'Apply failed with 1 conflict: conflict with "alice" using vantage.dev/v1alpha1: .spec.color'
    assert c.json()['details']['causes'][0] == {'reason': 'FieldManagerConflict', 'field': '.spec.color',
                                                'message': 'conflict with "alice" using vantage.dev/v1alpha1'}
    f = apply('bob', body, force=True)
    assert f.status_code == 200 and f.json()['spec']['color'] == 'blue'
    assert 'f:color' not in managers(f.json()).get(('alice', 'Apply', ''), {}).get('f:spec', {})
    # a merge patch is an Update: its manager owns what it changed, others lose it
    m = requests.patch(url, params={'fieldManager': 'carol'}, data=json.dumps({'spec': {'tags': ['y']}}), headers=MERGE)
    assert managers(m.json())[('carol', 'Update', '')] == {'f:spec': {'f:tags': {}}}
    assert 'f:tags' not in managers(m.json())[('bob', 'Apply', '')]['f:spec']


def test_server_side_apply_on_status(sprockets: str) -> None:
    """Status by server-side apply, as the operator writes it: ``{apiVersion, kind, status}``
    to /status with force; a status field it stops sending (limitedBy) disappears; conditions,
    a map list keyed by type in this schema, are merged per key across managers; merge
    patches on /status keep working."""
    assert requests.post(sprockets, json=sprocket('s-status')).status_code == 201
    url = f'{sprockets}/s-status/status'
    params = {'fieldManager': 'vantage-operator', 'force': 'true'}

    def status(st: dict[str, Any], manager: str = 'vantage-operator') -> requests.Response:
        return requests.patch(url, params=dict(params, fieldManager=manager), headers=APPLY,
                              data=json.dumps({'apiVersion': 'vantage.dev/v1alpha1', 'kind': 'Sprocket', 'status': st}))

    r = status({'phase': 'Limited', 'limitedBy': 'max', 'conditions': [{'type': 'Ready', 'status': 'False'}]})
    assert r.status_code == 200 and r.json()['status']['limitedBy'] == 'max', r.text
    assert ('vantage-operator', 'Apply', 'status') in managers(r.json())
    r = status({'phase': 'Ongoing', 'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'Running'}]})
    assert r.json()['status'] == {'phase': 'Ongoing', 'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'Running'}]}
    # another manager's condition is merged by key and survives the operator's next apply
    assert status({'conditions': [{'type': 'Audited', 'status': 'True'}]}, manager='auditor').status_code == 200
    r = status({'phase': 'Ongoing', 'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'Running'}]})
    assert [c['type'] for c in r.json()['status']['conditions']] == ['Ready', 'Audited']
    # the main endpoint ignores status; a merge patch on /status still works (and null removes)
    generation = r.json()['metadata']['generation']
    m = requests.patch(url, params={'fieldManager': 'vantage-operator'}, headers=MERGE,
                       data=json.dumps({'status': {'observed': 3, 'phase': None}}))
    assert m.status_code == 200 and m.json()['status']['observed'] == 3 and 'phase' not in m.json()['status']
    assert m.json()['metadata']['generation'] == generation  # status writes do not bump generation
    # status is validated too
    bad = status({'conditions': [{'type': 'Ready', 'status': 'Maybe'}]})
    assert causes(bad) == {'status.conditions[0].status': 'Unsupported value: "Maybe": supported values: "True", "False", "Unknown"'}


def wait_gone(url: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(url).status_code == 404:
            return True
        time.sleep(0.05)
    return False


def test_garbage_collection_by_owner_references(server: str, sprockets: str) -> None:
    """https://kubernetes.io/docs/concepts/architecture/garbage-collection/#owners-dependents and
    https://kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/:
    background cascading deletion deletes dependents whose owners (matched by uid) are all gone;
    a dependent with another live owner only loses the reference; Orphan keeps dependents."""
    cms = f'{server}/api/v1/namespaces/default/configmaps'
    owner = requests.post(sprockets, json=sprocket('s-owner')).json()
    other = requests.post(cms, json={'metadata': {'name': 'gc-other-owner'}}).json()

    def ref(o: dict[str, Any], uid: str | None = None) -> dict[str, Any]:
        return {'apiVersion': o['apiVersion'], 'kind': o['kind'], 'name': o['metadata']['name'],
                'uid': uid or o['metadata']['uid']}
    requests.post(cms, json={'metadata': {'name': 'gc-dep', 'ownerReferences': [ref(owner)]}})
    requests.post(cms, json={'metadata': {'name': 'gc-two', 'ownerReferences': [ref(owner), ref(other)]}})
    assert requests.delete(f'{sprockets}/s-owner').status_code == 200
    assert wait_gone(f'{cms}/gc-dep'), 'the dependent was not garbage-collected'
    deadline = time.monotonic() + 5
    while requests.get(f'{cms}/gc-two').json()['metadata'].get('ownerReferences') != [ref(other)]:
        assert time.monotonic() < deadline, requests.get(f'{cms}/gc-two').json()
        time.sleep(0.05)
    # a reference whose uid does not match the object of that name counts as gone
    requests.post(cms, json={'metadata': {'name': 'gc-stale', 'ownerReferences': [ref(other, uid='00000000-dead')]}})
    assert wait_gone(f'{cms}/gc-stale')
    # Orphan: the dependent stays, without the reference
    requests.delete(f'{cms}/gc-two')
    lone = requests.post(cms, json={'metadata': {'name': 'gc-owner2'}}).json()
    requests.post(cms, json={'metadata': {'name': 'gc-orphan', 'ownerReferences': [ref(lone)]}})
    requests.delete(f'{cms}/gc-owner2', json={'propagationPolicy': 'Orphan'})
    time.sleep(0.6)
    orphan = requests.get(f'{cms}/gc-orphan')
    assert orphan.status_code == 200 and not orphan.json()['metadata'].get('ownerReferences')


def test_put_without_resource_version_is_refused_for_custom_resources(server: str, sprockets: str) -> None:
    """Custom resources have no unconditional update: a PUT must carry metadata.resourceVersion
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions; the API
    server answers 422 ``metadata.resourceVersion: Invalid value: 0x0: must be specified for an update``)."""
    created = requests.post(sprockets, json=sprocket('s-put')).json()
    body = sprocket('s-put', teeth=13)
    r = requests.put(f'{sprockets}/s-put', json=body)
    assert causes(r) == {'metadata.resourceVersion': 'Invalid value: 0x0: must be specified for an update'}
    body['metadata']['resourceVersion'] = created['metadata']['resourceVersion']
    assert requests.put(f'{sprockets}/s-put', json=body).json()['spec']['teeth'] == 13
    # built-in kinds (here a ConfigMap) allow unconditional updates
    cms = f'{server}/api/v1/namespaces/default/configmaps'
    requests.post(cms, json={'metadata': {'name': 'put-cm'}})
    assert requests.put(f'{cms}/put-cm', json={'metadata': {'name': 'put-cm'}, 'data': {'a': 'b'}}).status_code == 200


def test_generation_is_bumped_when_deletion_starts(sprockets: str) -> None:
    """Setting deletionTimestamp increments metadata.generation (API conventions, "Metadata":
    https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#metadata;
    finalizers: https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/).
    No finalizer may be added once deletion started."""
    body = sprocket('s-fin')
    body['metadata']['finalizers'] = ['vantage.dev/test']
    created = requests.post(sprockets, json=body).json()
    deleting = requests.delete(f'{sprockets}/s-fin').json()
    assert deleting['metadata']['deletionTimestamp']
    assert deleting['metadata']['generation'] == created['metadata']['generation'] + 1
    more = requests.patch(f'{sprockets}/s-fin', headers=MERGE,
                          data=json.dumps({'metadata': {'finalizers': ['vantage.dev/test', 'vantage.dev/late']}}))
    assert more.status_code == 422 and 'no new finalizers can be added' in more.text
    requests.patch(f'{sprockets}/s-fin', headers=MERGE, data=json.dumps({'metadata': {'finalizers': None}}))
    assert requests.get(f'{sprockets}/s-fin').status_code == 404


@needs_kubectl
def test_printer_columns_evaluate_jsonpath_filters(sprockets: str, kubectl) -> None:
    """https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#additional-printer-columns
    with the JSONPath filters of https://kubernetes.io/docs/reference/kubectl/jsonpath/."""
    assert requests.post(sprockets, json=sprocket('s-print', teeth=40)).status_code == 201
    requests.patch(f'{sprockets}/s-print/status', headers=MERGE, data=json.dumps({'status': {'conditions': [
        {'type': 'Scheduled', 'status': 'False', 'reason': 'Waiting'},
        {'type': 'Ready', 'status': 'True', 'reason': 'AllGood'}]}}))
    table = kubectl('get', 'sprockets', 's-print').stdout.splitlines()
    assert table[0].split() == ['NAME', 'TEETH', 'READY', 'REASON']
    assert table[1].split() == ['s-print', '40', 'True', 'AllGood']
