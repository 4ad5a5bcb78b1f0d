"""App config for the roster the banks sign."""

from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "consortium.governance"
    label = "governance"
    verbose_name = "Roster (banks' governance)"
