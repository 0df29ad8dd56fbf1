"""workers.uuids: time-ordered ids (version 7), unique across threads and forked processes."""
import datetime
import os

from tests.concurrency import run_in_threads
from workers import uuids


def _millisecond(u) -> int:
    return u.int >> 80


def test_ids_are_version_7_unique_across_threads_and_carry_their_millisecond():
    seen: list = []
    before = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)

    def draw() -> None:
        seen.extend(uuids.uuid7() for _ in range(2000))

    run_in_threads(draw, 4, timeout=10)
    after = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
    assert len(seen) == len(set(seen)) == 8000
    assert {(u.version, u.variant) for u in seen} == {(7, "specified in RFC 4122")}
    assert all(before <= _millisecond(u) <= after for u in seen)


def test_ids_of_one_process_are_in_the_order_they_were_made():
    ids = [uuids.uuid7() for _ in range(5000)]
    assert ids == sorted(ids)


def test_a_forked_child_does_not_repeat_its_parents_ids():
    uuids.uuid7()  # the parent's generator is in use before the fork, as in gunicorn's master
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"".join(uuids.uuid7().bytes for _ in range(100)))
        os._exit(0)
    parents = {uuids.uuid7().bytes for _ in range(100)}
    os.waitpid(pid, 0)
    data = os.read(read, 1600)
    childs = {data[i:i + 16] for i in range(0, len(data), 16)}
    assert len(childs) == 100 and not childs & parents
