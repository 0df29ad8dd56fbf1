"""workers.uuids: event ids from blocks of random bytes, unique across threads and forked processes."""
import os

from tests.concurrency import run_in_threads
from workers import uuids


def test_ids_are_version_4_and_unique_across_threads_and_blocks():
    seen: list = []

    def draw() -> None:
        seen.extend(uuids.uuid4() for _ in range(3 * uuids.BLOCK))

    run_in_threads(draw, 4, timeout=10)
    assert len(seen) == len(set(seen)) == 12 * uuids.BLOCK
    assert {(u.version, u.variant) for u in seen} == {(4, "specified in RFC 4122")}


def test_a_forked_child_never_hands_out_an_id_of_its_parents_block():
    uuids.uuid4()  # this thread now holds a block
    parents_next = uuids._local.ids[-1]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, uuids.uuid4().bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    childs = os.read(read, 16)
    assert len(childs) == 16 and childs != parents_next.bytes
    assert uuids.uuid4() == parents_next  # the parent goes on with its own block
