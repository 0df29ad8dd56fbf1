"""Dead letters in the admin: review (read-only), replay and discard (dedicated permissions, audited), and the
enrollment trace page. Nobody can add, edit or delete a dead letter here: the original message is evidence."""
from __future__ import annotations

import json
import uuid

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from workers import dead_letter_actions, ordering
from workers.dead_letter_store import UNREPLAYABLE
from workers.dead_letters import decode_headers
from workers.models import DeadLetter, DeadLetterAction, StageControlAction, StagePause
from workers.registry import contract
from workers.trace import build_trace, trace_link

# The partition key is the contract's key field ("student_id" here): the column says which.
KEY_LABEL = contract().key_field.replace("_", " ").capitalize()
MAX_PAYLOAD_SHOWN = 50_000  # characters; an oversized poison message must not make the page unusable


def payload_text(payload: bytes) -> str:
    """Pretty JSON when the bytes parse as JSON, else a safe repr of the bytes (escaped by the template)."""
    try:
        text = json.dumps(json.loads(payload.decode("utf-8")), indent=2, ensure_ascii=False, sort_keys=False)
    except (UnicodeDecodeError, ValueError):
        text = repr(payload)
    if len(text) > MAX_PAYLOAD_SHOWN:
        text = text[:MAX_PAYLOAD_SHOWN] + f"\n... ({len(payload)} bytes in all, truncated for display)"
    return text


def header_value(value: bytes | None) -> str:
    """A header's bytes, shown as UTF-8 where they are (stored losslessly, see workers.dead_letters)."""
    return "(null)" if value is None else value.decode("utf-8", errors="backslashreplace")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the framework and its commands: shown, never edited here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ("id", "stage", "reason", "error_class", "status", "event_type", "partition_key_shown",
                    "waiting_behind_shown", "correlation_id", "attempts", "last_failed_at")
    list_filter = ("stage", "reason", "error_class", "status", "malformed", "last_failed_at", "created_at")
    search_fields = ("=correlation_id", "=event_id", "=partition_key")  # applied by get_search_results below
    search_help_text = f"Exact correlation id, event id, dead letter id (UUIDs) or {KEY_LABEL.lower()}."
    ordering = ("-last_failed_at", "-id")
    list_per_page = 50
    actions = ["replay_selected", "replay_at_rate", "discard_selected"]
    fieldsets = (
        ("Status", {"fields": ("status", "status_changed_at", "status_changed_by", "status_reason",
                               "waiting_behind_shown", "enrollment_trace")}),
        ("Failure", {"fields": ("stage", "consumer_group", "reason", "error_class", "error_message", "attempts",
                                "first_failed_at", "last_failed_at", "traceback_text", "malformed",
                                "malformed_detail", "cut_shown")}),
        ("Event", {"fields": ("event_id", "event_type", "correlation_id", "partition_key_shown", "dead_letter_id",
                              "created_at")}),
        ("Original message", {"fields": ("original_topic", "original_partition", "original_offset", "key_text",
                                         "headers_table", "payload_pretty")}),
    )
    readonly_fields = ("status", "status_changed_at", "status_changed_by", "status_reason", "waiting_behind_shown",
                       "enrollment_trace",
                       "stage", "consumer_group", "reason", "malformed", "malformed_detail", "cut_shown",
                       "error_class", "error_message", "attempts", "first_failed_at",
                       "last_failed_at", "traceback_text", "event_id", "event_type", "correlation_id",
                       "partition_key_shown", "dead_letter_id", "created_at", "original_topic", "original_partition",
                       "original_offset", "key_text", "headers_table", "payload_pretty")

    # --- permissions: read-only for everyone (ReadOnlyAdmin); actions need their own permission -------
    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.replay_deadletter")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.discard_deadletter")

    # --- list ---------------------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return ordering.annotate_waiting_behind(super().get_queryset(request))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Exact matches only: a UUID matches correlation, event or dead letter id; anything else, the partition
        key (the student id). (Django's own `=` search would compare UUIDs as text, or fail on a wrong type.)"""
        query = Q()
        for term in search_term.split():
            try:
                value = uuid.UUID(term)
                query |= Q(correlation_id=value) | Q(event_id=value) | Q(dead_letter_id=value)
                continue
            except ValueError:
                pass
            query |= Q(partition_key=term)
        return (queryset.filter(query) if query else queryset), False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        counts = dict(DeadLetter.objects.values_list("status").annotate(n=Count("id")).order_by())
        extra_context = {
            **(extra_context or {}),
            "status_counts": [(value, label, counts.get(value, 0)) for value, label in DeadLetter.Status.choices],
        }
        return super().changelist_view(request, extra_context)

    # --- detail -------------------------------------------------------------------------------------
    @admin.display(description=KEY_LABEL, ordering="partition_key")
    def partition_key_shown(self, obj: DeadLetter) -> str:
        return obj.partition_key or "-"

    @admin.display(description="Waiting behind it", ordering="waiting_behind")
    def waiting_behind_shown(self, obj: DeadLetter) -> int:
        """Events of this key the group holds back until the letter is discarded or replayed (key order)."""
        return obj.waiting_behind

    @admin.display(description="Payload")
    def payload_pretty(self, obj: DeadLetter) -> str:
        return format_html('<pre class="dl-payload">{}</pre>', payload_text(bytes(obj.payload)))

    @admin.display(description="Key")
    def key_text(self, obj: DeadLetter) -> str:
        if obj.key is None:
            return "(none)"
        key = bytes(obj.key)
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return repr(key)

    @admin.display(description="Headers")
    def headers_table(self, obj: DeadLetter) -> str:
        if not obj.headers:
            return "(none)"
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>",
                                ((name, header_value(value)) for name, value in decode_headers(obj.headers)))
        return format_html('<table class="dl-headers">{}</table>', rows)

    @admin.display(description="Cut to fit the broker")
    def cut_shown(self, obj: DeadLetter) -> str:
        if not obj.cut:
            return "(nothing: the original message is whole)"
        return format_html_join("", "<div>{}: {}</div>", sorted(obj.cut.items()))

    @admin.display(description="Traceback")
    def traceback_text(self, obj: DeadLetter) -> str:
        return format_html('<pre class="dl-traceback">{}</pre>', obj.traceback or "(none)")

    @admin.display(description="Enrollment trace")
    def enrollment_trace(self, obj: DeadLetter) -> str:
        return trace_link(obj.correlation_id)

    # --- actions ------------------------------------------------------------------------------------
    @admin.action(permissions=["replay"], description="Replay selected dead letters")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        result = dead_letter_actions.replay(list(queryset), actor=request.user.get_username())
        self.message_user(request, f"Replayed {result.replayed} dead letter(s) to their original topics.",
                          messages.SUCCESS)
        for why, count in sorted(result.refused.items()):
            self.message_user(request, f"{count} refused, {UNREPLAYABLE[why]}.", messages.ERROR)
        if result.skipped:
            self.message_user(request, f"{result.skipped} not replayed (discarded, resolved, replayed a moment "
                                       "ago, or not acknowledged by the broker).", messages.WARNING)

    @admin.action(permissions=["replay"], description="Replay selected at a set rate (a replay job)")
    def replay_at_rate(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Two steps: a page asks for the rate, then a ReplayJob starts (workers.replay_jobs)."""
        return replay_admin.start_job(self, request, queryset)

    @admin.action(permissions=["discard"], description="Discard selected dead letters")
    def discard_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Two steps: the first POST shows a confirmation page asking for a reason; its form posts the same
        action again with `post=yes` and the reason."""
        reason = request.POST.get("reason", "").strip()
        if request.POST.get("post") == "yes" and reason:
            rows = list(queryset)
            done = dead_letter_actions.discard(rows, actor=request.user.get_username(), reason=reason)
            self.message_user(request, f"Discarded {done} dead letter(s).", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Discard dead letters: give a reason",
            "opts": self.model._meta,
            "queryset": queryset,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "missing_reason": request.POST.get("post") == "yes",
            "media": self.media,
        }
        return TemplateResponse(request, "admin/workers/deadletter/discard_confirmation.html", context)

    # --- the enrollment trace -----------------------------------------------------------------------
    def get_urls(self) -> list:
        trace = path("trace/<uuid:correlation_id>/", self.admin_site.admin_view(self.trace_view),
                     name="workers_deadletter_trace")
        return [trace, *super().get_urls()]

    def trace_view(self, request: HttpRequest, correlation_id: uuid.UUID) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"Enrollment trace {correlation_id}",
            "opts": self.model._meta,
            "trace": build_trace(correlation_id),
        }
        return TemplateResponse(request, "admin/workers/deadletter/trace.html", context)


@admin.register(DeadLetterAction)
class DeadLetterActionAdmin(ReadOnlyAdmin):
    """The audit trail, read-only."""

    list_display = ("created_at", "actor", "action", "count", "dead_letter_ids", "reason")
    list_filter = ("action", "created_at")
    search_fields = ("actor",)
    readonly_fields = ("created_at", "actor", "action", "count", "dead_letter_ids", "reason")
    fields = readonly_fields


@admin.register(StagePause)
class StagePauseAdmin(ReadOnlyAdmin):
    """The paused stages (stop-the-line or `pause_stage`); `resume_stage NAME` lifts a pause."""

    list_display = ("stage", "paused_at", "paused_by", "automatic", "reason")
    readonly_fields = list_display
    fields = list_display


@admin.register(StageControlAction)
class StageControlActionAdmin(ReadOnlyAdmin):
    """The audit trail of pauses and resumes."""

    list_display = ("created_at", "stage", "action", "actor", "reason", "accept_dead_letters")
    list_filter = ("stage", "action", "created_at")
    readonly_fields = list_display
    fields = list_display


# The operator's other pages register themselves; they import this module's admin classes, so they come last.
from workers import console_admin, replay_admin, retry_queue_admin  # noqa: E402,F401
