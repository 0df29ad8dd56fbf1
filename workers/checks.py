"""System checks of the stage registry, run at boot by every management command and by the web app, as
Karafka validates its routing with contracts: a wrong PIPELINE_STAGES fails loudly before any consumer
starts, not at the first message."""
from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from workers import registry


@register("pipeline")
def limits_are_consistent(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Settings that only work together: retention against the dedup window, the time budget against
    max.poll.interval.ms, the dead-letter budget against the producer's limit."""
    from django.conf import settings

    from workers.kafka import MAX_POLL_INTERVAL_MS, PRODUCER_MAX_BYTES

    errors: list[CheckMessage] = []
    if settings.KAFKA_TOPIC_RETENTION_DAYS > settings.PROCESSED_EVENT_RETENTION_DAYS:
        errors.append(Error(
            f"KAFKA_TOPIC_RETENTION_DAYS ({settings.KAFKA_TOPIC_RETENTION_DAYS}) is longer than the dedup window "
            f"PROCESSED_EVENT_RETENTION_DAYS ({settings.PROCESSED_EVENT_RETENTION_DAYS})",
            hint="A group reset to offset 0 would re-read events whose processed-event rows are pruned, and do "
                 "their work twice. Keep topics no longer than the dedup window.", id="workers.E010"))
    if not 0 < settings.WORKER_TIME_BUDGET_SECONDS * 3 <= MAX_POLL_INTERVAL_MS / 1000:
        errors.append(Error(
            f"WORKER_TIME_BUDGET_SECONDS ({settings.WORKER_TIME_BUDGET_SECONDS}) must be over 0 and at most a "
            f"third of max.poll.interval.ms ({MAX_POLL_INTERVAL_MS // 1000} s)", id="workers.E011"))
    if not 10_000 <= settings.DEAD_LETTER_MAX_BYTES <= PRODUCER_MAX_BYTES - 10_000:
        errors.append(Error(
            f"DEAD_LETTER_MAX_BYTES ({settings.DEAD_LETTER_MAX_BYTES}) must be from 10000 to the producer's "
            f"message.max.bytes ({PRODUCER_MAX_BYTES}) minus 10000", id="workers.E012"))
    if not 0 < settings.WORKER_LANES_RESUME_BELOW <= settings.WORKER_LANES_BUSY_LIMIT:
        errors.append(Error(
            f"WORKER_LANES_RESUME_BELOW ({settings.WORKER_LANES_RESUME_BELOW}) must be over 0 and at most "
            f"WORKER_LANES_BUSY_LIMIT ({settings.WORKER_LANES_BUSY_LIMIT})",
            hint="Above the limit a consumer would stop splitting batches and start again at once.",
            id="workers.E014"))
    if not 0 <= settings.WEB_KAFKA_LINGER_MS <= 1000:
        errors.append(Error(
            f"WEB_KAFKA_LINGER_MS ({settings.WEB_KAFKA_LINGER_MS}) must be from 0 to 1000",
            hint="Every event a web worker emits waits this long before it is sent.", id="workers.E015"))
    return errors


@register("pipeline")
def replication_is_possible(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A minimum in-sync count above the replicas would make every topic refuse every write."""
    from django.conf import settings

    replicas, minimum = settings.KAFKA_TOPIC_REPLICATION, settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS
    if replicas >= 1 and 1 <= minimum <= replicas:
        return []
    return [Error(f"KAFKA_TOPIC_MIN_INSYNC_REPLICAS ({minimum}) must be from 1 to KAFKA_TOPIC_REPLICATION "
                  f"({replicas})", hint="With acks=all a topic refuses writes while fewer replicas are in sync.",
                  id="workers.E013")]


@register("pipeline", deploy=True)
def replication_survives_a_broker(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`check --deploy`: production topics must survive the loss of a broker without losing acknowledged events."""
    from django.conf import settings

    warnings: list[CheckMessage] = []
    if settings.KAFKA_TOPIC_REPLICATION < 3:
        warnings.append(Warning(
            f"KAFKA_TOPIC_REPLICATION is {settings.KAFKA_TOPIC_REPLICATION}: losing one broker's disk loses every "
            "event it held that no consumer had read", hint="Use 3 replicas on 3 brokers or more.",
            id="workers.W001"))
    if settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS < 2:
        warnings.append(Warning(
            f"KAFKA_TOPIC_MIN_INSYNC_REPLICAS is {settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS}: an event acknowledged "
            "by one replica is lost with that broker", hint="Use 2 (with 3 replicas).", id="workers.W002"))
    return warnings


@register("pipeline")
def stage_registry_is_valid(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        contract = registry.contract()
        stages = registry.stages()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="workers.E001")]
    errors: list[CheckMessage] = []
    for label, values in (("name", [s.name for s in stages]), ("group_id", [s.group_id for s in stages])):
        for value, count in Counter(values).items():
            if count > 1:
                errors.append(Error(f"{count} stages of PIPELINE_STAGES share the {label} {value!r}",
                                    hint=f"Each stage needs a {label} of its own.", id="workers.E002"))
    known = contract.event_topics
    for stage in stages:
        errors.extend(_stage_errors(stage, known))
    return errors


def _stage_errors(stage, known_topics: frozenset[str]) -> list[CheckMessage]:
    where = f"stage {stage.name!r}"
    errors = []
    if not stage.topics:
        errors.append(Error(f"{where} consumes no topic", id="workers.E003"))
    for name in stage.topics:
        if name not in known_topics:
            errors.append(Error(f"{where} consumes {name!r}, a topic no event type of the contract is published to",
                                hint=f"Known topics: {', '.join(sorted(known_topics))}.", id="workers.E003"))
    if not callable(stage.handler):
        errors.append(Error(f"{where}: handler is not callable", id="workers.E004"))
    if stage.batch_handler is not None and not callable(stage.batch_handler):
        errors.append(Error(f"{where}: batch_handler is not callable", id="workers.E004"))
    if stage.batch_handler is not None and not stage.batchable:
        errors.append(Error(f"{where} is not batchable but has a batch handler", id="workers.E005"))
    if stage.retry.max_attempts < 1:
        errors.append(Error(f"{where}: retry.max_attempts must be at least 1", id="workers.E006"))
    if stage.trace is not None and not callable(stage.trace):
        errors.append(Error(f"{where}: trace hook is not callable", id="workers.E004"))
    return errors
