from django.contrib import admin

from enrollment.models import Course, Student


@admin.register(Student)
class StudentAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "email", "user", "created_at")
    search_fields = ("name", "email")
    raw_id_fields = ("user",)


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "time_zone", "session_minutes", "price", "currency")
    search_fields = ("title",)
