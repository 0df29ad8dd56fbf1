from django.contrib import admin

from allocations.models import Trainer, TrainerAllocation


@admin.register(Trainer)
class TrainerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "capacity", "is_active")
    list_filter = ("is_active", "courses")
    filter_horizontal = ("courses",)
    search_fields = ("name",)


@admin.register(TrainerAllocation)
class TrainerAllocationAdmin(admin.ModelAdmin):
    list_display = ("id", "student", "course", "trainer", "status", "slot_time", "created_at")
    list_filter = ("status",)
    search_fields = ("=correlation_id", "=student__id")
