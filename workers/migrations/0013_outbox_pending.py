"""Whether an outbox row is sent is the absence of its OutboxPending row, no longer an UPDATE of sent_at."""
import django.db.models.deletion
from django.db import migrations, models

# Every outbox row is born pending, whoever inserts it: one INSERT per statement, from its transition table.
BORN_PENDING = """
CREATE FUNCTION outbox_born_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_pending (outbox_id) SELECT id FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_born_pending AFTER INSERT ON outbox_events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_born_pending();
INSERT INTO outbox_pending (outbox_id) SELECT id FROM outbox_events WHERE sent_at IS NULL;
"""
NOT_BORN_PENDING = """
DROP TRIGGER outbox_born_pending ON outbox_events;
DROP FUNCTION outbox_born_pending();
"""
# Going back: rows without a pending row were sent (when exactly is not kept any more: their creation time).
SENT_AT_FROM_PENDING = """
UPDATE outbox_events o SET sent_at = o.created_at
WHERE NOT EXISTS (SELECT 1 FROM outbox_pending p WHERE p.outbox_id = o.id)
"""

class Migration(migrations.Migration):

    dependencies = [
        ('workers', '0012_replay_jobs_parking_lot'),
    ]

    operations = [
        migrations.CreateModel(
            name='OutboxPending',
            fields=[
                ('outbox', models.OneToOneField(db_column='outbox_id', db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='pending', serialize=False, to='workers.outboxevent')),
            ],
            options={
                'db_table': 'outbox_pending',
            },
        ),
        migrations.RunSQL(BORN_PENDING, NOT_BORN_PENDING),
        migrations.RunSQL(migrations.RunSQL.noop, SENT_AT_FROM_PENDING),
        migrations.RemoveIndex(
            model_name='outboxevent',
            name='outbox_unsent',
        ),
        migrations.RemoveField(
            model_name='outboxevent',
            name='sent_at',
        ),
    ]
