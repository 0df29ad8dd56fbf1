import pytest

from tests.e2e.harness import Pipeline


@pytest.fixture
def pipeline(topic_prefix, settings, tmp_path, request):
    """Every Procfile process running against this test's database, topics and cache keys; a test marked
    `pipeline_env(NAME="value", ...)` gives the processes that environment on top."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": topic_prefix}}
    marker = request.node.get_closest_marker("pipeline_env")
    running = Pipeline(tmp_path, **(marker.kwargs if marker else {}))
    try:
        running.start()
        yield running
    finally:
        running.stop()
