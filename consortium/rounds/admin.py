"""Operator back office for policies, key epochs and rounds.

Every change goes through ``consortium.rounds.services`` (which audits it): a policy is
added or copied into a new version and activated by the services, never edited in place;
a key epoch is registered by its service. Refusals are audited like ones through the API.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from rest_framework.exceptions import ParseError

from audit.admin import ReadOnlyAdmin
from consortium.api.auth import user_is_operator
from consortium.api.errors import ApplicationError
from consortium.api.parsers import bounded_json_loads
from consortium.members.admin import refused
from consortium.rounds import services
from consortium.rounds.models import (
    GateVerdict,
    KeyEpoch,
    MetricReport,
    Round,
    RoundPolicy,
    Submission,
    default_ckks_params,
)


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


@admin.register(RoundPolicy)
class RoundPolicyAdmin(admin.ModelAdmin):
    def has_operate_permission(self, request: HttpRequest) -> bool:
        # Admin actions change state: operators only, whatever view rights others hold.
        return user_is_operator(request.user)

    list_display = (
        "name",
        "version",
        "active",
        "min_banks",
        "local_epochs",
        "max_rounds",
        "secure_aggregation",
        "created_at",
    )
    list_filter = ("active", "name")
    actions = ["activate", "new_version"]
    readonly_fields = ("version", "n_features", "vector_length", "created_at", "created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: RoundPolicy, form: Any, change: bool) -> None:
        fields = {f: form.cleaned_data[f] for f in services.POLICY_FIELDS if f in form.cleaned_data}
        try:
            policy = services.policy_create(
                name=obj.name, actor=_actor(request), activate=obj.active, **fields
            )
        except ApplicationError as exc:
            refused(request, exc)
            return
        obj.pk, obj.version = policy.pk, policy.version

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A version is never edited in place (it may be in use, and the banks approve a
        # version's digest): copy it into a new version, and activate with the action.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(
        description="Activate (the scheduler follows this version)", permissions=["operate"]
    )
    def activate(self, request: HttpRequest, queryset: QuerySet[RoundPolicy]) -> None:
        for policy in queryset[:1]:
            try:
                services.policy_activate(policy=policy, actor=_actor(request))
            except ApplicationError as exc:  # e.g. the banks' roster has not approved it
                refused(request, exc)

    @admin.action(description="Copy into a new version", permissions=["operate"])
    def new_version(self, request: HttpRequest, queryset: QuerySet[RoundPolicy]) -> None:
        for policy in queryset:
            try:
                new = services.policy_new_version(base=policy, actor=_actor(request))
            except ApplicationError as exc:
                refused(request, exc)
            else:
                messages.success(request, f"created {new}; activate it with the action")


class KeyEpochForm(forms.ModelForm):
    public_context_file = forms.FileField(help_text="the .pub context written by bank-node keygen")
    ckks_params_json = forms.CharField(
        widget=forms.Textarea,
        initial=json.dumps(default_ckks_params()),
        help_text="the CKKS parameters printed by bank-node keygen",
    )

    class Meta:
        model = KeyEpoch
        fields: list[str] = []


@admin.register(KeyEpoch)
class KeyEpochAdmin(admin.ModelAdmin):
    list_display = ("number", "fingerprint", "active", "created_at", "created_by")
    readonly_fields = ("number", "fingerprint", "ckks_params", "active", "created_at", "created_by")
    exclude = ("public_context",)

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm[Any]]:
        if obj is None:
            kwargs["form"] = KeyEpochForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: KeyEpoch, form: Any, change: bool) -> None:
        try:
            epoch = services.key_epoch_register(
                public_context=form.cleaned_data["public_context_file"].read(),
                ckks_params=bounded_json_loads(form.cleaned_data["ckks_params_json"]),
                actor=_actor(request),
            )
        except ApplicationError as exc:
            refused(request, exc)
            return
        except (ValueError, ParseError) as exc:
            messages.error(request, f"ckks_params_json: {exc}")
            return
        obj.pk = epoch.pk

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SubmissionInline(admin.TabularInline):
    model = Submission
    fields = ("bank", "digest", "size_bytes", "epsilon_spent", "budget_left", "received_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Round)
class RoundAdmin(ReadOnlyAdmin):
    """Rounds change only through the scheduler; the one action runs it."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        # Admin actions change state: operators only, whatever view rights others hold.
        return user_is_operator(request.user)

    list_display = ("number", "state", "policy", "opened_at", "deadline_at", "closed_at")
    list_filter = ("state",)
    inlines = [SubmissionInline]
    actions = ["tick"]

    @admin.action(description="Run the scheduler now", permissions=["operate"])
    def tick(self, request: HttpRequest, queryset: QuerySet[Round]) -> None:
        messages.info(request, "; ".join(services.scheduler_tick()) or "nothing was due")


@admin.register(MetricReport)
class MetricReportAdmin(ReadOnlyAdmin):
    """Banks report their own figures through the API; nobody edits or deletes them here."""

    list_display = ("round", "bank", "reported_at")
    readonly_fields = ("round", "bank", "metrics", "reported_at")


@admin.register(GateVerdict)
class GateVerdictAdmin(ReadOnlyAdmin):
    """Banks post signed verdicts through the API; a row edited here would count for nothing
    anyway (the decision is re-derived from the signatures), so nobody edits them."""

    list_display = ("round", "bank", "received_at")
    readonly_fields = ("round", "bank", "verdict", "signature", "received_at")
