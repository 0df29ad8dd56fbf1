"""What the framework needs to know of an event contract, and nothing more.

The contract itself (event types, payload schemas, the topic of each type, which payload field is the
partition key) belongs to the application; `settings.PIPELINE_CONTRACT` names it by dotted path and
`workers.registry.contract()` loads it. The framework never imports it by name.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel


@dataclass(frozen=True)
class Contract:
    """schemas:   (event type, version) -> the pydantic model of its payload (strict, extra fields forbidden).
    topics:    event type -> its base topic name (the configured prefix is added at run time). Each type
               belongs on exactly one topic.
    key_field: the payload field whose value is the Kafka key, so one entity's events stay in order.
    """

    schemas: Mapping[tuple[str, int], type[BaseModel]]
    topics: Mapping[str, str]
    key_field: str
    event_topics: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_topics", frozenset(self.topics.values()))

    def schema(self, event_type: str, version: int) -> type[BaseModel] | None:
        return self.schemas.get((event_type, version))

    def versions(self, event_type: str) -> list[int]:
        return sorted(v for (t, v) in self.schemas if t == event_type)

    def topic_of(self, event_type: str) -> str:
        """The base topic of an event type (KeyError for a type the contract does not know)."""
        return self.topics[event_type]

    def key_of(self, payload: object) -> object:
        """The partition key of a payload (a schema instance or a dict); None when it has none."""
        if isinstance(payload, Mapping):
            return payload.get(self.key_field)
        return getattr(payload, self.key_field, None)
