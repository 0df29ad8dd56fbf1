from django.contrib import admin

from sessions_sched.models import TrainingSession


@admin.register(TrainingSession)
class TrainingSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "allocation", "trainer", "scheduled_date", "scheduled_time", "starts_at", "status")
    list_filter = ("status", "scheduled_date")
    date_hierarchy = "starts_at"
