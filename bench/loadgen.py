"""Open-loop HTTP/1.1 load from one thread: `python -m bench.loadgen HOST PORT RATE REQUESTS_FILE` prints "ready"
once it has loaded the requests, then, when every request is answered or failed, a JSON summary (latency
percentiles, status counts, errors).

Why not vegeta, which `make bench` used before: on these two cores the generator shares the machine with what it
measures, and vegeta took 0.51-0.72 ms of CPU per request at 200 req/s (measured against a trivial server), mostly
in Go's scheduler (sysmon, idle threads woken and parked: 20 context switches per request). That was 15-20% of the
webhook's "machine CPU per request", and CPU the app then lacked for its tail latency. This loop takes 0.18-0.20
ms: each request is sent as bytes prepared before the run, on a keep-alive connection that stays registered with
one epoll selector, and each answer is read and parsed as far as its status and length.

Open loop, without coordinated omission: request i is due at start + i / RATE whatever happened before it; it finds
an idle connection or opens one, up to MAX_CONNECTIONS, so a slow answer never delays the requests due after it.
Its latency runs from when it was sent to the last byte of its answer, as vegeta measured it, except while the
requests had to wait for a connection because MAX_CONNECTIONS were all busy (a backlog the server made): then from
its due time, so the backlog shows in full. How late the generator itself sent (it shares the cores with the server,
and a send can wait for the selector's millisecond or for the CPU) is reported apart, as `send_late_ms`: it is the
generator's delay, not the server's.

REQUESTS_FILE holds the raw requests, each preceded by its length (4 bytes, big-endian): see `write_requests`.
"""
from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
import time
from pathlib import Path

MAX_CONNECTIONS = 1024
TIMEOUT_SECONDS = 10.0


def write_requests(path: Path, requests: list[bytes]) -> None:
    with open(path, "wb") as out:
        for request in requests:
            out.write(struct.pack(">I", len(request)) + request)


def read_requests(path: Path) -> list[bytes]:
    data, requests, at = path.read_bytes(), [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        requests.append(data[at + 4: at + 4 + size])
        at += 4 + size
    return requests


def answer_length(buffer: bytes) -> int | None:
    """The byte length of the complete HTTP answer at the start of `buffer`, or None while it is incomplete.
    Answers carry Content-Length (every answer of the apps measured here does); one without it ends at its
    headers."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buffer[:head_end].lower()
    body, at = 0, head.find(b"\r\ncontent-length:")
    if at >= 0:
        end = head.find(b"\r\n", at + 17)
        body = int(head[at + 17: end if end >= 0 else head_end])
    total = head_end + 4 + body
    return total if len(buffer) >= total else None


class Load:
    """One run: `requests` sent at `rate` per second to host:port."""

    def __init__(self, host: str, port: int, rate: float, requests: list[bytes],
                 timeout: float = TIMEOUT_SECONDS, max_connections: int = MAX_CONNECTIONS) -> None:
        self.address, self.rate, self.requests, self.timeout = (host, port), rate, requests, timeout
        self.max_connections = max_connections
        self.selector = selectors.DefaultSelector()
        self.idle: list[socket.socket] = []
        self.open = 0
        self.in_flight: dict[socket.socket, list] = {}  # socket -> [request index, bytes read so far]
        self.sent_at = [0.0] * len(requests)  # when the latency of each request starts (the docstring says)
        self.late = [0.0] * len(requests)  # how long after its due time each request was sent
        self.backlog = False  # requests are waiting for a free connection
        self.latency: list[float | None] = [None] * len(requests)
        self.status = [0] * len(requests)
        self.errors: dict[str, int] = {}
        self.finished = 0
        self.next_timeout_check = 0.0

    def run(self) -> dict:
        self.cpu_at_start = time.process_time()
        self.start = time.perf_counter() + 0.05
        due, total = 0, len(self.requests)
        while self.finished < total:
            now = time.perf_counter()
            while due < total and self.start + due / self.rate <= now:
                if not self._send(due, now):
                    self.backlog = True
                    break
                due += 1
            else:
                self.backlog = False  # every request due so far is out
            self._time_out(now)
            wait = self.start + due / self.rate - now if due < total else 0.5
            if due < total and not self.idle and self.open >= self.max_connections:
                wait = 0.5  # every connection busy: the next one to answer frees one
            for key, _ in self.selector.select(max(wait, 0.0)):
                self._read(key.fileobj)
        elapsed = time.perf_counter() - self.start
        for sock in list(self.idle) + list(self.in_flight):
            sock.close()
        return self._summary(elapsed)

    def _connection(self) -> socket.socket | None:
        if self.idle:
            return self.idle.pop()
        if self.open >= self.max_connections:
            return None
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.open += 1
        return sock

    def _send(self, index: int, now: float) -> bool:
        """Send request `index`; False when no connection is free (it is sent when one is)."""
        try:
            sock = self._connection()
            if sock is None:
                return False
            due = self.start + index / self.rate
            self.sent_at[index], self.late[index] = (due if self.backlog else now), now - due
            sent = sock.send(self.requests[index])
            if sent < len(self.requests[index]):  # the socket's buffer was full: finish the write blocking
                sock.setblocking(True)
                sock.sendall(self.requests[index][sent:])
                sock.setblocking(False)
        except OSError as exc:
            self._fail(index, f"{type(exc).__name__}: {exc}")
            return True
        self.in_flight[sock] = [index, b""]
        return True

    def _read(self, sock: socket.socket) -> None:
        state = self.in_flight.get(sock)
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            chunk = b""
            if state is not None:
                self._fail(state[0], f"{type(exc).__name__}: {exc}")
                state = None
        if not chunk:  # closed by the server: idle (its keep-alive ended) or in the middle of an answer
            if state is not None:
                self._fail(state[0], "connection closed before the answer")
            self._drop(sock)
            return
        if state is None:
            return
        state[1] += chunk
        length = answer_length(state[1])
        if length is None:
            return
        index, answer = state
        head = answer[:answer.find(b"\r\n\r\n")].lower()
        if not (answer.startswith(b"HTTP/1.") and answer[9:12].isdigit()) or b"\r\ntransfer-encoding:" in head:
            # Not an answer it can frame (a chunked body has no Content-Length): the bytes after it on this
            # connection would be read as the next answer, so the connection goes and the request counts as failed.
            self._fail(index, "an answer without a status line or with a chunked body")
            self._drop(sock)
            return
        self.latency[index] = time.perf_counter() - self.sent_at[index]
        self.status[index] = int(answer[9:12])
        self.finished += 1
        del self.in_flight[sock]
        if b"\r\nconnection: close" in head:
            self._drop(sock)
        else:
            self.idle.append(sock)

    def _time_out(self, now: float) -> None:
        if now < self.next_timeout_check:  # a tenth of a second apart: hundreds may be in flight in a slow spell
            return
        self.next_timeout_check = now + 0.1
        for sock, (index, _) in list(self.in_flight.items()):
            if now - self.sent_at[index] > self.timeout:
                self._fail(index, f"no answer within {self.timeout:g} s")
                self._drop(sock)

    def _fail(self, index: int, reason: str) -> None:
        self.latency[index] = time.perf_counter() - (self.sent_at[index] or self.start + index / self.rate)
        self.errors[reason] = self.errors.get(reason, 0) + 1
        self.finished += 1

    def _drop(self, sock: socket.socket) -> None:
        self.in_flight.pop(sock, None)
        if sock in self.idle:
            self.idle.remove(sock)
        self.selector.unregister(sock)
        sock.close()
        self.open -= 1

    def _summary(self, elapsed: float) -> dict:
        latencies = sorted(x for x in self.latency if x is not None)
        codes: dict[str, int] = {}
        for code in self.status:
            if code:
                codes[str(code)] = codes.get(str(code), 0) + 1

        def ms(q: float) -> float:
            return percentile_ms(latencies, q) if latencies else 0.0

        answered = sum(codes.values())
        return {"own_cpu_seconds": round(time.process_time() - self.cpu_at_start, 3),
                "generator": "bench.loadgen (one thread, open loop)",
                "achieved_per_second": round(answered / elapsed, 1),
                "p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99), "max_ms": ms(1.0),
                "status_202": codes.get("202", 0), "other_status": answered - codes.get("202", 0),
                "status_codes": codes, "sent": len(self.requests), "send_late_ms": self._lateness(),
                "errors": [f"{reason} ({count}x)" for reason, count in sorted(self.errors.items())]}

    def _lateness(self) -> dict[str, float]:
        late = sorted(self.late)
        return {name: percentile_ms(late, q) for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))} if late else {}


def percentile_ms(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted seconds (q = 1.0: the largest), in milliseconds to 0.01."""
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def main(argv: list[str]) -> int:
    host, port, rate, path = argv[1], int(argv[2]), float(argv[3]), Path(argv[4])
    load = Load(host, port, rate, read_requests(path))
    print("ready", flush=True)  # started and loaded: the caller's CPU count begins here, the schedule 50 ms later
    print(json.dumps(load.run()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
