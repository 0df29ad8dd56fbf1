from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    name = "enrollment"
    verbose_name = "Enrollment"

    def ready(self) -> None:
        from enrollment import checks  # registers the deploy checks

        checks.require_secrets()
