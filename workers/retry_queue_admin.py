"""The retry queue in the admin (Workers > Retry queue): every event waiting for another attempt, per stage, with
its state, attempt count, due time and last error; "retry now" and "discard" need their own permissions and are
audited (workers.retry_queue). Read-only otherwise."""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.text import Truncator

from workers import ordering, retry_queue
from workers.admin import ReadOnlyAdmin
from workers.models import PendingRetry, RetryQueueAction

ERROR_SHOWN = 120  # characters of the last error in the list


class StageFilter(admin.SimpleListFilter):
    title = "stage"
    parameter_name = "consumer"

    def lookups(self, request, model_admin):
        from workers.registry import stages

        return [(s.group_id, s.name) for s in stages()]

    def queryset(self, request, queryset):
        return queryset.filter(consumer=self.value()) if self.value() else queryset


@admin.register(PendingRetry)
class RetryQueueAdmin(ReadOnlyAdmin):
    list_display = ("id", "stage", "state", "attempts", "next_attempt_at", "error_class", "last_error",
                    "last_failed_at", "event_id")
    list_filter = (StageFilter, "dead_lettered", "next_attempt_at")
    search_fields = ("=event_id", "=correlation_id")
    ordering = ("next_attempt_at", "id")
    actions = ["retry_selected_now", "discard_selected"]
    readonly_fields = ("consumer", "event_id", "topic", "partition", "offset", "attempts", "next_attempt_at",
                       "first_failed_at", "last_failed_at", "error_class", "error_message", "traceback",
                       "correlation_id", "dead_lettered")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        behind = ExpressionWrapper(ordering.earlier_of_key(), output_field=BooleanField())
        return super().get_queryset(request).annotate(behind=behind)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.retry_pendingretry")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.discard_pendingretry")

    @admin.display(description="stage", ordering="consumer")
    def stage(self, obj: PendingRetry) -> str:
        return retry_queue.stage_of(obj.consumer)

    @admin.display(description="state")
    def state(self, obj: PendingRetry) -> str:
        if obj.dead_lettered:
            return "holds its key (dead letter)"
        return "waits behind an earlier event of its key" if getattr(obj, "behind", False) else "retrying"

    @admin.display(description="last error")
    def last_error(self, obj: PendingRetry) -> str:
        return Truncator(obj.error_message).chars(ERROR_SHOWN)

    def _report(self, request: HttpRequest, verb: str, outcome: retry_queue.Outcome) -> None:
        self.message_user(request, f"{verb} {outcome.done} waiting event(s).", messages.SUCCESS)
        if outcome.held:
            self.message_user(request, f"{outcome.held} left alone: they hold their key for a dead letter; "
                                       "replay or discard the dead letter instead.", messages.WARNING)
        if outcome.busy:
            self.message_user(request, f"{outcome.busy} left alone: a consumer is retrying them right now.",
                              messages.WARNING)

    @admin.action(permissions=["retry"], description="Retry selected now")
    def retry_selected_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._report(request, "Made due now:", retry_queue.retry_now(queryset, actor=request.user.get_username()))

    @admin.action(permissions=["discard"], description="Discard selected (kept as discarded dead letters)")
    def discard_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Two steps, as the dead letters' discard: a confirmation page asks for the reason."""
        reason = request.POST.get("reason", "").strip()
        if request.POST.get("post") == "yes" and reason:
            outcome = retry_queue.discard(queryset, actor=request.user.get_username(), reason=reason)
            self._report(request, "Discarded", outcome)
            return None
        context = {**self.admin_site.each_context(request), "title": "Discard waiting events: give a reason",
                   "opts": self.model._meta, "queryset": queryset, "media": self.media,
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                   "missing_reason": request.POST.get("post") == "yes"}
        return TemplateResponse(request, "admin/workers/pendingretry/discard_confirmation.html", context)


@admin.register(RetryQueueAction)
class RetryQueueActionAdmin(ReadOnlyAdmin):
    """The retry queue's audit trail, read-only."""

    list_display = ("created_at", "actor", "action", "count", "event_ids", "reason")
    list_filter = ("action", "created_at")
    readonly_fields = list_display
    fields = list_display
