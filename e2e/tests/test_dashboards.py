"""
Every ClickHouse panel of the Grafana dashboards the chart ships
(charts/vantage/dashboards/*.json) runs against the real ClickHouse and returns rows.

Run: CLICKHOUSE_URL=http://127.0.0.1:18123 .venv/bin/python -m pytest e2e/tests/test_dashboards.py
Without CLICKHOUSE_URL the test reads it from the local stack's env file
($VANTAGE_STACK_DIR/env, as `make e2e` leaves it); it is skipped only when neither is
there. The database is $CLICKHOUSE_DB, or a fresh one that the test drops again.

Each panel's SQL is expanded as the grafana-clickhouse-datasource plugin expands it
(pkg/macros/macros.go: `$__timeFilter(c)` -> `c >= toDateTime(from) AND c <= toDateTime(to)`,
`$__interval_s` -> seconds, ...), with the dashboard variables filled in; then it runs
over HTTP after the test inserted a few rows of its own.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from dashboards import CH_PLUGIN, DASHBOARDS, clickhouse_panels, expand, panels  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
STORE_RS = ROOT / 'platform' / 'src' / 'store' / 'migrations.rs'
STACK_ENV = pathlib.Path(os.environ.get('VANTAGE_STACK_DIR', '/tmp/vantage-stack')) / 'env'


def clickhouse_url() -> str:
    """$CLICKHOUSE_URL, else the running local stack's (as the other e2e tests find it)."""
    url = os.environ.get('CLICKHOUSE_URL', '')
    if not url and STACK_ENV.exists():
        m = re.search(r'^export CLICKHOUSE_URL=(\S+)$', STACK_ENV.read_text(), re.M)
        url = m.group(1) if m else ''
    return url.rstrip('/')


URL = clickhouse_url()

pytestmark = pytest.mark.skipif(not URL, reason='CLICKHOUSE_URL is unset and no local stack runs (e2e/stack/stack.sh up)')

def query(sql: str) -> str:
    req = urllib.request.Request(URL + '/', data=sql.encode(), method='POST')
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        raise AssertionError(f'ClickHouse refused:\n{sql}\n--> {e.read().decode().strip()}') from None


def rows(sql: str) -> list[dict[str, Any]]:
    out = query(sql.rstrip().rstrip(';') + '\nFORMAT JSONEachRow')
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def migrations() -> list[str]:
    """The statements of store::MIGRATIONS, in order, with `{db}` left in."""
    text = STORE_RS.read_text()
    body = text[text.index('pub const MIGRATIONS'):]
    body = body[:re.search(r'^\}?\];', body, re.M).start()]
    body = re.sub(r'^\s*//.*$', '', body, flags=re.M)  # comments may hold quotes
    statements = []
    for block in re.findall(r'statements:\s*&\[(.*?)\]\s*,\s*\}', body, re.S):
        statements += [s.replace('\\"', '"') for s in re.findall(r'"((?:[^"\\]|\\.)*)"', block, re.S)]
    assert statements, 'no migrations found in platform/src/store/migrations.rs'
    return statements


# --- data -------------------------------------------------------------------------------

PROBES = {  # prb_id -> (country, asn)
    910001: ('NL', 64500), 910002: ('NL', 64501), 910003: ('DE', 64510), 910004: ('US', 64520), 910005: ('', 64530),
}


@pytest.fixture(scope='module')
def database() -> Iterator[str]:
    own = not os.environ.get('CLICKHOUSE_DB')
    db = os.environ.get('CLICKHOUSE_DB') or f'vantage_dashboards_{uuid.uuid4().hex[:8]}'
    query(f'CREATE DATABASE IF NOT EXISTS {db}')
    try:
        for statement in migrations():
            query(statement.replace('{db}', db))
        # The RTT-by-country panels join `probes` (written by the operator from Probe specs).
        assert 'probes' in tables(db), 'the migrations create the probes table'
        yield db
    finally:
        if own:
            query(f'DROP DATABASE IF EXISTS {db}')


@pytest.fixture(scope='module')
def data(database: str) -> dict[str, int]:
    """A few results of the last half hour: pings from five probes, a traceroute and a dns."""
    now = int(time.time())
    msm = 990000000 + now % 1000000  # far from ids the operator hands out
    lines = []
    n = 0
    for i, (prb, (cc, _asn)) in enumerate(sorted(PROBES.items())):
        for k in range(6):
            ts = now - 1800 + k * 300 + i
            rtt = 10.0 + 20 * i + k
            rcvd = 3 if (i + k) % 5 else 2
            raw = {'type': 'ping', 'msm_id': msm, 'prb_id': prb, 'timestamp': ts, 'min': rtt - 1, 'avg': rtt, 'max': rtt + 1}
            lines.append({'result_id': str(uuid.uuid4()), 'msm_id': msm, 'prb_id': prb, 'type': 'ping',
                          'timestamp': ts, 'af': 4, 'fw': 5020, 'from_addr': f'192.0.2.{i + 1}',
                          'src_addr': f'192.0.2.{i + 1}', 'dst_addr': '198.51.100.7', 'dst_name': 'example.net',
                          'sent': 3, 'rcvd': rcvd, 'rtt_min': rtt - 1, 'rtt_avg': rtt, 'rtt_max': rtt + 1,
                          'raw': json.dumps(raw), 'inserted_at': ts + 1 + k})
            n += 1
    for kind in ('traceroute', 'dns'):
        ts = now - 600
        lines.append({'result_id': str(uuid.uuid4()), 'msm_id': msm + 1, 'prb_id': 910003, 'type': kind,
                      'timestamp': ts, 'af': 4, 'fw': 5020, 'from_addr': '192.0.2.3', 'src_addr': '192.0.2.3',
                      'dst_addr': '198.51.100.7', 'dst_name': 'example.net', 'sent': 0, 'rcvd': 0,
                      'rtt_min': -1, 'rtt_avg': -1, 'rtt_max': -1, 'raw': json.dumps({'type': kind}),
                      'inserted_at': ts + 2})
        n += 1
    query(f'INSERT INTO {database}.results FORMAT JSONEachRow\n' + '\n'.join(json.dumps(r) for r in lines))
    probes = [{'prb_id': p, 'country_code': cc, 'asn_v4': asn, 'updated_at': now} for p, (cc, asn) in PROBES.items()]
    query(f'INSERT INTO {database}.probes FORMAT JSONEachRow\n' + '\n'.join(json.dumps(r) for r in probes))
    if tables(database) >= {'fastpath'}:
        scored = []
        for i, (cc, test, anomaly, confirmed, failure) in enumerate([
                ('NL', 'web_connectivity', 0, 0, 0), ('NL', 'web_connectivity', 1, 1, 0),
                ('DE', 'dns_consistency', 1, 0, 0), ('', 'web_connectivity', 0, 0, 1)]):
            scored.append({'measurement_uid': f'20261121000000.000000_{cc or "ZZ"}_{test}_{i:016x}',
                           'report_id': f'r{i}', 'input': 'https://example.net/', 'probe_cc': cc, 'probe_asn': 64500 + i,
                           'test_name': test, 'test_start_time': now - 900, 'measurement_start_time': now - 900 + i,
                           'scores': '{}', 'anomaly': anomaly, 'confirmed': confirmed, 'msm_failure': failure,
                           'domain': 'example.net', 'software_name': 'test', 'software_version': '1',
                           'blocking_type': '', 'reason': ''})
        # the fastpath schema is young: send only the columns it has
        cols = {r['name'] for r in rows(f"SELECT name FROM system.columns WHERE database = '{database}' AND table = 'fastpath'")}
        query(f'INSERT INTO {database}.fastpath FORMAT JSONEachRow\n'
              + '\n'.join(json.dumps({k: v for k, v in r.items() if k in cols}) for r in scored))
    return {'now': now, 'results': n}


def tables(db: str) -> set[str]:
    return {r['name'] for r in rows(f"SELECT name FROM system.tables WHERE database = '{db}'")}


# --- tests ------------------------------------------------------------------------------

def test_dashboards_use_the_plugins_query_format() -> None:
    found = clickhouse_panels()
    assert len(found) >= 6, found
    for name, panel, target in found:
        where = f"{name}: {panel['title']}"
        assert target['editorType'] == 'sql' and target['rawSql'].strip(), where
        assert target['queryType'] in ('timeSeries', 'table'), where
        assert target['format'] == (0 if target['queryType'] == 'timeSeries' else 1), where
        assert target['datasource'] == {'type': CH_PLUGIN, 'uid': '${datasource}'}, where
    titles = {p['title'] for _, p, _ in found}
    assert {'Results per type', 'RTT by country', 'Ingest lag'} <= titles
    # the other panels are Prometheus; connected probes by controller is one of them
    prom = [p for path in DASHBOARDS.glob('*.json') for p in panels(json.loads(path.read_text()))
            if p.get('datasource', {}).get('type') == 'prometheus']
    assert any('vantage_controller_connected_probes' in t['expr'] and 'by (pod)' in t['expr']
               for p in prom for t in p['targets'])


@pytest.mark.parametrize('name, title', [(n, p['title']) for n, p, _ in clickhouse_panels()])
def test_panel_sql_returns_rows(name: str, title: str, database: str, data: dict[str, int]) -> None:
    (target,) = [t for n, p, t in clickhouse_panels() if n == name and p['title'] == title]
    missing = set(re.findall(r'\$\{database\}\.(\w+)', target['rawSql'])) - tables(database)
    assert not missing, (f'{name} / {title} reads tables {sorted(missing)} that no schema migration creates '
                         '(platform/src/store/migrations.rs): add the migration or fix the panel')
    sql = expand(target['rawSql'], db=database, start=data['now'] - 3600, end=data['now'] + 300, interval_s=60)
    got = rows(sql)
    assert got, f'no rows from {name} / {title}:\n{sql}'
    if target['queryType'] == 'timeSeries':
        assert list(got[0])[0] == 'time', f'time series panels start with a `time` column: {got[0]}'
    # spot checks on what the rows mean
    if title == 'Results per type':
        per_type: dict[str, int] = {}
        for r in got:
            per_type[r['type']] = per_type.get(r['type'], 0) + int(r['results'])
        assert per_type.get('ping', 0) >= 30 and per_type.get('traceroute') and per_type.get('dns')
    if title == 'RTT by country':
        by_cc = {r['country']: r for r in got}
        assert {'NL', 'DE', 'US', '??'} <= set(by_cc), by_cc
        assert int(by_cc['NL']['probes']) >= 2
        assert float(by_cc['NL']['median_rtt']) < float(by_cc['US']['median_rtt'])
    if title == 'Fastpath anomalies by country':
        by_cc = {r['country']: r for r in got}
        assert int(by_cc['NL']['anomalies']) == 1 and int(by_cc['NL']['confirmed']) == 1 and int(by_cc['??']['failures']) == 1
    if title == 'Ingest lag':
        assert all(float(r['max_lag']) >= float(r['avg_lag']) >= 0 for r in got)


def test_time_filter_excludes_rows_outside_the_range(database: str, data: dict[str, int]) -> None:
    (target,) = [t for _, p, t in clickhouse_panels() if p['title'] == 'Results per type']
    past = data['now'] - 10 * 86400
    assert rows(expand(target['rawSql'], db=database, start=past, end=past + 3600, interval_s=60)) == []


def test_expand_matches_the_plugin() -> None:
    sql = expand('SELECT 1 FROM ${database}.results WHERE $__timeFilter(timestamp) AND x > $__interval_s',
                 db='d', start=100, end=200, interval_s=30)
    assert sql == 'SELECT 1 FROM d.results WHERE timestamp >= toDateTime(100) AND timestamp <= toDateTime(200) AND x > 30'
    with pytest.raises(AssertionError, match='unexpanded'):
        expand('SELECT $__unknownMacro(x)', db='d', start=0, end=1, interval_s=1)
