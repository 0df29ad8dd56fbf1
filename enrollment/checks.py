"""Secrets fail closed: with DEBUG off no process starts while a secret is unset, the placeholder of
.env.example or a local default (`require_secrets`, called when the app loads, so the web workers, every
command and every consumer refuse alike); with DEBUG on, `check --deploy` still warns (enrollment.W001).

And the direct routes of the web handler (enrollment/handler.py) keep to the site's middleware (E001, E002)."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

# The DEBUG-only defaults of settings/__init__.py, refused whatever DEBUG says in production.
LOCAL_VALUES = settings.LOCAL_DEFAULTS
# The placeholder of .env.example; a copied line may keep its trailing comment, so look for it inside the value.
PLACEHOLDER = "change-me"


def secret_problems() -> list[str]:
    """What is wrong with each secret setting, one sentence each that names the variable."""
    problems = []
    for name, local in LOCAL_VALUES.items():
        try:
            value = getattr(settings, name, "") or ""
        except ImproperlyConfigured:  # Django's own refusal of an empty SECRET_KEY: ours names every variable
            value = ""
        if not value.strip():
            problems.append(f"{name} is unset")
        elif value == local:
            problems.append(f"{name} has its local default value")
        elif PLACEHOLDER in value:
            problems.append(f"{name} is the placeholder {PLACEHOLDER!r} of .env.example")
    return problems


def require_secrets() -> None:
    """Refuse to start with DEBUG off and a missing or public secret."""
    if settings.DEBUG:
        return
    problems = secret_problems()
    if problems:
        raise ImproperlyConfigured(
            "refusing to start with DEBUG off: " + "; ".join(problems) + ". Set each in the environment to a "
            "secret value (docs/operations.md, section 2); the local commands (make demo, make test) set their own.")


@register(Tags.security, deploy=True)
def secrets_are_not_local_defaults(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return [Warning(f"{problem}.", hint="Set it in the environment to a secret value.", id="enrollment.W001")
            for problem in secret_problems()]


@register(Tags.urls)
def direct_routes_are_served_like_the_site(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """DIRECT_MIDDLEWARE (enrollment/handler.py) may leave middleware of MIDDLEWARE out, never add one or change
    their order: a direct route must answer as the site would, minus what it does not use. And every name of
    DIRECT_ROUTES must be a URL without arguments."""
    from django.urls import NoReverseMatch, get_resolver

    errors: list[CheckMessage] = []
    remaining = iter(settings.MIDDLEWARE)
    if not all(any(path == site for site in remaining) for path in settings.DIRECT_MIDDLEWARE):
        errors.append(Error("DIRECT_MIDDLEWARE must be MIDDLEWARE with some entries left out, in MIDDLEWARE's order",
                            id="enrollment.E001"))
    for name in settings.DIRECT_ROUTES:
        try:
            get_resolver().reverse(name)
        except NoReverseMatch:
            errors.append(Error(f"DIRECT_ROUTES: no URL named {name!r} without arguments", id="enrollment.E002"))
    return errors
