"""Random secrets for this checkout's local stack, made once and kept in var/local-secrets.env (not in git).

With DEBUG off every process refuses to start without its secrets (enrollment.checks.require_secrets), and the
settings have no default for them. The local commands give them: the Makefile exports these values to every
target (`make demo`, `make test`, `make bench`, `make chaos`, `make run`), the test settings, the demo and the
bench load them, and `scripts/stack` starts Redis with REDIS_PASSWORD; variables already in the environment
win. A deployment sets its own in the environment and never reads this file. Standard library only: the
Makefile runs it with the system's python3.

    python3 settings/local_secrets.py      # makes the file if need be, prints NAME=value lines
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "var" / "local-secrets.env"
# The Kafka principals (SASL/SCRAM): the admin (the stack, create_topics, the tests and the bench driver) and one
# per process kind, each with only the ACLs its work needs (workers.kafka_acls).
KAFKA_ROLES = ("admin", "web", "relay", "purchases", "allocations", "sessions", "cache", "dead_letters")
NAMES = ("SECRET_KEY", "ALLOCATION_API_TOKEN", "PAYMENT_WEBHOOK_SECRET", "REDIS_PASSWORD",
         *(f"KAFKA_PASSWORD_{role.upper()}" for role in KAFKA_ROLES))


def read() -> dict[str, str]:
    if not PATH.exists():
        return {}
    pairs = (line.split("=", 1) for line in PATH.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def ensure() -> dict[str, str]:
    """The checkout's secrets, made (URL-safe random, 48 bytes each) for any name the file lacks."""
    values = read()
    missing = [name for name in NAMES if not values.get(name)]
    if missing:
        PATH.parent.mkdir(parents=True, exist_ok=True)
        values.update({name: secrets.token_urlsafe(48) for name in missing})
        PATH.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
        PATH.chmod(0o600)
    return values


def load_into_environ() -> None:
    """Put the checkout's secrets into os.environ where the environment has none (child processes inherit). The
    local driver (the tests, the demo, the bench) is the Kafka admin; each Procfile process names its own."""
    values = ensure()
    values |= {"KAFKA_USERNAME": "admin", "KAFKA_PASSWORD": values["KAFKA_PASSWORD_ADMIN"]}
    for name, value in values.items():
        if not os.environ.get(name):
            os.environ[name] = value


if __name__ == "__main__":
    for name, value in ensure().items():
        print(f"{name}={value}")
