import pytest

from tests.e2e.harness import Pipeline


@pytest.fixture
def pipeline(topic_prefix, settings, tmp_path):
    """Every Procfile process running against this test's database, topics and cache keys."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": topic_prefix}}
    running = Pipeline(tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()
