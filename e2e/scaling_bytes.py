#!/usr/bin/env python3
"""Bytes on disk per stored ping result in vantage's ClickHouse schema.

Inserts N RIPE Atlas-style ping results (the `results` row with its raw JSON, and the
typed `ping_results` row, as the collector writes them) into a ClickHouse whose schema
`vantage migrate` created, merges the parts (OPTIMIZE ... FINAL: the steady state of a
month partition), and prints system.parts' bytes per row for each table.

    source /tmp/vstack-chart/env
    CLICKHOUSE_DB=vantage target/debug/vantage migrate
    python3 scaling_bytes_per_result.py 1000000

Realistic variance: 10,000 probes (own public and private address, own base RTT),
the 26 root-server targets of the built-in pings (one measurement id each), 3 packets,
RTTs with RIPE's 3 decimals and jitter, UUIDv7 result ids, the interval of the built-in
ping (240 s) spread over the interval.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
import urllib.request
import uuid

CH = os.environ.get('CLICKHOUSE_URL', 'http://127.0.0.1:18123')
DB = os.environ.get('CLICKHOUSE_DB', 'vantage')
TARGETS = ['198.41.0.4', '170.247.170.2', '192.33.4.12', '199.7.91.13', '192.203.230.10', '192.5.5.241',
           '192.112.36.4', '198.97.190.53', '192.36.148.17', '192.58.128.30', '193.0.14.129', '199.7.83.42',
           '202.12.27.33', '2001:503:ba3e::2:30', '2801:1b8:10::b', '2001:500:2::c', '2001:500:2d::d',
           '2001:500:a8::e', '2001:500:2f::f', '2001:500:12::d0d', '2001:500:1::53', '2001:7fe::53',
           '2001:503:c27::2:30', '2001:7fd::1', '2001:500:9f::42', '2001:dc3::35']
NAMES = 'abcdefghijklm'


def q(sql: str, body: bytes | None = None) -> str:
    url = f'{CH}/?query=' + urllib.parse.quote(sql) if body is not None else f'{CH}/'
    data = body if body is not None else sql.encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=600) as r:
        return r.read().decode()


def uuid7(ts_ms: int) -> str:
    rnd = random.getrandbits(74)
    v = (ts_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rnd >> 62) << 64 | 0b10 << 62 | (rnd & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    random.seed(20)
    probes = []
    for p in range(10_000):
        probes.append((10_000 + p, f'{random.randint(1, 223)}.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}',
                       f'192.168.{random.randint(0, 255)}.{random.randint(1, 254)}', random.uniform(2, 180),
                       f'2001:db8:{random.getrandbits(16):x}:{random.getrandbits(16):x}::{random.getrandbits(16):x}'))
    for t in ('results', 'ping_results'):
        q(f'TRUNCATE TABLE {DB}.{t}')
    t0 = 1_796_000_000
    batch_r: list[str] = []
    batch_p: list[str] = []
    start = time.monotonic()
    i = 0
    rnd = 0
    while i < n:
        for k, dst in enumerate(TARGETS):
            af = 6 if ':' in dst else 4
            msm = 1_000 + k
            for prb, pub, priv, base, pub6 in probes:
                if i >= n:
                    break
                ts = t0 + rnd * 240 + (prb * 7 + k * 13) % 240
                lost = random.random() < 0.02
                rtts = [] if lost else [round(base + random.expovariate(1 / 1.5), 3) for _ in range(3)]
                rcvd = len(rtts)
                rmin, ravg, rmax = (min(rtts), round(sum(rtts) / 3, 3), max(rtts)) if rtts else (-1.0, -1.0, -1.0)
                rid = uuid7(ts * 1000 + random.randint(0, 999))
                raw = {'fw': 5080, 'lts': random.randint(1, 60), 'mver': '2.6.2', 'result_id': rid, 'msm_id': msm,
                       'prb_id': prb, 'timestamp': ts, 'type': 'ping', 'af': af,
                       'from': pub6 if af == 6 else pub, 'src_addr': pub6 if af == 6 else priv,
                       'dst_addr': dst, 'dst_name': f'{NAMES[k % 13]}.root-servers.net', 'proto': 'ICMP',
                       'ttl': random.randint(48, 60), 'size': 48, 'step': 240, 'sent': 3, 'rcvd': rcvd, 'dup': 0,
                       'min': rmin, 'avg': ravg, 'max': rmax,
                       'result': [{'rtt': r} for r in rtts] if rtts else [{'x': '*'}] * 3}
                raw_s = json.dumps(raw, separators=(',', ':'))
                common = {'result_id': rid, 'msm_id': msm, 'prb_id': prb, 'timestamp': ts, 'af': af, 'dst_addr': dst,
                          'sent': 3, 'rcvd': rcvd, 'rtt_min': rmin, 'rtt_avg': ravg, 'rtt_max': rmax,
                          'inserted_at': ts + random.randint(1, 3)}
                batch_r.append(json.dumps({**common, 'type': 'ping', 'fw': 5080, 'from_addr': raw['from'],
                                           'src_addr': raw['src_addr'], 'dst_name': raw['dst_name'], 'raw': raw_s}))
                batch_p.append(json.dumps({**common, 'loss': 100.0 * (3 - rcvd) / 3, 'rtts': rtts}))
                i += 1
                if len(batch_r) >= 50_000:
                    q(f'INSERT INTO {DB}.results FORMAT JSONEachRow', '\n'.join(batch_r).encode())
                    q(f'INSERT INTO {DB}.ping_results FORMAT JSONEachRow', '\n'.join(batch_p).encode())
                    batch_r.clear()
                    batch_p.clear()
        rnd += 1
    if batch_r:
        q(f'INSERT INTO {DB}.results FORMAT JSONEachRow', '\n'.join(batch_r).encode())
        q(f'INSERT INTO {DB}.ping_results FORMAT JSONEachRow', '\n'.join(batch_p).encode())
    print(f'inserted {n} results in {time.monotonic() - start:.1f} s')
    for t in ('results', 'ping_results'):
        q(f'OPTIMIZE TABLE {DB}.{t} FINAL')
    print(q(f"SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS disk, sum(data_compressed_bytes) AS comp, "
            f"sum(data_uncompressed_bytes) AS uncomp, round(disk / rows, 1) AS disk_per_row, "
            f"round(uncomp / comp, 2) AS ratio FROM system.parts WHERE database = '{DB}' AND active "
            f"AND table IN ('results', 'ping_results') GROUP BY table ORDER BY table FORMAT PrettyCompactNoEscapes"))
    print(q(f"SELECT table, name, sum(data_compressed_bytes) AS comp, round(comp / {n}, 1) AS per_row "
            f"FROM system.columns WHERE database = '{DB}' AND table = 'results' GROUP BY table, name ORDER BY comp DESC "
            f"FORMAT PrettyCompactNoEscapes"))
    return 0




def traceroute(n: int) -> None:
    """`python3 scaling_bytes_per_result.py traceroute 200000`: the same for traceroutes
    (the `results` row with its raw JSON and one `traceroute_hops` row per hop)."""
    random.seed(21)
    ip = lambda: f'{random.randint(1, 223)}.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}'  # noqa: E731
    probes = [(10_000 + p, ip(), f'192.168.{random.randint(0, 255)}.1', [ip() for _ in range(3)], random.uniform(2, 40))
              for p in range(10_000)]
    transit = {dst: [ip() for _ in range(40)] for dst in TARGETS[:13]}
    for t in ('results', 'traceroute_hops'):
        q(f'TRUNCATE TABLE {DB}.{t}')
    t0 = 1_796_000_000
    br: list[str] = []
    bh: list[str] = []
    i = rnd = 0
    start = time.monotonic()
    while i < n:
        for k, dst in enumerate(TARGETS[:13]):
            for prb, pub, gw, isp, base in probes:
                if i >= n:
                    break
                ts = t0 + rnd * 1800 + (prb * 7 + k * 13) % 1800
                rid = uuid7(ts * 1000 + random.randint(0, 999))
                nh = random.randint(8, 16)
                path = [gw] + isp + random.sample(transit[dst], nh - 5) + [dst]
                hops = []
                rtt = base
                for h, addr in enumerate(path, start=1):
                    rtt += random.uniform(0.2, 6)
                    if random.random() < 0.08:
                        pk = [{'x': '*'}] * 3
                    else:
                        pk = [{'from': addr, 'rtt': round(rtt + random.expovariate(1), 3), 'size': 28,
                               'ttl': 255 - h} for _ in range(3)]
                    hops.append({'hop': h, 'result': pk})
                raw = {'fw': 5080, 'lts': random.randint(1, 60), 'endtime': ts + 4, 'from': pub, 'msm_id': 5_000 + k,
                       'prb_id': prb, 'paris_id': rnd % 16, 'proto': 'ICMP', 'af': 4, 'dst_addr': dst,
                       'dst_name': dst, 'src_addr': '192.168.1.10', 'size': 48, 'timestamp': ts,
                       'type': 'traceroute', 'result_id': rid, 'result': hops}
                ins = ts + random.randint(5, 9)
                br.append(json.dumps({'result_id': rid, 'msm_id': 5_000 + k, 'prb_id': prb, 'type': 'traceroute',
                                      'timestamp': ts, 'af': 4, 'fw': 5080, 'from_addr': pub,
                                      'src_addr': '192.168.1.10', 'dst_addr': dst, 'dst_name': dst, 'sent': 0,
                                      'rcvd': 0, 'rtt_min': 0, 'rtt_avg': 0, 'rtt_max': 0,
                                      'raw': json.dumps(raw, separators=(',', ':')), 'inserted_at': ins}))
                for hop in hops:
                    rtts = [p['rtt'] for p in hop['result'] if 'rtt' in p]
                    bh.append(json.dumps({'result_id': rid, 'msm_id': 5_000 + k, 'prb_id': prb, 'timestamp': ts,
                                          'af': 4, 'dst_addr': dst, 'kind': 'traceroute', 'hop': hop['hop'],
                                          'responders': sorted({p['from'] for p in hop['result'] if 'from' in p}),
                                          'rtts': rtts, 'timeouts': 3 - len(rtts), 'err': '', 'mtu': 0,
                                          'inserted_at': ins}))
                i += 1
                if len(br) >= 20_000:
                    q(f'INSERT INTO {DB}.results FORMAT JSONEachRow', '\n'.join(br).encode())
                    q(f'INSERT INTO {DB}.traceroute_hops FORMAT JSONEachRow', '\n'.join(bh).encode())
                    br.clear()
                    bh.clear()
        rnd += 1
    if br:
        q(f'INSERT INTO {DB}.results FORMAT JSONEachRow', '\n'.join(br).encode())
        q(f'INSERT INTO {DB}.traceroute_hops FORMAT JSONEachRow', '\n'.join(bh).encode())
    print(f'inserted {n} traceroutes in {time.monotonic() - start:.1f} s')
    for t in ('results', 'traceroute_hops'):
        q(f'OPTIMIZE TABLE {DB}.{t} FINAL')
    print(q(f"SELECT table, sum(rows) AS rows, sum(bytes_on_disk) AS disk, sum(data_uncompressed_bytes) AS uncomp, "
            f"round(disk / {n}, 1) AS disk_per_result, round(uncomp / sum(data_compressed_bytes), 2) AS ratio "
            f"FROM system.parts WHERE database = '{DB}' AND active AND table IN ('results', 'traceroute_hops') "
            f"GROUP BY table ORDER BY table FORMAT PrettyCompactNoEscapes"))


if __name__ == '__main__':
    import urllib.parse  # noqa: E402
    if len(sys.argv) > 1 and sys.argv[1] == 'traceroute':
        traceroute(int(sys.argv[2]) if len(sys.argv) > 2 else 200_000)
    else:
        sys.exit(main())
