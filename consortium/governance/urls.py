"""Routes of the roster API (under /api/v1/)."""

from django.urls import path

from consortium.governance import views

urlpatterns = [
    path("roster", views.RosterView.as_view(), name="roster"),
    path("roster/proposals", views.RosterProposalView.as_view(), name="roster-proposals"),
    path(
        "roster/versions/<int:number>/signatures",
        views.RosterSignatureView.as_view(),
        name="roster-signatures",
    ),
    path(
        "roster/versions/<int:number>/withdraw",
        views.RosterWithdrawView.as_view(),
        name="roster-withdraw",
    ),
    path("objections", views.ObjectionListCreateView.as_view(), name="objections"),
    path("disputes", views.DisputeListView.as_view(), name="disputes"),
    path("disputes/<int:number>", views.DisputeDetailView.as_view(), name="dispute-detail"),
    path(
        "disputes/<int:number>/clearances",
        views.DisputeClearanceView.as_view(),
        name="dispute-clearances",
    ),
]
