"""SequenceIds: ids drawn from a table's sequence a block at a time (the webhook's payment ids)."""
import os

import pytest
from django.db import connection

from tests.concurrency import run_in_threads
from tests.factories import PaymentFactory
from workers.sql import SequenceIds


@pytest.mark.django_db(transaction=True)
def test_ids_taken_by_many_threads_are_unique_and_the_sequence_moves_past_them():
    ids = SequenceIds("payments", block=8)
    taken: list[int] = []

    def take() -> None:
        try:
            taken.extend(ids.take() for _ in range(20))  # list.extend is atomic under the GIL
        finally:
            connection.close()

    run_in_threads(take, 4, timeout=10)
    assert len(taken) == len(set(taken)) == 80
    assert PaymentFactory().pk > max(taken)  # a row inserted without an id never meets one of them


@pytest.mark.django_db
def test_a_forked_child_never_hands_out_its_parents_ids():
    ids = SequenceIds("payments", block=8)
    ids.take()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report how many of the parent's ids it still holds, touch nothing else
        os.write(write, str(len(ids._ids)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"
    assert len(ids._ids) == 7  # the parent keeps its block
