"""One consumer of the framework's test stage, in a process of its own, for the tests that SIGKILL it:
`python -m tests.workers.ordered_worker GROUP_ID`. The topic prefix and the database come from the environment
(KAFKA_TOPIC_PREFIX, DATABASE_URL); the handler is support.held_handler, steered through the database."""
from __future__ import annotations

import sys

import django


def main(group_id: str) -> None:
    django.setup()
    from tests.workers import support
    from workers.consumer import StageConsumer
    from workers.stage import RetryPolicy

    stage = support.make_stage(group_id, handler=support.held_handler, retry=RetryPolicy(max_attempts=1000))
    consumer = StageConsumer(stage, batch_wait=0.1)
    consumer.install_signal_handlers()
    consumer.run()


if __name__ == "__main__":
    main(sys.argv[1])
