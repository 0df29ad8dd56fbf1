"""Messages too big to pass on as they are: the limits on what a stage accepts, and how a dead-letter copy is
cut to fit the broker.

Why: a dead letter copies the original key, value and headers and adds its `dlq.*` context. A message within a
few KB of the broker's limit, a compressed value that expanded past it, or a valid event carrying megabytes of
headers would make that copy too big; `produce()` would refuse it, the batch would be rewound and polled again,
forever, and nothing behind it would move. So a copy over `settings.DEAD_LETTER_MAX_BYTES` is cut, in this
order, until it fits:

1. headers over `KAFKA_MAX_HEADER_BYTES` are left out (small ones, such as a trace id, stay when the rest can fit);
2. the value is cut to what still fits (a prefix, so the admin still shows how it starts);
3. the remaining headers are left out, then the value is cut further, if the key alone is that big;
4. the key is cut the same way.

Each cut part is described by a header, so an operator can match it with the producer's logs:
`dlq.cut.value` and `dlq.cut.key` = "<original bytes> <sha256 hex>", `dlq.cut.headers` = "<count> <bytes> <sha256
hex>" (`headers_digest`); a cut letter can never be replayed (its original bytes are gone). If the broker still refuses
the copy (its own limit is lower), `minimal()` leaves out the value, key and headers entirely.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from django.conf import settings

Headers = Sequence[tuple[str, bytes | None]]
HeaderList = list[tuple[str, bytes | None]]
CUT_PREFIX = "cut."
# What Kafka's record format adds per record and per header (varints, attributes, timestamps), with room to spare.
RECORD_OVERHEAD = 128
HEADER_OVERHEAD = 8
MARKS_RESERVE = 512  # room for the dlq.cut.* headers


def headers_size(headers: Headers) -> int:
    return sum(len(name.encode("utf-8", "surrogateescape")) + len(value or b"") + HEADER_OVERHEAD
               for name, value in headers)


def headers_digest(headers: Headers) -> str:
    """SHA-256 over the headers in order, each as <len(name)><name><len(value) or -1><value>."""
    digest = hashlib.sha256()
    for name, value in headers:
        raw_name = name.encode("utf-8", "surrogateescape")
        digest.update(len(raw_name).to_bytes(4, "big") + raw_name)
        digest.update((-1 if value is None else len(value)).to_bytes(4, "big", signed=True) + (value or b""))
    return digest.hexdigest()


def too_many_headers(headers: Headers, limits: tuple[int, int] | None = None) -> str | None:
    """Why a consumed message's headers are over the limits a stage accepts, or None. Such a message is invalid:
    no event of the contract needs them, and a copy of them could not be dead-lettered.

    `limits`: (KAFKA_MAX_HEADERS, KAFKA_MAX_HEADER_BYTES) read once for a batch (`header_limits()`); a settings
    read is 0.5 us, and this runs for every consumed message."""
    if not headers:
        return None
    most, most_bytes = limits or header_limits()
    if len(headers) > most:
        return f"message has {len(headers)} headers, over the limit of {most}"
    # A name's UTF-8 is at most 4 bytes a character: when even that bound fits, the names need no encoding.
    if sum(4 * len(name) + len(value or b"") + HEADER_OVERHEAD for name, value in headers) <= most_bytes:
        return None
    size = headers_size(headers)
    if size > most_bytes:
        return f"message headers are {size} bytes, over the {most_bytes}-byte limit"
    return None


def header_limits() -> tuple[int, int]:
    return settings.KAFKA_MAX_HEADERS, settings.KAFKA_MAX_HEADER_BYTES


def _describe(raw: bytes) -> bytes:
    return f"{len(raw)} {hashlib.sha256(raw).hexdigest()}".encode()


def _describe_headers(headers: Headers) -> bytes:
    return f"{len(headers)} {headers_size(headers)} {headers_digest(headers)}".encode()


def fit(
    key: bytes | None, value: bytes | None, original: Headers, context: Headers, *, budget: int | None = None,
) -> tuple[bytes | None, bytes | None, HeaderList]:
    """(key, value, headers) of a dead-letter copy no bigger than `budget` bytes: the original parts as they
    are when they fit, otherwise cut as the module docstring says. `context` (the dlq.* headers) is kept whole;
    the caller keeps it small."""
    budget = budget if budget is not None else settings.DEAD_LETTER_MAX_BYTES
    headers = list(original)
    cuts: list[tuple[str, bytes]] = []

    def size() -> int:
        return (RECORD_OVERHEAD + MARKS_RESERVE + len(key or b"") + len(value or b"") + headers_size(headers)
                + headers_size(context))

    if size() > budget and headers and headers_size(headers) > settings.KAFKA_MAX_HEADER_BYTES:
        cuts.append(("headers", _describe_headers(headers)))  # heavy headers go first
        headers = []
    if size() > budget and value and size() - len(value) <= budget:
        cuts.append(("value", _describe(value)))
        value = value[: max(len(value) - (size() - budget), 0)]
    if size() > budget and headers:
        cuts.append(("headers", _describe_headers(headers)))
        headers = []
    if size() > budget and value:
        cuts.append(("value", _describe(value)))
        value = value[: max(len(value) - (size() - budget), 0)]
    if size() > budget and key:
        cuts.append(("key", _describe(key)))
        key = key[: max(len(key) - (size() - budget), 0)]
    return key, value, [*headers, *context, *((f"dlq.{CUT_PREFIX}{part}", mark) for part, mark in cuts)]


def minimal(
    key: bytes | None, value: bytes | None, original: Headers, context: Headers,
) -> tuple[None, None, HeaderList]:
    """The smallest copy: no key, value or original headers, only the context and what was left out."""
    marks = [(f"dlq.{CUT_PREFIX}headers", _describe_headers(original))] if original else []
    marks += [(f"dlq.{CUT_PREFIX}{part}", _describe(raw)) for part, raw in (("value", value), ("key", key)) if raw]
    return None, None, [*context, *marks]
