"""The pipeline console in the admin (Workers > Pipeline): every stage's live state (workers.console), refreshed
every few seconds, with pause and resume.

Permissions: seeing the page is the view permission of StageSample ("Can view pipeline"); pausing and resuming
is `workers.pause_stage`, and each is audited (StageControlAction, with the admin user as actor and the reason
given). Without the permission the buttons are not shown and a POST is refused."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from workers import console, line, registry
from workers.admin import ReadOnlyAdmin
from workers.models import StageSample

REFRESH_SECONDS = 5
CHART_WIDTH, CHART_HEIGHT = 240, 40


def polyline(values: list[float]) -> str:
    """SVG polyline points for `values`, scaled into the chart (the top is the largest value)."""
    top = max(values, default=0) or 1
    step = CHART_WIDTH / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{CHART_HEIGHT - v / top * (CHART_HEIGHT - 2) - 1:.1f}"
                    for i, v in enumerate(values))


@admin.register(StageSample)
class PipelineConsole(ReadOnlyAdmin):
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("", view(self.console), name="workers_stagesample_changelist"),
            path("panel/", view(self.panel), name="workers_pipeline_panel"),
            path("<str:stage>/pause/", view(require_POST(self.pause)), name="workers_pipeline_pause"),
            path("<str:stage>/resume/", view(require_POST(self.resume)), name="workers_pipeline_resume"),
        ]

    def _context(self, request: HttpRequest) -> dict:
        if not self.has_view_permission(request):
            raise PermissionDenied
        views = console.pipeline()
        for view in views:
            view.throughput_points = polyline([p.events_per_second for p in view.history])
            view.lag_points = polyline([p.lag for p in view.history])
            view.peak_rate = max((p.events_per_second for p in view.history), default=0)
            view.peak_lag = max((p.lag for p in view.history), default=0)
        return {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Pipeline",
                "stages": views, "can_pause": request.user.has_perm("workers.pause_stage"),
                "refresh_seconds": REFRESH_SECONDS, "chart_width": CHART_WIDTH, "chart_height": CHART_HEIGHT,
                "history_minutes": int(console.HISTORY.total_seconds() // 60)}

    def console(self, request: HttpRequest) -> HttpResponse:
        return TemplateResponse(request, "admin/workers/pipeline.html", self._context(request))

    def panel(self, request: HttpRequest) -> HttpResponse:
        return TemplateResponse(request, "admin/workers/pipeline_panel.html", self._context(request))

    def _control(self, request: HttpRequest, stage: str) -> str:
        if not request.user.has_perm("workers.pause_stage"):
            raise PermissionDenied
        if stage not in {s.name for s in registry.stages()}:
            raise Http404(f"no stage {stage!r}")
        return f"admin:{request.user.get_username()}"

    def pause(self, request: HttpRequest, stage: str) -> HttpResponse:
        actor = self._control(request, stage)
        reason = request.POST.get("reason", "").strip()
        if not reason:
            messages.error(request, f"Say why {stage} is paused: the reason goes in the audit trail.")
        elif line.pause(stage, reason=reason, actor=actor):
            messages.success(request, f"{stage} paused; its consumers stop within "
                                      f"{line.PAUSE_OBEYED_WITHIN_SECONDS} s.")
        else:
            messages.warning(request, f"{stage} was paused already.")
        return HttpResponseRedirect(reverse("admin:workers_stagesample_changelist"))

    def resume(self, request: HttpRequest, stage: str) -> HttpResponse:
        actor = self._control(request, stage)
        if line.resume(stage, actor=actor, reason=request.POST.get("reason", "").strip()):
            messages.success(request, f"{stage} resumed.")
        else:
            messages.warning(request, f"{stage} was not paused.")
        return HttpResponseRedirect(reverse("admin:workers_stagesample_changelist"))
