import pytest

from tests.workers import support


@pytest.fixture(autouse=True)
def clean_script():
    support.SCRIPT.clear()
    support.CALLS.clear()
    yield
    support.SCRIPT.clear()
    support.CALLS.clear()


@pytest.fixture
def make_consumer_for(topic_prefix, group_id):
    """Build StageConsumers for a test stage; closes them at the end."""
    from workers.consumer import StageConsumer

    made = []

    def build(stage=None, **kwargs):
        consumer = StageConsumer(stage or support.make_stage(group_id), **{"batch_wait": 0.2, **kwargs})
        made.append(consumer)
        return consumer

    yield build
    for consumer in made:
        try:
            consumer.close()
        except Exception:
            pass
