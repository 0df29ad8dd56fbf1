from django.urls import path

from purchases.webhook import payment_confirmation

urlpatterns = [
    path("api/payments/confirmations", payment_confirmation, name="payment-confirmation"),
]
