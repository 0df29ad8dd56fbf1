"""A second copy of a consumer on one host finds its metrics port taken: it logs that and consumes anyway."""
import logging
import socket

from workers import metrics


def test_a_taken_metrics_port_is_logged_and_does_not_stop_the_process(caplog, monkeypatch):
    monkeypatch.setattr(metrics, "_served", False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="workers.metrics"):
            metrics.serve(port)  # would raise OSError (address in use) before
    assert f"metrics port {port} cannot be served" in caplog.text
    assert metrics._served is False  # a later call may still try
