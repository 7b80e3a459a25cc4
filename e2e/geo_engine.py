#!/usr/bin/env python3
"""A geolocation engine outside vantage, in Python with the standard library only.

It speaks the external-engine protocol of docs/GEOLOCATION.md (version 1) over HTTP
(`POST /` with {"version": 1, "ip": ...}) and/or NATS (a request on a subject; the
NATS client protocol is plain text, so no client library is needed).

    geo_engine.py [--http] [--nats nats://127.0.0.1:4222 --subject geo.engine.py]

Answers: Amsterdam (GeoNames 2759794) with score 8 and a point near Frankfurt with
score 4 for every address, except 1.1.1.1, for which it answers something that is not
the protocol (to show that bad replies are dropped and counted). Prints
`http <port>` and `nats <subject>` once ready.
"""

import argparse
import json
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BAD_IP = "1.1.1.1"


def answer(request: bytes) -> bytes:
    req = json.loads(request)
    if req.get("version") != 1:
        return json.dumps({"candidates": []}).encode()
    if req.get("ip") == BAD_IP:
        return b"this is not JSON"
    return json.dumps({"candidates": [
        {"cityId": 2759794, "score": 8},
        {"latitude": 50.11, "longitude": 8.68, "score": 4},
        {"cityId": 2759794, "score": 0},  # zero: dropped by vantage
    ]}).encode()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        out = answer(body)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def serve_nats(url: str, subject: str):
    u = urllib.parse.urlparse(url)
    sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222))
    f = sock.makefile("rb")
    f.readline()  # INFO {...}
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"name":"py-geo-engine","lang":"python","protocol":1}\r\n'
                 + f"SUB {subject} 1\r\nPING\r\n".encode())
    ready = False
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("NATS closed the connection")
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
        elif line.startswith(b"PONG") and not ready:
            ready = True
            print(f"nats {subject}", flush=True)
        elif line.startswith(b"MSG"):
            parts = line.split()
            # MSG <subject> <sid> [reply-to] <#bytes>
            size = int(parts[-1])
            reply = parts[3].decode() if len(parts) == 5 else None
            payload = f.read(size + 2)[:size]
            if reply:
                out = answer(payload)
                sock.sendall(f"PUB {reply} {len(out)}\r\n".encode() + out + b"\r\n")
        elif line.startswith(b"-ERR"):
            print(line.decode().strip(), file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", action="store_true")
    ap.add_argument("--nats")
    ap.add_argument("--subject", default="geo.engine.py")
    a = ap.parse_args()
    if a.http:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"http {server.server_address[1]}", flush=True)
    if a.nats:
        serve_nats(a.nats, a.subject)
    else:
        threading.Event().wait()


if __name__ == "__main__":
    main()
