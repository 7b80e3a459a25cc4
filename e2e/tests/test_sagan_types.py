"""Every measurement type the probe runs parses with ripe.atlas.sagan to the values
the local servers gave.

Runs `vantage-probe measure --once` against servers started here on loopback: HTTP,
TLS (certificate made with openssl), a DNS responder on 127.77.0.53:53 and an SNTP
responder on 127.77.0.123:123 (binding ports below 1024 and raw sockets for
traceroute need root; the test is skipped otherwise). Needs no local stack.
"""

import http.server
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ripe.atlas.sagan import Result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vantage_e2e import BIN  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: ports 53/123 on loopback and raw sockets")

DNS_ADDR = "127.77.0.53"
NTP_ADDR = "127.77.0.123"
BODY = b"hello from vantage\n"


def measure(tmp_path: Path, definition: dict) -> dict:
    f = tmp_path / f"def-{definition['type']}-{time.monotonic_ns()}.json"
    f.write_text(json.dumps(definition))
    out = subprocess.run([str(BIN / "vantage-probe"), "measure", "--once", str(f), "--prb-id", "4242"],
                         check=True, capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout)
    assert result["prb_id"] == 4242
    assert result["type"] == definition["type"]
    assert len(result["result_id"]) == 36 and result["result_id"][14] == "7", result["result_id"]
    return result


def serve_forever(target):
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


@pytest.fixture(scope="module")
def dns_server():
    """Answers every A query with 192.0.2.1 (TTL 60), by hand on the wire."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((DNS_ADDR, 53))

    def loop():
        while True:
            try:
                q, peer = s.recvfrom(4096)
            except OSError:
                return
            qid = q[:2]
            # Question section: from byte 12 to the end of the first question.
            end = 12
            while q[end] != 0:
                end += q[end] + 1
            question = q[12:end + 5]
            header = qid + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.1")
            s.sendto(header + question + answer, peer)

    serve_forever(loop)
    yield DNS_ADDR
    s.close()


@pytest.fixture(scope="module")
def ntp_server():
    """A stratum-2 SNTP responder whose clock is right."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((NTP_ADDR, 123))

    def ntp_ts(t: float) -> bytes:
        t += 2208988800
        return struct.pack("!II", int(t), int((t % 1) * 2**32))

    def loop():
        while True:
            try:
                q, peer = s.recvfrom(512)
            except OSError:
                return
            t2 = time.time()
            head = struct.pack("!BBbb", (4 << 3) | 4, 2, 4, -20) + struct.pack("!II", 0x100, 0x200)
            refid = socket.inet_aton("192.0.2.123")
            pkt = head + refid + ntp_ts(t2 - 5) + q[40:48] + ntp_ts(t2) + ntp_ts(time.time())
            s.sendto(pkt, peer)

    serve_forever(loop)
    yield NTP_ADDR
    s.close()


@pytest.fixture(scope="module")
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.send_header("X-Path", self.path)
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *_):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_forever(srv.serve_forever)
    yield srv.server_address[1]
    srv.shutdown()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=vantage.test",
                    "-addext", "subjectAltName=DNS:vantage.test"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)

    def loop():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    try:
                        tls.recv(1)
                    except (OSError, ssl.SSLError):
                        pass
            except (OSError, ssl.SSLError):
                pass

    serve_forever(loop)
    yield lsock.getsockname()[1]
    lsock.close()


def test_ping(tmp_path):
    raw = measure(tmp_path, {"type": "ping", "target": "127.0.0.1", "packets": 3, "packet_interval": 200})
    r = Result.get(raw)
    assert r.packets_sent == 3 and r.packets_received == 3
    assert 0 < r.rtt_min <= r.rtt_max < 50


@pytest.mark.parametrize("protocol", ["ICMP", "UDP", "TCP"])
def test_traceroute(tmp_path, protocol):
    raw = measure(tmp_path, {"type": "traceroute", "target": "127.0.0.1", "protocol": protocol, "packets": 2, "port": 1,
                             "response_timeout": 1000})
    r = Result.get(raw)
    assert not r.is_error, raw
    assert r.protocol == protocol
    assert r.total_hops == 1
    assert r.destination_ip_responded
    assert [p.origin for p in r.hops[0].packets] == ["127.0.0.1", "127.0.0.1"]
    assert r.last_median_rtt is not None and r.last_median_rtt < 50
    assert r.paris_id == 16


def test_traceroute_dns_failure_is_dnserr(tmp_path):
    raw = measure(tmp_path, {"type": "traceroute", "target": "no-such-host.invalid", "resolve_on_probe": True})
    r = Result.get(raw)
    assert r.is_error
    assert "no-such-host.invalid" in raw["dnserr"]


def test_dns(tmp_path, dns_server):
    raw = measure(tmp_path, {"type": "dns", "target": dns_server, "query_argument": "vantage.test", "query_type": "A",
                             "set_rd_bit": True, "timeout": 2000})
    r = Result.get(raw)
    assert not r.is_error, raw
    resp = r.responses[0]
    assert resp.destination_address == dns_server
    assert resp.abuf.header.return_code == "NOERROR"
    assert resp.abuf.questions[0].name == "vantage.test."
    assert resp.abuf.answers[0].address == "192.0.2.1"
    assert resp.abuf.answers[0].ttl == 60
    assert resp.response_time > 0
    assert resp.qbuf.header.rd is True


def test_dns_timeout_is_an_error(tmp_path):
    # 127.77.0.54: nothing listens there, so the query is refused or times out.
    raw = measure(tmp_path, {"type": "dns", "target": "127.77.0.54", "query_argument": "vantage.test", "timeout": 300})
    r = Result.get(raw)
    assert r.is_error
    assert "error" in raw


def test_http(tmp_path, http_server):
    raw = measure(tmp_path, {"type": "http", "target": "127.0.0.1", "port": http_server, "path": "/x",
                             "query_string": "a=1", "timing_verbosity": 1, "header_bytes": 512})
    r = Result.get(raw)
    assert not r.is_error, raw
    assert r.uri == f"http://127.0.0.1:{http_server}/x?a=1"
    resp = r.responses[0]
    assert resp.code == 200
    assert resp.body_size == len(BODY)
    assert resp.version == "1.1"
    assert resp.head_size > 0
    assert any("/x?a=1" in h for h in raw["result"][0]["header"])


def test_http_refused_is_err(tmp_path):
    raw = measure(tmp_path, {"type": "http", "target": "127.0.0.1", "port": 1})
    r = Result.get(raw)
    assert r.responses[0].is_error
    assert "connect" in r.responses[0].error_message


def test_sslcert(tmp_path, tls_server):
    raw = measure(tmp_path, {"type": "sslcert", "target": "127.0.0.1", "port": tls_server, "hostname": "vantage.test"})
    r = Result.get(raw)
    assert not r.is_error, raw
    assert r.port == tls_server
    assert r.version in ("1.2", "1.3")
    assert r.certificates[0].common_name == "vantage.test"
    assert r.response_time >= r.time_to_connect > 0


def test_ntp(tmp_path, ntp_server):
    raw = measure(tmp_path, {"type": "ntp", "target": ntp_server, "packets": 3, "timeout": 1000})
    r = Result.get(raw)
    assert not r.is_error, raw
    assert r.stratum == 2
    assert r.reference_id == "192.0.2.123"
    assert r.leap_second_indicator == "no"
    assert len(r.packets) == 3
    for p in r.packets:
        assert 0 <= p.rtt < 0.05
        assert abs(p.offset) < 0.05


def test_ntp_silence_is_stars(tmp_path):
    raw = measure(tmp_path, {"type": "ntp", "target": "127.77.0.124", "packets": 2, "timeout": 200})
    assert all("x" in p for p in raw["result"]), raw
    Result.get(raw)
