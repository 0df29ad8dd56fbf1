from django.urls import path

from allocations.api import allocate_batch, allocate_one, release_purchase

urlpatterns = [
    path("api/allocations", allocate_one, name="allocations"),
    path("api/allocations/batch", allocate_batch, name="allocations-batch"),
    path("api/allocations/release", release_purchase, name="allocations-release"),
]
