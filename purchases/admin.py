from django.contrib import admin

from purchases.models import Payment, StudentCoursePurchase
from workers.trace import trace_link


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("id", "provider_payment_id", "student", "course", "amount", "currency", "received_at")
    search_fields = ("provider_payment_id", "=correlation_id", "=student__id")
    readonly_fields = ("correlation_id", "body_sha256", "received_at", "enrollment_trace")

    @admin.display(description="Enrollment trace")
    def enrollment_trace(self, obj: Payment) -> str:
        return trace_link(obj.correlation_id)


@admin.register(StudentCoursePurchase)
class StudentCoursePurchaseAdmin(admin.ModelAdmin):
    list_display = ("id", "student", "course", "payment", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("=correlation_id", "=student__id")
    readonly_fields = ("enrollment_trace",)

    @admin.display(description="Enrollment trace")
    def enrollment_trace(self, obj: StudentCoursePurchase) -> str:
        return trace_link(obj.correlation_id)
