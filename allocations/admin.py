from django.contrib import admin, messages
from django.db import transaction

from allocations.models import Trainer, TrainerAllocation
from allocations.release import release
from workers.trace import trace_link

Status = TrainerAllocation.Status


@admin.register(Trainer)
class TrainerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "capacity", "is_active")
    list_filter = ("is_active", "courses")
    filter_horizontal = ("courses",)
    search_fields = ("name",)


@admin.register(TrainerAllocation)
class TrainerAllocationAdmin(admin.ModelAdmin):
    list_display = ("id", "student", "course", "trainer", "status", "slot_time", "purchase", "created_at",
                    "released_at")
    list_filter = ("status",)
    search_fields = ("=correlation_id", "=student__id")
    readonly_fields = ("enrollment_trace", "released_at", "purchase")
    actions = ("end_allocations",)

    def get_readonly_fields(self, request, obj: TrainerAllocation | None = None) -> tuple[str, ...]:
        """An allocation's trainer is fixed once made: its sessions are booked in that trainer's time, and
        PostgreSQL holds each session to its allocation's trainer (sessions_sched migration 0005). To move a
        student to another trainer, end this allocation and allocate again through the allocation API."""
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "trainer") if obj is not None else fields

    @admin.display(description="Enrollment trace")
    def enrollment_trace(self, obj: TrainerAllocation) -> str:
        return trace_link(obj.correlation_id)

    def save_model(self, request, obj: TrainerAllocation, form, change: bool) -> None:
        """Ending or cancelling a holding allocation here releases it: its future sessions are cancelled and
        the student's pages refreshed, as when its purchase is refunded."""
        was = TrainerAllocation.objects.filter(pk=obj.pk).values_list("status", flat=True).first() if change else None
        releasing = was in TrainerAllocation.HOLDING_STATUSES and obj.status in (Status.ENDED, Status.CANCELLED)
        with transaction.atomic():
            if releasing:
                new_status, obj.status = obj.status, was
            super().save_model(request, obj, form, change)
            if releasing:
                [done] = release(allocation_ids=[obj.pk], status=new_status)
                obj.status = new_status
                self.message_user(request, f"{done.sessions_cancelled} future session(s) cancelled.")

    @admin.action(description="End selected allocations (cancels their future sessions)", permissions=["change"])
    def end_allocations(self, request, queryset) -> None:
        with transaction.atomic():
            done = release(allocation_ids=list(queryset.values_list("pk", flat=True)), status=Status.ENDED)
        self.message_user(request, f"Ended {len(done)} allocation(s); "
                                   f"{sum(d.sessions_cancelled for d in done)} future session(s) cancelled.",
                          messages.SUCCESS)
