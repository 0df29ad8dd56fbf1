from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers: processed events, outbox, dead letters"

    def ready(self) -> None:
        from workers import checks  # noqa: F401  (registers the stage registry's system check)
