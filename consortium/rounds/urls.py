"""Routes of the rounds API."""

from django.urls import path

from consortium.rounds import gate_views, secagg_views, served_views, views

urlpatterns = [
    path("rounds/", views.RoundListView.as_view(), name="round-list"),
    path("rounds/current", views.RoundCurrentView.as_view(), name="round-current"),
    path("rounds/<int:number>", views.RoundDetailView.as_view(), name="round-detail"),
    path(
        "rounds/<int:number>/aggregate", views.RoundAggregateView.as_view(), name="round-aggregate"
    ),
    path("rounds/<int:number>/update", views.RoundUpdateView.as_view(), name="round-update"),
    path("rounds/<int:number>/metrics", views.RoundMetricsView.as_view(), name="round-metrics"),
    path(
        "rounds/<int:number>/served-model",
        served_views.ServedModelView.as_view(),
        name="round-served-model",
    ),
    # The evaluation gate (docs/robustness.md, "The evaluation gate").
    path("rounds/<int:number>/verdicts", gate_views.VerdictsView.as_view(), name="round-verdicts"),
    # Secure aggregation v2 (docs/secure-aggregation.md, "The round protocol (part 2)").
    path(
        "rounds/<int:number>/mask-keys",
        secagg_views.MaskKeysView.as_view(),
        name="round-mask-keys",
    ),
    path("rounds/<int:number>/unmask", secagg_views.UnmaskView.as_view(), name="round-unmask"),
    path("rounds/<int:number>/reveal", secagg_views.RevealView.as_view(), name="round-reveal"),
    path(
        "rounds/<int:number>/submissions/<slug:bank>",
        secagg_views.SubmissionDownloadView.as_view(),
        name="round-submission",
    ),
    path("key-epochs/current", views.KeyEpochCurrentView.as_view(), name="key-epoch-current"),
    path("key-epochs/", views.KeyEpochCreateView.as_view(), name="key-epoch-create"),
    path("policies/", views.PolicyListCreateView.as_view(), name="policy-list"),
    path(
        "policies/<slug:name>/versions/<int:version>",
        views.PolicyVersionView.as_view(),
        name="policy-version",
    ),
    path("policies/<int:pk>/activate", views.PolicyActivateView.as_view(), name="policy-activate"),
]
