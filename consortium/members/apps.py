"""App config for member banks."""

from django.apps import AppConfig


class MembersConfig(AppConfig):
    name = "consortium.members"
    label = "members"
    verbose_name = "Member banks"
