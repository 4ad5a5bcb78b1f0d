"""App config for the REST API plumbing: its only model-less table is the throttle cache."""

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "consortium.api"
    label = "api"
    verbose_name = "API"
