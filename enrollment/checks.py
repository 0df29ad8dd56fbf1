"""Deploy checks of our own: secrets still at their local default (Django's own check cannot tell)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register

# The defaults in settings/__init__.py. tests/test_deploy.py checks that `check --deploy` without these
# variables reports each of them, so this list cannot drift silently.
LOCAL_VALUES = {
    "SECRET_KEY": "insecure-local-only-secret-key-change-me-in-any-deployment",
    "ALLOCATION_API_TOKEN": "local-allocation-token",
    "PAYMENT_WEBHOOK_SECRET": "local-webhook-secret",
}
# The placeholder of .env.example; a copied line may keep its trailing comment, so look for it inside the value.
PLACEHOLDER = "change-me"


@register(Tags.security, deploy=True)
def secrets_are_not_local_defaults(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return [
        Warning(f"{name} has its local default or placeholder value.",
                hint=f"Set {name} in the environment to a secret value.", id="enrollment.W001")
        for name, local in LOCAL_VALUES.items()
        if getattr(settings, name, "") == local or PLACEHOLDER in getattr(settings, name, "")
    ]
