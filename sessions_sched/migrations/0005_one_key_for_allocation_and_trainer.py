"""One foreign key for a session's (allocation_id, trainer_id) instead of one per column.

It checks more (a session's trainer is its allocation's trainer, which the two keys did not) for less: each
session insert, 7 per purchase, pays one referential check instead of two (docs/benchmarks.md). A session whose
trainer is not its allocation's makes VALIDATE fail, and the migration with it: such a row is a booking nobody
can tell the truth of, for an operator to settle before deploying.
"""
import django.db.models.deletion
from django.db import migrations, models

ADD_PAIR_KEY = """
ALTER TABLE training_sessions ADD CONSTRAINT session_allocation_trainer_fk FOREIGN KEY (allocation_id, trainer_id)
    REFERENCES trainer_allocations (id, trainer_id) DEFERRABLE INITIALLY DEFERRED NOT VALID;
ALTER TABLE training_sessions VALIDATE CONSTRAINT session_allocation_trainer_fk;
"""
DROP_PAIR_KEY = "ALTER TABLE training_sessions DROP CONSTRAINT session_allocation_trainer_fk"


class Migration(migrations.Migration):

    dependencies = [
        ('allocations', '0006_allocation_trainer_key'),
        ('sessions_sched', '0004_fewer_session_indexes'),
    ]

    operations = [
        migrations.RunSQL(ADD_PAIR_KEY, DROP_PAIR_KEY),
        migrations.AlterField(
            model_name='trainingsession',
            name='allocation',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='sessions', to='allocations.trainerallocation'),
        ),
        migrations.AlterField(
            model_name='trainingsession',
            name='trainer',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='sessions', to='allocations.trainer'),
        ),
    ]
