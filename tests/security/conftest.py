import pytest

from tests.e2e.harness import Pipeline


@pytest.fixture
def web(topic_prefix, tmp_path):
    """The web process as production runs it (gunicorn, gthread workers, DEBUG off), on the test database."""
    running = Pipeline(tmp_path, WEBHOOK_BODY_TIMEOUT_SECONDS="1")
    try:
        running.start("web")
        yield running
    finally:
        running.stop()
