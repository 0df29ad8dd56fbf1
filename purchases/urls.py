from django.urls import path

from purchases.refunds import payment_refund
from purchases.webhook import payment_confirmation

urlpatterns = [
    path("api/payments/confirmations", payment_confirmation, name="payment-confirmation"),
    path("api/payments/refunds", payment_refund, name="payment-refund"),
]
