from django.core.management.base import BaseCommand

from workers.kafka import create_topics


class Command(BaseCommand):
    help = "Create every Kafka topic the pipeline uses (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--partitions", type=int, help="partitions per topic (default: KAFKA_TOPIC_PARTITIONS)")
        parser.add_argument("--replication", type=int, help="replication factor (default: KAFKA_TOPIC_REPLICATION)")

    def handle(self, *args, partitions=None, replication=None, **options):
        for name, state in sorted(create_topics(partitions=partitions, replication=replication).items()):
            self.stdout.write(f"{name}: {state}")
