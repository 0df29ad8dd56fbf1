"""trainers.holding: each trainer's count of holding allocations, kept by statement-level triggers.

The allocation API chose trainers by counting every trainer's holding allocations of the course on each batch: an
index scan and heap visits per trainer, 6 ms per course and batch with 480 trainers (pg_stat_statements over a
run of 20,000 purchases: a quarter of PostgreSQL's time). The triggers add one UPDATE of the trainers a statement
touched, per statement, whatever writes trainer_allocations (the API, a release, the admin, a migration), and
lock those trainers in id order first, as allocations.batch does, so they add no deadlock.
"""
from django.db import migrations, models

HOLDING = "('approved', 'active')"

FUNCTION = f"""
CREATE FUNCTION trainer_holding_sync() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    deltas bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(trainer_id ORDER BY trainer_id), array_agg(n ORDER BY trainer_id) INTO ids, deltas
        FROM (SELECT trainer_id, count(*) AS n FROM new_rows WHERE status IN {HOLDING} GROUP BY trainer_id) d;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(trainer_id ORDER BY trainer_id), array_agg(n ORDER BY trainer_id) INTO ids, deltas
        FROM (SELECT trainer_id, -count(*) AS n FROM old_rows WHERE status IN {HOLDING} GROUP BY trainer_id) d;
    ELSE
        SELECT array_agg(trainer_id ORDER BY trainer_id), array_agg(n ORDER BY trainer_id) INTO ids, deltas
        FROM (SELECT trainer_id, sum(n) AS n FROM (
                  SELECT trainer_id, 1 AS n FROM new_rows WHERE status IN {HOLDING}
                  UNION ALL SELECT trainer_id, -1 FROM old_rows WHERE status IN {HOLDING}) changes
              GROUP BY trainer_id HAVING sum(n) <> 0) d;
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM trainers WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE trainers t SET holding = t.holding + d.n FROM unnest(ids, deltas) AS d(trainer_id, n)
    WHERE t.id = d.trainer_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER trainer_holding_insert AFTER INSERT ON trainer_allocations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION trainer_holding_sync();
CREATE TRIGGER trainer_holding_update AFTER UPDATE ON trainer_allocations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION trainer_holding_sync();
CREATE TRIGGER trainer_holding_delete AFTER DELETE ON trainer_allocations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION trainer_holding_sync();
UPDATE trainers t SET holding = (
    SELECT count(*) FROM trainer_allocations a WHERE a.trainer_id = t.id AND a.status IN {HOLDING});
"""
DROP = """
DROP TRIGGER trainer_holding_insert ON trainer_allocations;
DROP TRIGGER trainer_holding_update ON trainer_allocations;
DROP TRIGGER trainer_holding_delete ON trainer_allocations;
DROP FUNCTION trainer_holding_sync();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("allocations", "0004_trainer_status_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainer",
            name="holding",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.RunSQL(FUNCTION, DROP),
    ]
