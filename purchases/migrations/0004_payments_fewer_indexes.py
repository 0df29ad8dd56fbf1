"""Two fewer writes per payment the webhook inserts, three fewer indexes on `payments`:

- `status` was indexed twice (a B-tree and Django's `varchar_pattern_ops` twin for LIKE) over every payment, nearly
  all of them `confirmed`. It is now indexed only where it is not (`payments_not_confirmed`): what an operator
  filters for in the admin (needs review, duplicate, refunded) is still found by it.
- `provider_payment_id` kept Django's `varchar_pattern_ops` twin of its unique index, for `LIKE 'prefix%'`, which
  nothing runs (the admin searches it with `UPPER(...) LIKE '%...%'`, which no B-tree serves); its lookups by
  equality use the unique index. Django adds the twin again only if the field is altered.

Not atomic: the new index is built CONCURRENTLY, before the old ones go, and the provider id's twin is dropped
CONCURRENTLY, so a live table keeps taking payments; dropping the status indexes (Django's AlterField) takes its
lock only for the moment of the drop.
"""
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

PROVIDER_ID_LIKE = "payments_provider_payment_id_185fd6af_like"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('enrollment', '0002_student_user'),
        ('purchases', '0003_time_ordered_correlation_ids'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='payment',
            index=models.Index(condition=models.Q(('status', 'confirmed'), _negated=True), fields=['status'],
                               name='payments_not_confirmed'),
        ),
        migrations.AlterField(
            model_name='payment',
            name='status',
            field=models.CharField(choices=[('confirmed', 'Confirmed'), ('needs_review', 'needs review'),
                                            ('duplicate', 'Duplicate'), ('partially_refunded', 'partially refunded'),
                                            ('refunded', 'Refunded')],
                                   db_default='confirmed', default='confirmed', max_length=20),
        ),
        migrations.RunSQL(
            f"DROP INDEX CONCURRENTLY IF EXISTS {PROVIDER_ID_LIKE}",
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {PROVIDER_ID_LIKE} ON payments "
            "(provider_payment_id varchar_pattern_ops)",
        ),
    ]
