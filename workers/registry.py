"""The stage registry and the event contract, loaded from settings by dotted path.

As Django loads `MIDDLEWARE` (`BaseHandler.load_middleware`) and Zulip finds its queue workers, the
framework reads `settings.PIPELINE_STAGES` (the stages in flow order, each a dotted path to a `Stage`) and
`settings.PIPELINE_CONTRACT` (a dotted path to a `Contract`) once, with `import_string`, and forgets them
when a test overrides either setting. Everything that needs the list of stages (consumer commands,
`worker_health`, `create_topics`, the trace page, the demo's invariants, the bench, the e2e harness) reads
it here, so adding a stage is one line in settings.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from workers.contract import Contract
    from workers.stage import Stage

T = TypeVar("T")


@functools.cache
def contract() -> Contract:
    from workers.contract import Contract

    return load(settings.PIPELINE_CONTRACT, "PIPELINE_CONTRACT", Contract)


@functools.cache
def stages() -> tuple[Stage, ...]:
    """Every stage of `settings.PIPELINE_STAGES`, in flow order, with `settings.STAGE_ORDERING` applied."""
    from workers.stage import Stage

    loaded = tuple(load(path, "PIPELINE_STAGES", Stage) for path in settings.PIPELINE_STAGES)
    return _with_ordering(loaded, getattr(settings, "STAGE_ORDERING", {}) or {})


def _with_ordering(loaded: tuple[Stage, ...], overrides: dict[str, str]) -> tuple[Stage, ...]:
    """The stages with the ordering policy an operator set per stage name ("allocations=key-retries-only")."""
    from workers.stage import Ordering

    names = {s.name for s in loaded}
    choices = ", ".join(o.value for o in Ordering)
    for name, value in overrides.items():
        if name not in names:
            raise ImproperlyConfigured(f"STAGE_ORDERING names {name!r}, which is no stage of PIPELINE_STAGES")
        if value not in {o.value for o in Ordering}:
            raise ImproperlyConfigured(f"STAGE_ORDERING {name}={value!r} is not one of {choices}")
    return tuple(dataclasses.replace(s, ordering=Ordering(overrides[s.name])) if s.name in overrides else s
                 for s in loaded)


def stage(name: str) -> Stage:
    """The registered stage of that name (ImproperlyConfigured when none is)."""
    for candidate in stages():
        if candidate.name == name:
            return candidate
    known = ", ".join(s.name for s in stages())
    raise ImproperlyConfigured(f"no stage named {name!r} in PIPELINE_STAGES (known: {known})")


def load(path: str, setting: str, kind: type[T]) -> T:
    """The object at a dotted path of a setting, which must be a `kind`; ImproperlyConfigured naming the
    setting and the entry otherwise. (Also used for settings outside the framework: the page sections.)"""
    try:
        loaded = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{setting} entry {path!r} cannot be imported: {exc}") from exc
    if not isinstance(loaded, kind):
        raise ImproperlyConfigured(f"{setting} entry {path!r} is a {type(loaded).__name__}, not a {kind.__name__}")
    return loaded


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs) -> None:
    if setting in ("PIPELINE_STAGES", "STAGE_ORDERING"):
        stages.cache_clear()
    elif setting == "PIPELINE_CONTRACT":
        contract.cache_clear()
        from workers import envelope

        envelope.forget_contract()
