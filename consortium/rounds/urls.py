"""Routes of the rounds API."""

from django.urls import path

from consortium.rounds import views

urlpatterns = [
    path("rounds/", views.RoundListView.as_view(), name="round-list"),
    path("rounds/current", views.RoundCurrentView.as_view(), name="round-current"),
    path("rounds/<int:number>", views.RoundDetailView.as_view(), name="round-detail"),
    path(
        "rounds/<int:number>/aggregate", views.RoundAggregateView.as_view(), name="round-aggregate"
    ),
    path("rounds/<int:number>/update", views.RoundUpdateView.as_view(), name="round-update"),
    path("rounds/<int:number>/metrics", views.RoundMetricsView.as_view(), name="round-metrics"),
    path("key-epochs/current", views.KeyEpochCurrentView.as_view(), name="key-epoch-current"),
    path("key-epochs/", views.KeyEpochCreateView.as_view(), name="key-epoch-create"),
    path("policies/", views.PolicyListCreateView.as_view(), name="policy-list"),
    path("policies/<int:pk>/activate", views.PolicyActivateView.as_view(), name="policy-activate"),
]
