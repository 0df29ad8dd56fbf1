from django.apps import AppConfig


class SessionsSchedConfig(AppConfig):
    name = "sessions_sched"
    verbose_name = "Training sessions"
