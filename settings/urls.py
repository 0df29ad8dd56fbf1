"""The URLs of the whole site: the composition root mounts each app's views."""
from django.contrib import admin
from django.urls import include, path

from enrollment import health, views, web_metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", web_metrics.metrics_view, name="metrics"),
    path("", include("purchases.urls")),
    path("", include("allocations.urls")),
    path("api/students/<int:student_id>/home", views.student_home, name="student-home"),
    path("api/students/<int:student_id>/learning", views.student_learning, name="student-learning"),
]
