from django.apps import AppConfig


class SessionsSchedConfig(AppConfig):
    name = "sessions_sched"
    verbose_name = "Training sessions"

    def ready(self) -> None:
        from allocations.signals import allocation_released
        from sessions_sched.scheduler import cancel_future_sessions

        allocation_released.connect(cancel_future_sessions, dispatch_uid="sessions_sched.cancel_future_sessions")
