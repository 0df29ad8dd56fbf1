"""bench.pipeline.Processes refuses to start the web where something already listens: the bench's load would go to
that other server, and its figures (answers, latency, CPU of a process it does not watch) would be another's."""
import socket
from pathlib import Path

import pytest

from bench.pipeline import Processes, refuse_a_taken_port


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_free_port_passes():
    refuse_a_taken_port(_free_port())


def test_the_web_is_not_started_on_a_port_something_listens_on(tmp_path: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        procs = Processes({"WEB_PORT": str(port)}, tmp_path)
        with pytest.raises(RuntimeError, match=f"port {port} is taken"):
            procs.start("web")
        assert procs.procs == {}  # nothing was started
