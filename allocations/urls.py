from django.urls import path

from allocations.api import allocate_batch, allocate_one

urlpatterns = [
    path("api/allocations", allocate_one, name="allocations"),
    path("api/allocations/batch", allocate_batch, name="allocations-batch"),
]
