"""Exit 0 when the Kafka broker at argv[1] answers a metadata request as the admin principal (SCRAM-SHA-256,
password in KAFKA_ADMIN_PASSWORD), else 1 (used by scripts/stack)."""
import os
import sys

from confluent_kafka.admin import AdminClient

try:
    metadata = AdminClient({"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_PLAINTEXT",
                            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "admin",
                            "sasl.password": os.environ["KAFKA_ADMIN_PASSWORD"]}).list_topics(timeout=2)
    sys.exit(0 if metadata.brokers else 1)
except Exception:
    sys.exit(1)
