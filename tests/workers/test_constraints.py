import uuid

import pytest
from django.db import IntegrityError, transaction

from workers.models import ProcessedEvent

pytestmark = pytest.mark.django_db


def test_an_event_is_processed_once_per_consumer():
    event_id = uuid.uuid4()
    ProcessedEvent.objects.create(consumer="purchase-creation-workers", event_id=event_id, event_type="X")
    with pytest.raises(IntegrityError, match="uniq_processed_event_per_consumer"), transaction.atomic():
        ProcessedEvent.objects.create(consumer="purchase-creation-workers", event_id=event_id, event_type="X")


def test_the_same_event_may_be_processed_by_another_consumer():
    event_id = uuid.uuid4()
    ProcessedEvent.objects.create(consumer="trainer-allocation-workers", event_id=event_id, event_type="X")
    ProcessedEvent.objects.create(consumer="cache-invalidation-workers", event_id=event_id, event_type="X")
    assert ProcessedEvent.objects.filter(event_id=event_id).count() == 2
