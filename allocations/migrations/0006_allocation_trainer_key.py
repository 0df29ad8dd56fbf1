"""The key training sessions' (allocation_id, trainer_id) refers to (sessions_sched migration 0005)."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('allocations', '0005_trainer_holding'),
        ('enrollment', '0002_student_user'),
        ('purchases', '0002_lifecycle'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='trainerallocation',
            constraint=models.UniqueConstraint(fields=('id', 'trainer'), name='uniq_allocation_trainer'),
        ),
    ]
