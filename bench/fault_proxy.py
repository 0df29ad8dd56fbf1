"""A fault-injecting HTTP proxy in front of the allocation API, for the chaos run.

The allocation consumer is pointed at this proxy instead of the web app. For a share of calls it answers 503 at
once, for another share it holds the request past the consumer's timeout (then drops it); everything else is
forwarded to the real API. The faults live outside the project's code, on the wire, as they would in life.
"""
from __future__ import annotations

import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class FaultProxy:
    def __init__(self, upstream: str, *, error_share: float, hang_share: float, hang_seconds: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.error_share, self.hang_share, self.hang_seconds = error_share, hang_share, hang_seconds
        self.enabled = True
        self.counts = {"forwarded": 0, "errors": 0, "hangs": 0}
        self._lock = threading.Lock()
        proxy = self
        session = requests.Session()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._pick()
                if fault == "errors":
                    self._answer(503, b'{"error": "injected fault"}')
                    return
                if fault == "hangs":
                    time.sleep(proxy.hang_seconds)
                    self.close_connection = True
                    return
                upstream = session.post(proxy.upstream + self.path, data=body, timeout=60,
                                        headers={k: v for k, v in self.headers.items()
                                                 if k.lower() in ("authorization", "content-type")})
                self._answer(upstream.status_code, upstream.content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # the client gave up (its timeout): fine
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _pick(self) -> str:
        roll = random.random()
        with self._lock:
            if self.enabled and roll < self.error_share:
                kind = "errors"
            elif self.enabled and roll < self.error_share + self.hang_share:
                kind = "hangs"
            else:
                kind = "forwarded"
            self.counts[kind] += 1
        return kind

    def close(self) -> None:
        self.server.shutdown()
