"""Operator back office for member banks: onboard, suspend, revoke, rotate."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from consortium.api.auth import user_is_operator
from consortium.api.errors import ApplicationError
from consortium.members import services
from consortium.members.models import Bank, BankStatus


class BankCreateForm(forms.ModelForm):
    class Meta:
        model = Bank
        fields = ["slug", "name", "signing_public_key"]


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


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
    exclude = ("credential_hash",)

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm[Any]]:
        if obj is None:
            kwargs["form"] = BankCreateForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("credential_hash", "credential_prefix", "status") if obj is None else self.exclude

    def save_model(self, request: HttpRequest, obj: Bank, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        bank, credential = services.bank_create(
            slug=obj.slug,
            name=obj.name,
            signing_public_key=obj.signing_public_key,
            actor=_actor(request),
        )
        obj.pk = bank.pk
        messages.warning(request, f"API credential for {bank.slug} (shown once): {credential}")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # banks are revoked, never deleted: the trail refers to them

    def _set(self, request: HttpRequest, queryset: QuerySet[Bank], status: BankStatus) -> None:
        for bank in queryset:
            try:
                services.bank_set_status(bank=bank, status=status, actor=_actor(request))
            except ApplicationError as exc:
                messages.error(request, exc.message)

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
