"""The framework knows no student: a dead letter keeps the event's partition key (the contract's key field,
the student id in this pipeline) as text. Existing student ids carry over as their decimal text."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workers", "0004_processed_at_brin")]

    operations = [
        migrations.RenameField("deadletter", "student_id", "partition_key"),
        migrations.AlterField(
            "deadletter", "partition_key",
            models.CharField(blank=True, db_index=True, max_length=255, null=True),
        ),
    ]
