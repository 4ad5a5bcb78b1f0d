"""Operator back office for member banks: onboard, rename, suspend, revoke, rotate keys.

Every change goes through ``consortium.members.services`` (which audits it); the fields the
services own are read-only here, and a refusal is audited like one through the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from consortium.api.auth import user_is_operator
from consortium.api.errors import ApplicationError, refusal_record
from consortium.members import services
from consortium.members.models import Bank, BankStatus


class BankCreateForm(forms.ModelForm):
    class Meta:
        model = Bank
        fields = ["slug", "name", "signing_public_key"]


class BankChangeForm(forms.ModelForm):
    """The name, and a new signing key that the service registers (and audits)."""

    new_signing_public_key = forms.CharField(
        max_length=64,
        required=False,
        help_text="Base64 raw Ed25519 public key: replaces the registered one (leave empty "
        "to keep it).",
    )

    class Meta:
        model = Bank
        fields = ["name"]


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def refused(request: HttpRequest, exc: ApplicationError) -> None:
    """Tell the operator why a service refused, and audit the refusal like the API does."""
    refusal_record(exc)
    messages.error(request, exc.message)
    request._admin_refused = True  # type: ignore[attr-defined]


_PREVIOUS_CREDENTIAL = (
    "previous_credential_prefix",
    "previous_credential_hash",
    "previous_credential_expires_at",
)


@admin.register(Bank)
class BankAdmin(admin.ModelAdmin):
    def has_operate_permission(self, request: HttpRequest) -> bool:
        # Admin actions change state: operators only, whatever view rights others hold.
        return user_is_operator(request.user)

    list_display = ("slug", "name", "status", "signing_key_registered_at", "created_at")
    list_filter = ("status",)
    search_fields = ("slug", "name")
    actions = ["suspend", "reactivate", "revoke", "rotate_credential"]
    readonly_fields = (
        "slug",
        "status",
        "credential_prefix",
        "signing_public_key",
        "signing_key_registered_at",
        "created_at",
        "status_changed_at",
    )
    exclude = ("credential_hash", "previous_credential_hash")

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm[Any]]:
        kwargs["form"] = BankCreateForm if obj is None else BankChangeForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("credential_hash", "credential_prefix", "status", *_PREVIOUS_CREDENTIAL)
        return (*self.exclude, "previous_credential_prefix", "previous_credential_expires_at")

    def save_model(self, request: HttpRequest, obj: Bank, form: Any, change: bool) -> None:
        try:
            if change:
                self._change(request, obj, form)
            else:
                self._create(request, obj)
        except ApplicationError as exc:
            refused(request, exc)

    def _create(self, request: HttpRequest, obj: Bank) -> None:
        bank, credential = services.bank_create(
            slug=obj.slug,
            name=obj.name,
            signing_public_key=obj.signing_public_key,
            actor=_actor(request),
        )
        obj.pk = bank.pk
        messages.warning(request, f"API credential for {bank.slug} (shown once): {credential}")

    def _change(self, request: HttpRequest, obj: Bank, form: Any) -> None:
        # ``obj`` carries the form's edits; the row is changed only by the services.
        bank = Bank.objects.get(pk=obj.pk)
        services.bank_rename(bank=bank, name=form.cleaned_data["name"], actor=_actor(request))
        if key := form.cleaned_data.get("new_signing_public_key"):
            services.bank_register_signing_key(bank=bank, public_key_b64=key, actor=_actor(request))

    def message_user(self, request: HttpRequest, message: Any, *args: Any, **kwargs: Any) -> None:
        # After a refusal, Django's "changed successfully" would contradict the error.
        level = kwargs.get("level", args[0] if args else messages.INFO)
        if getattr(request, "_admin_refused", False) and level == messages.SUCCESS:
            return
        super().message_user(request, message, *args, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_is_operator(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # banks are revoked, never deleted: the trail refers to them

    def _set(self, request: HttpRequest, queryset: QuerySet[Bank], status: BankStatus) -> None:
        for bank in queryset:
            try:
                services.bank_set_status(bank=bank, status=status, actor=_actor(request))
            except ApplicationError as exc:
                refused(request, exc)

    @admin.action(description="Suspend selected banks", permissions=["operate"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Bank]) -> None:
        self._set(request, queryset, BankStatus.SUSPENDED)

    @admin.action(description="Reactivate selected banks", permissions=["operate"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Bank]) -> None:
        self._set(request, queryset, BankStatus.ACTIVE)

    @admin.action(description="Revoke selected banks (final)", permissions=["operate"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Bank]) -> None:
        self._set(request, queryset, BankStatus.REVOKED)

    @admin.action(description="Rotate API credential (shown once)", permissions=["operate"])
    def rotate_credential(self, request: HttpRequest, queryset: QuerySet[Bank]) -> None:
        for bank in queryset:
            credential = services.bank_rotate_credential(bank=bank, actor=_actor(request))
            messages.warning(request, f"new credential for {bank.slug} (shown once): {credential}")
