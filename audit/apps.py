"""App config for the audit trail."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.core import checks

        from audit import signals
        from audit.checks import portal_key_check

        signals.connect()
        checks.register(portal_key_check)
