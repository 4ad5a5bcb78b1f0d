"""Routes of the audit API (under /api/v1/)."""

from django.urls import path

from consortium.audit_api import views

urlpatterns = [
    path("audit/events", views.AuditEventListView.as_view(), name="audit-events"),
    path("audit/verify", views.AuditVerifyView.as_view(), name="audit-verify"),
    path("audit/checkpoints", views.CheckpointListView.as_view(), name="audit-checkpoints"),
    path("audit/report", views.AuditReportView.as_view(), name="audit-report"),
    path("audit/public-key", views.PortalPublicKeyView.as_view(), name="audit-public-key"),
]
