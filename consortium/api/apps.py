"""App config for the REST API plumbing: the throttle cache table and the security log."""

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "consortium.api"
    label = "api"
    verbose_name = "API"

    def ready(self) -> None:
        from consortium.api import signals  # app registry must be ready first

        signals.connect()
