"""The payment webhook against hostile clients: bodies over the limit are refused from their Content-Length
before they are read, a slow body is cut off, nothing is read before the signature headers are there; and
during a secret rotation both secrets sign."""
import http.client
import json
import os
import socket
import time
import urllib.parse

import pytest
from django.test import Client

from purchases.signing import sign
from tests.factories import CourseFactory, StudentFactory

URL = "/api/payments/confirmations"
SIGNED = "X-Signature-Timestamp: 1\r\nX-Signature: 00\r\n"


def _raw(web, head: str, body: bytes = b"", *, wait: float = 5.0) -> tuple[bytes, float]:
    """Send a raw request (maybe partial); returns the first bytes of the answer and how long it took."""
    url = urllib.parse.urlparse(web.web_url)
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=wait) as sock:
        sock.sendall(head.encode() + body)
        try:
            answer = sock.recv(200)
        except TimeoutError:
            answer = b""
    return answer, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_a_body_over_the_limit_is_refused_from_its_content_length_without_waiting_for_it(web):
    head = (f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{SIGNED}"
            "Content-Length: 50000000\r\n\r\n")
    answer, took = _raw(web, head)  # not one byte of the 50 MB is sent
    assert answer.startswith(b"HTTP/1.1 413") and took < 2.0


@pytest.mark.django_db(transaction=True)
def test_a_body_without_its_signature_headers_or_length_is_never_read(web):
    unsigned = f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n"
    assert _raw(web, unsigned)[0].startswith(b"HTTP/1.1 401")
    chunked = (f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{SIGNED}"
               "Transfer-Encoding: chunked\r\n\r\n")
    assert _raw(web, chunked)[0].startswith(b"HTTP/1.1 411")


@pytest.mark.django_db(transaction=True)
def test_a_slow_body_is_cut_off_by_the_read_timeout(web):
    head = (f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{SIGNED}"
            "Content-Length: 1000\r\n\r\n")
    answer, took = _raw(web, head, b'{"provider_payment_id": ', wait=10)  # and then nothing
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < took < 5.0  # WEBHOOK_BODY_TIMEOUT_SECONDS=1 in this fixture


@pytest.mark.django_db
def test_during_a_rotation_the_new_and_the_previous_secret_both_sign(settings):
    settings.PAYMENT_WEBHOOK_SECRET, settings.PAYMENT_WEBHOOK_PREVIOUS_SECRETS = "new-secret", ["old-secret"]
    student, client = StudentFactory(), Client()

    def confirm(secret: str, n: int) -> int:
        course = CourseFactory()
        body = json.dumps({"provider_payment_id": f"pay_rot_{n}", "student_id": student.pk, "course_id": course.pk,
                           "amount": "49.00", "currency": "EUR", "confirmed_at": "2030-01-07T10:00:00+00:00"})
        return client.post(URL, data=body, content_type="application/json",
                           headers=sign(body.encode(), secret)).status_code

    assert [confirm("new-secret", 1), confirm("old-secret", 2), confirm("guessed", 3)] == [202, 202, 401]
    settings.PAYMENT_WEBHOOK_PREVIOUS_SECRETS = []  # the provider switched over
    assert [confirm("old-secret", 4), confirm("new-secret", 5)] == [401, 202]


@pytest.mark.django_db(transaction=True)
def test_a_keep_alive_connection_left_idle_for_seconds_is_still_answered(web):
    """An HTTP client reuses its pooled connections; one the server closed meanwhile fails the request sent on it
    ("connection reset") and a POST is not retried. gunicorn's own default closes them after 2 s idle."""
    url = urllib.parse.urlparse(web.web_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and not first.will_close
        time.sleep(3.5)  # idle, as a pooled connection between two webhooks
        connection.request("GET", "/healthz")  # on the same socket: http.client does not reconnect by itself
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def _parent(pid: int) -> int | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


def test_each_worker_keeps_its_heartbeat_file_in_memory(web):
    """A gunicorn worker touches its heartbeat file on every turn of its main loop. In a directory on the disk
    (gunicorn's default: the temporary directory) a touch can wait for the file system's journal, and the worker
    then accepts nothing meanwhile (gunicorn's documentation, "Blocking OS calls"): the file lives in /dev/shm."""
    master = web.processes["web"].pid
    workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == master]
    assert workers, web.log("web")
    for pid in workers:
        files = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                files.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:  # closed meanwhile
                continue
        heartbeats = [f for f in files if "wgunicorn-" in f]
        assert heartbeats and all(f.startswith("/dev/shm/") for f in heartbeats), files
