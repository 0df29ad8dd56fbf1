"""Replay jobs and the parking lot in the admin.

- "Replay selected at a set rate" (the dead letters' action, replay permission) asks for a rate and starts a
  ReplayJob; Workers > Replay jobs shows each job's progress, and "Cancel" stops one where it is.
- Workers > Parking lot lists the dead letters that failed again after a replay (status parked), with the dead
  letters' own actions: replay one once its cause is fixed, or discard it."""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from workers import replay_jobs
from workers.admin import DeadLetterAdmin, ReadOnlyAdmin
from workers.models import DeadLetter, ParkedDeadLetter, ReplayJob

DEFAULT_RATE = 50  # dead letters a second


def start_job(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    rate = request.POST.get("rate", "").strip()
    if request.POST.get("post") == "yes" and rate.isdigit() and int(rate) >= 1:
        rows = list(queryset.order_by("last_failed_at", "id"))
        job = replay_jobs.start(rows, rate=int(rate), actor=request.user.get_username())
        link = reverse("admin:workers_replayjob_changelist")
        model_admin.message_user(request, format_html(
            'Replay job {} started: {} dead letter(s) at {}/s. Its progress is under <a href="{}">Replay jobs</a>.',
            job.pk, job.total, job.rate, link), messages.SUCCESS)
        return None
    context = {**model_admin.admin_site.each_context(request), "title": "Replay at a set rate",
               "opts": model_admin.model._meta, "queryset": queryset, "count": queryset.count(),
               "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME, "default_rate": DEFAULT_RATE,
               "bad_rate": request.POST.get("post") == "yes", "media": model_admin.media}
    return TemplateResponse(request, "admin/workers/deadletter/replay_rate.html", context)


@admin.register(ReplayJob)
class ReplayJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "created_by", "status", "rate", "progress", "replayed", "refused",
                    "skipped", "finished_at")
    list_filter = ("status", "created_at")
    readonly_fields = ("created_at", "created_by", "status", "rate", "progress", "replayed", "refused", "skipped",
                       "next_chunk_at", "finished_at", "dead_letter_ids")
    fields = readonly_fields
    actions = ["cancel_selected"]

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.replay_deadletter")

    @admin.display(description="progress")
    def progress(self, job: ReplayJob) -> str:
        share = job.position / job.total if job.total else 1.0
        return format_html('<progress max="{}" value="{}"></progress> {} of {} ({}%)', job.total, job.position,
                           job.position, job.total, round(share * 100))

    @admin.action(permissions=["replay"], description="Cancel selected replay jobs")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        cancelled = sum(replay_jobs.cancel(job) for job in queryset)
        self.message_user(request, f"Cancelled {cancelled} replay job(s).", messages.SUCCESS)


@admin.register(ParkedDeadLetter)
class ParkingLotAdmin(DeadLetterAdmin):
    actions = ["replay_selected", "discard_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(status=DeadLetter.Status.PARKED)

    def get_urls(self) -> list:
        return admin.ModelAdmin.get_urls(self)  # the enrollment trace stays the dead letters' own page
