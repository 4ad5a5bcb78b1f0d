"""Routes of the web portal, mounted at the site root."""

from django.contrib.auth import views as auth_views
from django.urls import path

from consortium.portal.access import with_secure_headers
from consortium.portal.views import audit, banks, overview, policies, roster, rounds

app_name = "portal"

urlpatterns = [
    path(
        "login/",
        with_secure_headers(
            auth_views.LoginView.as_view(
                template_name="portal/login.html", redirect_authenticated_user=True
            )
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", overview.overview, name="overview"),
    path("rounds/", rounds.round_list, name="round-list"),
    path("rounds/progress", overview.progress, name="round-progress"),
    path("rounds/<int:number>/", rounds.round_detail, name="round-detail"),
    path("banks/", banks.bank_list, name="bank-list"),
    path("banks/new", banks.bank_onboard, name="bank-onboard"),
    path("banks/<slug:slug>/", banks.bank_detail, name="bank-detail"),
    path("banks/<slug:slug>/status", banks.bank_status, name="bank-status"),
    path(
        "banks/<slug:slug>/rotate-credential",
        banks.bank_rotate_credential,
        name="bank-rotate-credential",
    ),
    path("banks/<slug:slug>/signing-key", banks.bank_signing_key, name="bank-signing-key"),
    path(
        "banks/<slug:slug>/representatives",
        banks.bank_representative_add,
        name="bank-representative-add",
    ),
    path(
        "banks/<slug:slug>/representatives/<int:pk>/remove",
        banks.bank_representative_remove,
        name="bank-representative-remove",
    ),
    path("policies/", policies.policy_list, name="policy-list"),
    path("policies/new", policies.policy_new, name="policy-new"),
    path("policies/<int:pk>/", policies.policy_detail, name="policy-detail"),
    path("policies/<int:pk>/new-version", policies.policy_new_version, name="policy-new-version"),
    path("policies/<int:pk>/activate", policies.policy_activate, name="policy-activate"),
    path("roster/", roster.roster_page, name="roster"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/verification", audit.audit_verification, name="audit-verification"),
]
