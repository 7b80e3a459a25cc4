#!/usr/bin/env python3
"""A vantage external geolocation engine in ~40 lines of Python (protocol: docs/GEOLOCATION.md).

    python3 engines/tests/external_engine.py [--port 0]

Prints "listening <port>" on its first line, then answers
POST / {"version": 1, "ip": "..."} with {"candidates": [...]}: by GeoNames id for
addresses in 193.0.0.0/16 (Amsterdam), by country for 2.0.0.0/8 (the answer of an engine
with `scope: country`: NL, an unknown code, BE), by coordinates for the rest (Frankfurt).
"""
import argparse
import ipaddress
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        try:
            req = json.loads(self.rfile.read(length))
            ip = ipaddress.ip_address(req["ip"])
            assert req.get("version") == 1
        except Exception as e:  # a bad request gets a 400 with a reason
            return self.reply(400, {"error": "bad_request", "message": str(e)})
        if ip in ipaddress.ip_network("193.0.0.0/16"):
            candidates = [{"cityId": 2759794, "score": 8}, {"cityId": 2747891, "score": 3}]
        elif ip in ipaddress.ip_network("2.0.0.0/8"):
            candidates = [{"country": "NL", "score": 6}, {"country": "ZZ", "score": 5}, {"country": "BE", "score": 2}]
        else:
            candidates = [{"latitude": 50.11, "longitude": 8.68, "score": 6}, {"cityId": 0, "score": 0}]
        self.reply(200, {"candidates": candidates})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = HTTPServer(("127.0.0.1", args.port), Handler)
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
