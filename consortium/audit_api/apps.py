"""App config for the audit API: the audit trail's REST views and report export."""

from django.apps import AppConfig


class AuditApiConfig(AppConfig):
    name = "consortium.audit_api"
    label = "audit_api"
    verbose_name = "Audit API"
