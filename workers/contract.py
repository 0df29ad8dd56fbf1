"""What the framework needs to know of an event contract, and nothing more.

The contract itself (event types, payload schemas, the topic of each type, which payload field is the
partition key) belongs to the application; `settings.PIPELINE_CONTRACT` names it by dotted path and
`workers.registry.contract()` loads it. The framework never imports it by name.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True)
class Contract:
    """schemas:      (event type, version) -> the msgspec Struct of its payload (frozen, unknown fields forbidden;
                  msgspec checks types without coercion and the constraints of `msgspec.Meta`).
    topics:       event type -> its base topic name (the configured prefix is added at run time). Each type
                  belongs on exactly one topic.
    key_field:    the payload field whose value is the Kafka key, so one entity's events stay in order.
    decode_field: msgspec's `dec_hook` for the schemas' own field types (kind, value) -> instance, raising
                  ValueError with the reason when the value is not one (e.g. an amount of money).
    """

    schemas: Mapping[tuple[str, int], type[msgspec.Struct]]
    topics: Mapping[str, str]
    key_field: str
    decode_field: Callable[[type, Any], Any] | None = None
    event_topics: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_topics", frozenset(self.topics.values()))

    def schema(self, event_type: str, version: int) -> type[msgspec.Struct] | None:
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
