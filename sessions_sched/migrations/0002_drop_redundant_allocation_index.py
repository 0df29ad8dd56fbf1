"""Drop the index Django gave training_sessions.allocation_id: the unique (allocation, date, time) and the
(allocation, starts_at) indexes both start with allocation_id, so it only cost every insert.

Only the index goes; the foreign key stays as it is (Django's own AlterField would drop and re-add it, which
re-checks every row of a large table under a lock)."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('allocations', '0001_initial'),
        ('sessions_sched', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='trainingsession',
                    name='allocation',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                            related_name='sessions', to='allocations.trainerallocation'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "training_sessions_allocation_id_212b5f05"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "training_sessions_allocation_id_212b5f05" '
                                'ON "training_sessions" ("allocation_id")',
                ),
            ],
        ),
    ]
