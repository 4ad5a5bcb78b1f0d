"""Routes of the member-bank API."""

from django.urls import path

from consortium.members import views

urlpatterns = [
    path("banks/me", views.BankMeView.as_view(), name="bank-me"),
    path("banks/me/signing-key", views.BankSigningKeyView.as_view(), name="bank-signing-key"),
    path("banks/", views.BankListCreateView.as_view(), name="bank-list"),
    path(
        "banks/<slug:slug>/rotate-credential",
        views.BankRotateCredentialView.as_view(),
        name="bank-rotate-credential",
    ),
    path(
        "banks/<slug:slug>/signing-key",
        views.BankSigningKeyRotateView.as_view(),
        name="bank-signing-key-rotate",
    ),
    path("banks/<slug:slug>/<str:action>", views.BankStatusView.as_view(), name="bank-status"),
]
