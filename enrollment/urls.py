from django.contrib import admin
from django.urls import include, path

from enrollment import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("purchases.urls")),
    path("", include("allocations.urls")),
    path("api/students/<int:student_id>/home", views.student_home, name="student-home"),
    path("api/students/<int:student_id>/learning", views.student_learning, name="student-learning"),
]
