"""bench.loadgen, the webhook benchmark's load generator, against a real HTTP/1.1 server on a local port: it keeps
its schedule whatever the server does (open loop), counts every answer by status, and gives up on none silently."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import Load, answer_length


class Handler(BaseHTTPRequestHandler):
    """Answers by the request's body: "slow" after 0.5 s, "never" after 5 s, "error" with 500, "close" with
    Connection: close; anything else 202 at once."""

    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.arrivals.append((time.perf_counter(), body))
        time.sleep({b"slow": 0.5, b"never": 5.0}.get(body, 0))
        self.send_response(500 if body == b"error" else 202)
        if body == b"chunked":  # a body the generator cannot frame: it must say so, not misread what follows
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"2\r\n{}\r\n0\r\n\r\n")
            return
        self.send_header("Content-Length", "2")
        if body == b"close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.arrivals = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def requests(server, bodies: list[bytes]) -> list[bytes]:
    host = f"127.0.0.1:{server.server_address[1]}"
    return [f"POST /x HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]


def run(server, bodies: list[bytes], rate: float, **options) -> dict:
    return Load("127.0.0.1", server.server_address[1], rate, requests(server, bodies), **options).run()


def test_every_answer_is_counted_by_its_status_on_reused_connections(server):
    result = run(server, [b"ok"] * 40 + [b"error"] * 5 + [b"close"] * 5, rate=200)
    assert (result["status_202"], result["other_status"], result["errors"]) == (45, 5, [])
    assert result["status_codes"] == {"202": 45, "500": 5}
    assert len(server.arrivals) == 50
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"] < 500


def test_a_slow_answer_delays_none_of_the_requests_due_after_it(server):
    """Open loop: the first answer takes 0.5 s, and the 49 requests due meanwhile still go out on schedule, on
    other connections, instead of queueing behind it."""
    result = run(server, [b"slow"] + [b"ok"] * 49, rate=100)
    sent = [at for at, _ in server.arrivals]
    assert result["status_202"] == 50
    assert result["max_ms"] >= 500 and result["p95_ms"] < 100
    assert max(sent) - min(sent) < 0.49 + 0.25  # 49 intervals of 10 ms, with slack for a busy machine


def test_requests_that_wait_for_a_connection_count_from_their_due_time(server):
    """With every connection busy the server is the one holding them back: the four requests due while the only
    connection waits 0.5 s for its answer count that wait in their latency."""
    result = run(server, [b"slow"] + [b"ok"] * 4, rate=100, max_connections=1)
    assert result["status_202"] == 5
    assert result["p50_ms"] >= 400
    assert result["send_late_ms"]["max"] >= 400  # and they were sent late, as reported apart


def test_a_request_never_answered_is_reported_as_an_error_and_the_run_ends(server):
    started = time.perf_counter()
    result = run(server, [b"ok"] * 5 + [b"never"] + [b"ok"] * 5, rate=100, timeout=0.5)
    assert result["status_202"] == 10 and result["errors"] == ["no answer within 0.5 s (1x)"]
    assert result["max_ms"] >= 500
    assert time.perf_counter() - started < 3


def test_a_chunked_answer_is_an_error_and_the_next_answers_are_still_read(server):
    result = run(server, [b"ok", b"chunked", b"ok", b"ok"], rate=50, max_connections=1)
    assert result["status_202"] == 3
    assert result["errors"] == ["an answer without a status line or with a chunked body (1x)"]


def test_an_answer_is_complete_once_its_content_length_is_read():
    head = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
    assert answer_length(head[:-2]) is None
    assert answer_length(head + b"{") is None
    assert answer_length(head + b"{}") == len(head) + 2
    assert answer_length(b"HTTP/1.1 204 No Content\r\n\r\n") == 27
