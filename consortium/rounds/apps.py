"""App config for rounds."""

from django.apps import AppConfig


class RoundsConfig(AppConfig):
    name = "consortium.rounds"
    label = "rounds"
    verbose_name = "Training rounds"
