"""The allocation admin: an allocation's trainer cannot be changed once made (its sessions are that trainer's)."""
import pytest
from django.urls import reverse

from tests.factories import AllocationFactory

pytestmark = pytest.mark.django_db


def test_the_trainer_of_an_allocation_is_read_only_once_made(admin_client):
    allocation = AllocationFactory()
    change = admin_client.get(reverse("admin:allocations_trainerallocation_change", args=[allocation.pk]))
    assert change.status_code == 200
    assert 'name="trainer"' not in change.content.decode()
    assert str(allocation.trainer) in change.content.decode()  # shown, not editable
    add = admin_client.get(reverse("admin:allocations_trainerallocation_add"))
    assert 'name="trainer"' in add.content.decode()
