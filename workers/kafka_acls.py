"""The Kafka principals' ACLs: each process kind may read only its own topics and group and write only the topics
it emits (settings.KAFKA_WRITES); every stage writes the dead-letter topic, which only the persister reads. The
admin principal (settings' super user of the broker) creates them, idempotently, with the topics (create_topics),
and the SCRAM users too when their passwords are in the environment (KAFKA_PASSWORD_<ROLE>, the local stack).
"""
from __future__ import annotations

import os
import time

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from django.conf import settings

from workers.kafka import DEAD_LETTER_TOPIC, topic
from workers.registry import contract, stages

PERSISTER = "dead_letters"


EVERY_ACL = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                             AclPermissionType.ANY)


def _allow(kind: ResourceType, name: str, role: str, operation: AclOperation) -> AclBinding:
    return AclBinding(kind, name, ResourcePatternType.LITERAL, f"User:{role}", "*", operation, AclPermissionType.ALLOW)


def bindings() -> list[AclBinding]:
    """Every ACL of the pipeline, for the topic prefix in force."""
    from workers.dead_letter_store import PERSISTER_GROUP

    out = []
    for stage in stages():
        out += [_allow(ResourceType.TOPIC, name, stage.name, AclOperation.READ) for name in stage.topic_names()]
        out.append(_allow(ResourceType.GROUP, stage.kafka_group_id(), stage.name, AclOperation.READ))
        out.append(_allow(ResourceType.TOPIC, topic(DEAD_LETTER_TOPIC), stage.name, AclOperation.WRITE))
    out.append(_allow(ResourceType.TOPIC, topic(DEAD_LETTER_TOPIC), PERSISTER, AclOperation.READ))
    out.append(_allow(ResourceType.GROUP, topic(PERSISTER_GROUP), PERSISTER, AclOperation.READ))
    every_event_topic = sorted(contract().event_topics)
    for role, writes in settings.KAFKA_WRITES.items():
        for name in every_event_topic if writes == "*" else writes:
            out.append(_allow(ResourceType.TOPIC, topic(name), role, AclOperation.WRITE))
    return out


# (role, password) pairs this process has already upserted: create_topics runs once per test, and the users are
# the same for all of them (the ACLs are not: they name each test's topics).
_upserted: set[tuple[str, str]] = set()


def ensure(client: AdminClient, timeout: float = 30) -> int:
    """Create the users whose passwords the environment holds, and every ACL (both idempotent). Returns ACLs."""
    given = {role: os.environ[f"KAFKA_PASSWORD_{role.upper()}"] for role in roles()
             if os.environ.get(f"KAFKA_PASSWORD_{role.upper()}")}
    todo = [(role, password) for role, password in given.items() if (role, password) not in _upserted]
    if todo:
        users = [UserScramCredentialUpsertion(role, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                              password.encode()) for role, password in todo]
        for future in client.alter_user_scram_credentials(users, request_timeout=timeout).values():
            future.result(timeout)
        _upserted.update(todo)
    wanted = bindings()
    for future in client.create_acls(wanted, request_timeout=timeout).values():
        future.result(timeout)
    _wait_until_in_force(client, wanted, timeout)
    return len(wanted)


def _wait_until_in_force(client: AdminClient, wanted: list[AclBinding], timeout: float) -> None:
    """The broker applies new ACLs asynchronously (from the cluster metadata): return only once it lists them all,
    so a process started right after create_topics is not refused."""
    deadline = time.monotonic() + timeout
    while True:
        listed = set(client.describe_acls(EVERY_ACL, request_timeout=timeout).result(timeout))
        if set(wanted) <= listed:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(set(wanted) - listed)} ACL(s) not in force after {timeout} s")
        time.sleep(0.05)


def remove(client: AdminClient, prefix: str, timeout: float = 30, keep: str | None = None) -> int:
    """Delete the ACLs of every topic and group whose name starts with `prefix` (a test's or a benchmark's
    namespace), but those starting with `keep`; returns how many. They are listed and deleted by their exact
    names: a PREFIXED filter matches only bindings that were made PREFIXED themselves, and the pipeline's are
    LITERAL, so such a filter deleted none and a broker serving the test suite collected tens of thousands
    (every `ensure` then listed them all)."""
    mine = [b for b in client.describe_acls(EVERY_ACL, request_timeout=timeout).result(timeout)
            if b.name.startswith(prefix) and not (keep and b.name.startswith(keep))]
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                                b.permission_type) for b in mine]
    for future in (client.delete_acls(filters, request_timeout=timeout).values() if filters else []):
        future.result(timeout)
    return len(mine)


def roles() -> list[str]:
    return sorted({*(s.name for s in stages()), PERSISTER, *settings.KAFKA_WRITES})
