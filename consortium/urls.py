"""Top-level routes: the REST API under /api/v1/, its schema, health checks, the admin,
and the web portal (with its sign-in) at the root."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from consortium import metrics
from consortium.api import health

urlpatterns = [
    path("api/v1/", include("consortium.members.urls")),
    path("api/v1/", include("consortium.rounds.urls")),
    path("api/v1/", include("consortium.audit_api.urls")),
    path("api/v1/", include("consortium.governance.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus scrapes: outside the API and its credentials, guarded by token or address.
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("consortium.portal.urls")),
]
