"""Exit 0 when the Kafka broker at argv[1] answers a metadata request, else 1 (used by scripts/stack)."""
import sys

from confluent_kafka.admin import AdminClient

try:
    metadata = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=2)
    sys.exit(0 if metadata.brokers else 1)
except Exception:
    sys.exit(1)
