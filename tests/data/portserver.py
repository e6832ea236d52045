"""A small HTTP server for port-range tests: `portserver.py --port N [--bind-delay S]`."""

import argparse
import http.server
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--bind-delay", type=float, default=0.0)
args = parser.parse_args()
time.sleep(args.bind_delay)


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"port {args.port}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


server = http.server.HTTPServer(("127.0.0.1", args.port), Hello)
print(f"listening on {args.port}", flush=True)
print(f"bound at {time.time():.6f}", file=sys.stderr, flush=True)
server.serve_forever()
