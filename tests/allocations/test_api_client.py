"""The allocation API over real HTTP (live_server), through AllocationClient and its error mapping."""
import http.server
import socket
import threading
import time

import pytest
import requests

from allocations.client import AllocationClient, AllocationRequest, AllocationResult
from allocations.models import TrainerAllocation, slot_time
from tests.factories import (
    AllocationFactory,
    CourseFactory,
    PurchaseFactory,
    StudentFactory,
    TrainerFactory,
    purchase_of,
)
from workers.errors import PermanentError, Superseded, TransientError


def ask(student_id, course_id, correlation_id=None):
    """A request for the student's purchase of the course (bought here if needed)."""
    return AllocationRequest(student_id, course_id, purchase_of(student_id, course_id).pk, correlation_id)

TOKEN = "test-allocation-token"


@pytest.fixture
def api(live_server, settings):
    settings.ADMIN_SERVICE_URL = live_server.url
    settings.ALLOCATION_API_TOKEN = TOKEN
    client = AllocationClient()
    yield client
    client.close()


@pytest.fixture
def course():
    return CourseFactory()


def test_allocates_the_least_loaded_trainer_then_answers_idempotently(api, course):
    busy = TrainerFactory(courses=[course])
    quiet = TrainerFactory(courses=[course])
    AllocationFactory(trainer=busy, course=course, slot_time=slot_time(0))
    student = StudentFactory()
    first = api.allocate(ask(student.pk, course.pk))
    assert isinstance(first, AllocationResult)
    assert (first.trainer_id, first.student_id, first.course_id) == (quiet.pk, student.pk, course.pk)
    assert (first.slot_time, first.status, first.created) == ("08:00", "active", True)
    again = api.allocate(ask(student.pk, course.pk))
    assert again.allocation_id == first.allocation_id and again.created is False
    assert TrainerAllocation.objects.filter(student=student).count() == 1


def test_status_codes_201_then_200(api, course, live_server):
    TrainerFactory(courses=[course])
    student = StudentFactory()
    url = f"{live_server.url}/api/allocations"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"student_id": student.pk, "course_id": course.pk, "purchase_id": purchase_of(student.pk, course.pk).pk,
            "correlation_id": "6f1b1c43-3f7c-4c61-9c1e-2a4f0f0e7a11"}
    assert requests.post(url, json=body, headers=headers, timeout=5).status_code == 201
    assert requests.post(url, json=body, headers=headers, timeout=5).status_code == 200
    assert str(TrainerAllocation.objects.get().correlation_id) == body["correlation_id"]


def test_no_capacity_409_is_transient(api, course, live_server):
    TrainerFactory(courses=[course], capacity=1)
    api.allocate(ask(StudentFactory().pk, course.pk))
    with pytest.raises(TransientError, match="409.*no trainer with capacity.*at capacity"):
        api.allocate(ask(StudentFactory().pk, course.pk))


def test_wrong_token_401_is_permanent(live_server, settings, course):
    settings.ALLOCATION_API_TOKEN = TOKEN
    client = AllocationClient(base_url=live_server.url, token="wrong")
    with pytest.raises(PermanentError, match="401"):
        client.allocate(ask(StudentFactory().pk, course.pk))
    response = requests.post(f"{live_server.url}/api/allocations", json={}, timeout=5)
    assert response.status_code == 401


def test_an_unknown_purchase_422_is_permanent_and_a_cancelled_one_410_is_superseded(api, course):
    TrainerFactory(courses=[course])
    with pytest.raises(PermanentError, match="422 unknown purchase"):
        api.allocate(AllocationRequest(StudentFactory().pk, course.pk, 10**9))
    cancelled = PurchaseFactory(payment__course=course, is_active=False)
    with pytest.raises(Superseded, match="410 purchase cancelled"):
        api.allocate(AllocationRequest(cancelled.student_id, course.pk, cancelled.pk))


def test_release_cancels_the_purchases_allocation_once(api, course):
    TrainerFactory(courses=[course])
    request = ask(StudentFactory().pk, course.pk)
    made = api.allocate(request)
    assert api.release([request.purchase_id, 10**9]) == [{
        "allocation_id": made.allocation_id, "purchase_id": request.purchase_id, "status": "cancelled",
        "sessions_cancelled": 0}]
    assert api.release([request.purchase_id]) == []


def test_404_is_permanent(live_server):
    client = AllocationClient(base_url=f"{live_server.url}/no-such-service", token=TOKEN)
    with pytest.raises(PermanentError, match="404"):
        client.allocate(AllocationRequest(1, 1, 1))


@pytest.mark.parametrize(
    "body,field",
    [({"student_id": 0, "course_id": 1, "purchase_id": 1}, "student_id"), ({"student_id": 1, "purchase_id": 1},
     "course_id"), ({"student_id": 1, "course_id": "2", "purchase_id": 1}, "course_id"),
     ({"student_id": 1, "course_id": 2}, "purchase_id"), ({"student_id": 1, "course_id": 2, "purchase_id": 1, "x": 1},
     "x"), ({"student_id": 1, "course_id": 2, "purchase_id": 1, "correlation_id": "nope"}, "correlation_id")],
)
def test_bad_body_is_400_with_field_errors(api, live_server, body, field):
    response = requests.post(
        f"{live_server.url}/api/allocations", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert response.status_code == 400 and field in response.json()["errors"]


def test_batch_mixes_good_and_bad_items_independently(api, course, live_server):
    TrainerFactory(courses=[course], capacity=2)
    existing_student, new_student, third, fourth = (StudentFactory() for _ in range(4))
    first = api.allocate(ask(existing_student.pk, course.pk))
    results = api.allocate_many([
        ask(existing_student.pk, course.pk),
        AllocationRequest(fourth.pk, course.pk, 10**9),
        ask(new_student.pk, course.pk),
        ask(third.pk, course.pk),  # trainer full by now
        AllocationRequest(fourth.pk, 10**9, purchase_of(fourth.pk, course.pk).pk),
    ])
    assert isinstance(results[0], AllocationResult) and results[0].allocation_id == first.allocation_id
    assert results[0].created is False
    assert isinstance(results[1], PermanentError) and "unknown purchase" in str(results[1])
    assert isinstance(results[2], AllocationResult) and results[2].created and results[2].slot_time == "09:00"
    assert isinstance(results[3], TransientError) and "409" in str(results[3])
    assert isinstance(results[4], PermanentError) and "another student or course" in str(results[4])
    assert TrainerAllocation.objects.count() == 2

    raw = requests.post(
        f"{live_server.url}/api/allocations/batch", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5,
        json={"requests": [{"student_id": new_student.pk, "course_id": course.pk,
                            "purchase_id": purchase_of(new_student.pk, course.pk).pk}, {"student_id": "x"}, 7]},
    ).json()["results"]
    assert [item["status"] for item in raw] == [200, 400, 400]
    assert raw[0]["body"]["allocation_id"] == results[2].allocation_id


@pytest.mark.parametrize("body", [{}, {"requests": []}, {"requests": "x"}, {"requests": [{}] * 501}])
def test_batch_envelope_errors_are_400(api, live_server, body):
    response = requests.post(
        f"{live_server.url}/api/allocations/batch", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert response.status_code == 400 and "requests" in response.json()["errors"]


def test_a_silent_server_times_out_as_a_transient_error():
    """A real socket that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept_and_hold():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    client = AllocationClient(base_url=f"http://127.0.0.1:{server.getsockname()[1]}", token=TOKEN, timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match="timed out after 0.5s"):
            client.allocate(AllocationRequest(1, 1, 1))
        with pytest.raises(TransientError, match="timed out"):
            client.allocate_many([AllocationRequest(1, 1, 1)])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()
    assert time.monotonic() - started < 3
    assert held, "the client never connected"


def test_connection_refused_is_transient():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match="unreachable"):
        client = AllocationClient(base_url=f"http://127.0.0.1:{port}", token=TOKEN, timeout=1)
        client.allocate(AllocationRequest(1, 1, 1))


@pytest.mark.parametrize("status,expected", [(503, TransientError), (500, TransientError), (429, TransientError),
                                             (400, PermanentError), (403, PermanentError)])
def test_status_mapping_of_other_answers(status, expected):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"nope")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = AllocationClient(base_url=f"http://127.0.0.1:{server.server_address[1]}", token=TOKEN, timeout=2)
        with pytest.raises(expected, match=str(status)):
            client.allocate(AllocationRequest(1, 1, 1))
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body", [{}, {"purchase_ids": []}, {"purchase_id": 1}, {"purchase_ids": ["1"]},
                                  {"purchase_ids": [0]}, {"purchase_ids": list(range(1, 502))}])
def test_a_bad_release_body_is_400_and_releases_nothing(api, live_server, body):
    response = requests.post(f"{live_server.url}/api/allocations/release", json=body,
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert response.status_code == 400 and response.json()["errors"], response.content


def test_more_requests_than_one_batch_call_takes_are_sent_in_several(api, course):
    """The API takes 500 per call: 1,001 requests are three calls, each item still answered on its own."""
    student = StudentFactory()
    bought = ask(student.pk, course.pk)
    TrainerFactory(courses=[course])
    unknown = [AllocationRequest(student.pk, course.pk, 10**9 + n) for n in range(1_000)]
    results = api.allocate_many([*unknown[:600], bought, *unknown[600:]])
    assert len(results) == 1_001
    assert all(isinstance(r, PermanentError) and "unknown purchase" in str(r) for r in results[:600] + results[601:])
    assert isinstance(results[600], AllocationResult) and results[600].student_id == student.pk
    assert api.release([10**9 + n for n in range(1_001)] + [bought.purchase_id])[0]["purchase_id"] == \
        bought.purchase_id
