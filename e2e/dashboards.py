"""The Grafana dashboards the chart ships (charts/vantage/dashboards/*.json): their
ClickHouse panels, and the panel SQL expanded as the grafana-clickhouse-datasource plugin
expands it (pkg/macros/macros.go), so tests can run it against the real ClickHouse."""
from __future__ import annotations

import json
import pathlib
import re
import time
from collections.abc import Iterator
from typing import Any

DASHBOARDS = pathlib.Path(__file__).resolve().parents[1] / 'charts' / 'vantage' / 'dashboards'
CH_PLUGIN = 'grafana-clickhouse-datasource'


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dashboard.get('panels', []):
        yield p
        yield from p.get('panels', [])  # collapsed rows


def clickhouse_panels() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard file, panel, target) for every ClickHouse query."""
    out = []
    for path in sorted(DASHBOARDS.glob('*.json')):
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get('targets', []):
                ds = target.get('datasource') or panel.get('datasource') or {}
                if ds.get('type') == CH_PLUGIN:
                    out.append((path.name, panel, target))
    return out


def expand(sql: str, *, db: str, start: int, end: int, interval_s: int) -> str:
    """Grafana variables, then the plugin's macros, as the plugin's backend expands them."""
    sql = sql.replace('${database}', db).replace('$database', db)

    def time_filter(m: re.Match[str]) -> str:
        col = m.group(1).strip()
        return f'{col} >= toDateTime({start}) AND {col} <= toDateTime({end})'

    def time_filter_ms(m: re.Match[str]) -> str:
        col = m.group(1).strip()
        return f'{col} >= fromUnixTimestamp64Milli({start * 1000}) AND {col} <= fromUnixTimestamp64Milli({end * 1000})'

    def date_filter(m: re.Match[str]) -> str:
        col = m.group(1).strip()
        day = lambda t: time.strftime('%Y-%m-%d', time.gmtime(t))  # noqa: E731
        return f"{col} >= toDate('{day(start)}') AND {col} <= toDate('{day(end)}')"

    def time_interval(m: re.Match[str]) -> str:
        return f'toStartOfInterval(toDateTime({m.group(1).strip()}), INTERVAL {interval_s} second)'

    sql = re.sub(r'\$__timeFilter_ms\(([^)]*)\)', time_filter_ms, sql)
    sql = re.sub(r'\$__timeFilter\(([^)]*)\)', time_filter, sql)
    sql = re.sub(r'\$__dateFilter\(([^)]*)\)', date_filter, sql)
    sql = re.sub(r'\$__timeInterval\(([^)]*)\)', time_interval, sql)
    sql = sql.replace('$__fromTime_ms', f'fromUnixTimestamp64Milli({start * 1000})')
    sql = sql.replace('$__toTime_ms', f'fromUnixTimestamp64Milli({end * 1000})')
    sql = sql.replace('$__fromTime', f'toDateTime({start})').replace('$__toTime', f'toDateTime({end})')
    sql = sql.replace('$__interval_s', str(interval_s))
    leftover = re.findall(r'\$\{?\w+', sql)
    assert not leftover, f'unexpanded macros or variables {leftover} in:\n{sql}'
    return sql
