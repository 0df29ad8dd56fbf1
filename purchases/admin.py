from django.contrib import admin

from purchases.models import Payment, Refund, StudentCoursePurchase
from workers.trace import trace_link


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ("provider_refund_id", "amount", "currency", "reason", "refunded_at", "received_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("id", "provider_payment_id", "student", "course", "amount", "currency", "status",
                    "status_reason", "received_at")
    list_filter = ("status", "currency")
    search_fields = ("provider_payment_id", "=correlation_id", "=student__id")
    readonly_fields = ("correlation_id", "body_sha256", "received_at", "status_changed_at", "enrollment_trace")
    inlines = (RefundInline,)

    @admin.display(description="Enrollment trace")
    def enrollment_trace(self, obj: Payment) -> str:
        return trace_link(obj.correlation_id)


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ("id", "provider_refund_id", "provider_payment_id", "payment", "amount", "currency", "reason",
                    "payment_status", "refunded_at")
    list_filter = ("reason", "payment__status", ("payment", admin.EmptyFieldListFilter))
    search_fields = ("provider_refund_id", "provider_payment_id")
    readonly_fields = ("payment", "body_sha256", "received_at")
    list_select_related = ("payment",)

    @admin.display(description="Payment status", ordering="payment__status")
    def payment_status(self, obj: Refund) -> str:
        return obj.payment.get_status_display() if obj.payment else "payment not seen yet"


@admin.register(StudentCoursePurchase)
class StudentCoursePurchaseAdmin(admin.ModelAdmin):
    list_display = ("id", "student", "course", "payment", "is_active", "created_at", "cancelled_at", "cancel_reason")
    list_filter = ("is_active", "cancel_reason")
    search_fields = ("=correlation_id", "=student__id")
    readonly_fields = ("enrollment_trace", "cancelled_at", "cancel_reason")

    @admin.display(description="Enrollment trace")
    def enrollment_trace(self, obj: StudentCoursePurchase) -> str:
        return trace_link(obj.correlation_id)
