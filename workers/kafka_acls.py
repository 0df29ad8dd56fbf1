"""The Kafka principals' ACLs: each process kind may read only its own topics and group and write only the topics
it emits (settings.KAFKA_WRITES); every stage writes the dead-letter topic, which only the persister reads. The
admin principal (settings' super user of the broker) creates them, idempotently, with the topics (create_topics),
and the SCRAM users too when their passwords are in the environment (KAFKA_PASSWORD_<ROLE>, the local stack).
"""
from __future__ import annotations

import os

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


def ensure(client: AdminClient, timeout: float = 30) -> int:
    """Create the users whose passwords the environment holds, and every ACL (both idempotent). Returns ACLs."""
    users = [UserScramCredentialUpsertion(role, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                                          os.environ[f"KAFKA_PASSWORD_{role.upper()}"].encode())
             for role in roles() if os.environ.get(f"KAFKA_PASSWORD_{role.upper()}")]
    if users:
        for future in client.alter_user_scram_credentials(users, request_timeout=timeout).values():
            future.result(timeout)
    wanted = bindings()
    for future in client.create_acls(wanted, request_timeout=timeout).values():
        future.result(timeout)
    return len(wanted)


def remove(client: AdminClient, prefix: str, timeout: float = 30) -> None:
    """Delete the ACLs of every topic and group under `prefix` (a test's namespace)."""
    filters = [AclBindingFilter(kind, prefix, ResourcePatternType.PREFIXED, None, None, AclOperation.ANY,
                                AclPermissionType.ANY) for kind in (ResourceType.TOPIC, ResourceType.GROUP)]
    for future in client.delete_acls(filters, request_timeout=timeout).values():
        future.result(timeout)


def roles() -> list[str]:
    return sorted({*(s.name for s in stages()), PERSISTER, *settings.KAFKA_WRITES})
