from django.contrib import admin

from allocations.models import Trainer, TrainerAllocation
from workers.trace import trace_link


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
    readonly_fields = ("enrollment_trace",)

    @admin.display(description="Enrollment trace")
    def enrollment_trace(self, obj: TrainerAllocation) -> str:
        return trace_link(obj.correlation_id)
