"""Routes of the web portal, mounted at the site root."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from consortium.portal.access import with_secure_headers
from consortium.portal.views import accounts, audit, banks, overview, policies, roster, rounds

app_name = "portal"

# What an operator does on one bank's page: every route below /banks/<slug>/.
_bank_routes = [
    path("", banks.bank_detail, name="bank-detail"),
    path("status", banks.bank_status, name="bank-status"),
    path("rotate-credential", banks.bank_rotate_credential, name="bank-rotate-credential"),
    path("signing-key", banks.bank_signing_key, name="bank-signing-key"),
    path("representatives", banks.bank_representative_add, name="bank-representative-add"),
    path(
        "representatives/<int:pk>/remove",
        banks.bank_representative_remove,
        name="bank-representative-remove",
    ),
]
# One policy version: below /policies/<pk>/.
_policy_routes = [
    path("", policies.policy_detail, name="policy-detail"),
    path("new-version", policies.policy_new_version, name="policy-new-version"),
    path("activate", policies.policy_activate, name="policy-activate"),
]

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
    path("rounds/<int:number>/manifest.json", rounds.round_manifest, name="round-manifest"),
    path("banks/", banks.bank_list, name="bank-list"),
    path("banks/new", banks.bank_onboard, name="bank-onboard"),
    path("banks/<slug:slug>/", include(_bank_routes)),
    path("policies/", policies.policy_list, name="policy-list"),
    path("policies/new", policies.policy_new, name="policy-new"),
    path("policies/compare", policies.policy_compare, name="policy-compare"),
    path("policies/<int:pk>/", include(_policy_routes)),
    path("roster/", roster.roster_page, name="roster"),
    path("accounts/", accounts.account_list, name="accounts"),
    path("accounts/<int:pk>/setup", accounts.account_setup_resend, name="account-setup-resend"),
    path("accounts/<int:pk>/deactivate", accounts.account_deactivate, name="account-deactivate"),
    path("accounts/<int:pk>/reactivate", accounts.account_reactivate, name="account-reactivate"),
    path("setup/<uidb64>/<token>/", accounts.AccountSetupView.as_view(), name="account-setup"),
    path("audit/", audit.audit_list, name="audit"),
    path("audit/verification", audit.audit_verification, name="audit-verification"),
]
