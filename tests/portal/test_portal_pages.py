"""What each page shows, and what each action does, through Django's test client."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django import forms
from django.conf import settings
from django.test import Client

from audit.models import AuditEvent
from audit.selectors import audit_head
from consortium.members.models import Bank, BankStatus
from consortium.portal.models import BankRepresentative
from consortium.portal.selectors_convergence import MEAN_LABEL
from consortium.rounds.models import Round, RoundPolicy, RoundState, Submission
from consortium.rounds.services import scheduler_tick
from he.signing import public_key_b64
from tests.portal.conftest import report, submit

pytestmark = pytest.mark.django_db


def text(response: Any) -> str:
    """The page's visible text, whitespace collapsed, for assertions on what a person reads."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", response.content.decode(), flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


@pytest.fixture
def op(operator: Any, client_for: Any) -> Client:
    return client_for(operator)


@pytest.fixture
def published(ckks, open_round, bank_alpha, bank_beta, bank_gamma) -> Round:
    """Round 1 with all three banks in it, published, and metrics reported by two."""
    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        assert submit(ckks, open_round, persona, seed=i).status_code == 201
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.PUBLISHED
    assert report(open_round, bank_alpha, {"auprc": 0.41, "epsilon": 1.2}).status_code == 200
    assert report(open_round, bank_beta, {"auprc": 0.37}).status_code == 200
    return open_round


# --- overview and live progress ----------------------------------------------------------


def test_the_progress_panel_names_who_has_submitted_and_who_is_missing(
    op, ckks, open_round, bank_alpha
):
    assert submit(ckks, open_round, bank_alpha).status_code == 201
    page = text(op.get("/rounds/progress"))
    assert f"Round {open_round.number} Open" in page
    assert "1 of 3 active banks have submitted" in page
    assert "Submitted (1) alpha" in page
    assert "Missing (2) beta gamma" in page
    assert "left" in page  # time to the deadline


def test_the_bank_list_shows_each_bank_with_its_last_round_and_key_epoch(
    op, ckks, open_round, bank_alpha
):
    # The overview lists only the banks needing attention; every bank is on /banks/.
    submit(ckks, open_round, bank_alpha)
    page = op.get("/banks/").content.decode()
    row = re.search(r"<td><a href=\"/banks/alpha/\">alpha</a></td>.*?</tr>", page, re.S)
    assert row is not None
    assert f">{open_round.number}</a>" in row.group(0)
    assert f"epoch {open_round.key_epoch.number}" in row.group(0)
    assert "not yet seen" in page  # beta and gamma have not submitted


def test_a_refused_upload_is_listed_on_the_overview_with_its_reason(
    op, ckks, open_round, bank_alpha, bank_beta
):
    response = submit(ckks, open_round, bank_alpha, signer=bank_beta)  # signed with beta's key
    assert response.status_code == 403
    page = text(op.get("/"))
    assert f"bank:alpha round {open_round.number} bad signature" in page


def test_a_failed_round_is_listed_on_the_overview_with_its_reason(op, ckks, open_round, bank_alpha):
    submit(ckks, open_round, bank_alpha)
    scheduler_tick(open_round.deadline_at + timedelta(seconds=1))
    page = text(op.get("/"))
    assert f"Round {open_round.number} only 1 of the 3 required updates arrived" in page


def test_with_no_round_in_flight_the_panel_says_so_and_names_the_last_one(op, published):
    Round.objects.filter(state=RoundState.OPEN).delete()  # the one the scheduler opened next
    page = text(op.get("/rounds/progress"))
    assert "No round is in flight." in page
    assert f"Last closed: round {published.number} Published with 3 updates" in page


# --- rounds --------------------------------------------------------------------------------


def test_a_published_round_shows_its_verified_submissions_manifest_and_sizes(op, published):
    response = op.get(f"/rounds/{published.number}/")
    page = text(response)
    assert "Published" in page
    assert "all 3 verify" in page
    assert page.count("verified current key") == 3
    for sub in Submission.objects.filter(round=published):
        assert sub.digest in response.content.decode()  # in the manifest, in full
    assert f"policy {published.policy}".lower() in page.lower()
    assert "All updates in (collecting took)" in page and "Published (aggregation took)" in page
    assert "KB" in page  # ciphertext sizes


def test_a_stored_signature_that_no_longer_verifies_is_flagged(op, published):
    Submission.objects.filter(round=published, bank__slug="beta").update(
        signature=base64.b64encode(b"\0" * 64).decode()
    )
    page = text(op.get(f"/rounds/{published.number}/"))
    assert "some do not verify" in page
    assert "beta" in page and "does not verify" in page


def test_the_convergence_plot_has_a_line_per_bank_and_the_consortium_mean(op, published):
    html = op.get(f"/rounds/{published.number}/").content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html
    assert 'data-series="alpha"' in html and 'data-series="beta"' in html
    assert f'data-series="{MEAN_LABEL}"' in html
    assert "consortium mean (self-reported), round 1: 0.390" in html
    # alpha put an ε in its metrics report, but no upload signed one (no DP policy): the
    # privacy plot draws only signed figures (selectors_epsilon), so there is none here.
    assert "Differential-privacy budget spent" not in html


def test_without_epsilon_reported_there_is_no_privacy_plot(
    op, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        submit(ckks, open_round, persona, seed=i)
    scheduler_tick()
    report(open_round, bank_alpha, {"auprc": 0.5})
    html = op.get("/rounds/").content.decode()
    assert "Reported AUPRC of the federated model" in html
    assert "Differential-privacy budget spent" not in html


def test_the_round_list_filters_by_state_and_shows_the_mean_auprc(op, published):
    page = text(op.get("/rounds/"))
    assert "0.390" in page
    failed = text(op.get("/rounds/?state=failed"))
    assert "No round yet." in failed


def test_an_unknown_round_is_a_404(op, db):
    assert op.get("/rounds/999/").status_code == 404


# --- banks ---------------------------------------------------------------------------------


def test_onboarding_shows_the_credential_once_and_it_works(op, db):
    response = op.post("/banks/new", {"slug": "delta", "name": "Delta Bank"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    found = re.search(r"cbk_[A-Za-z0-9_\-]+", response.content.decode())
    assert found is not None
    credential = found.group(0)
    assert (
        Client().get("/api/v1/banks/me", HTTP_AUTHORIZATION=f"Bearer {credential}").json()["slug"]
        == "delta"
    )
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-2:] == ["bank.created", "portal.credential_shown"]
    assert not AuditEvent.objects.filter(data__icontains=credential.split("_", 2)[2]).exists()
    assert credential not in op.get("/banks/delta/").content.decode()


def test_onboarding_a_taken_slug_says_so(op, bank_alpha):
    response = op.post("/banks/new", {"slug": "alpha", "name": "Again"})
    assert response.status_code == 400
    assert "a bank with slug &#x27;alpha&#x27; already exists" in response.content.decode()


def test_onboarding_refuses_a_key_that_is_not_an_ed25519_public_key(op, db):
    response = op.post("/banks/new", {"slug": "delta", "name": "D", "signing_public_key": "abc"})
    assert response.status_code == 400
    assert "must be a base64 raw 32-byte Ed25519 public key" in text(response)
    assert not Bank.objects.filter(slug="delta").exists()


def test_rotating_the_credential_asks_first_then_shows_a_new_one_with_a_grace_period(
    op, bank_alpha
):
    asked = op.post("/banks/alpha/rotate-credential")
    assert asked.status_code == 200 and "Issue a new API credential for alpha?" in text(asked)
    assert "keeps working until the node first calls with the new one" in text(asked)
    assert not AuditEvent.objects.filter(action="bank.credential_rotated").exists()
    response = op.post("/banks/alpha/rotate-credential", {"confirmed": "yes"})
    found = re.search(r"cbk_[A-Za-z0-9_\-]+", response.content.decode())
    assert found is not None
    new = found.group(0)
    assert new != bank_alpha.credential
    assert "The previous credential stays valid until the node first calls" in text(response)
    api = Client()
    assert api.get("/api/v1/banks/me", **bank_alpha.auth()).status_code == 200  # grace
    assert api.get("/api/v1/banks/me", HTTP_AUTHORIZATION=f"Bearer {new}").status_code == 200
    assert api.get("/api/v1/banks/me", **bank_alpha.auth()).status_code == 401  # switched


def test_a_credential_that_may_have_leaked_is_refused_at_once_after_rotation(op, bank_alpha):
    asked = op.post("/banks/alpha/rotate-credential", {"immediate": "on"})
    assert "The current credential stops working at once." in text(asked)
    op.post("/banks/alpha/rotate-credential", {"immediate": "on", "confirmed": "yes"})
    assert Client().get("/api/v1/banks/me", **bank_alpha.auth()).status_code == 401


def test_an_operator_replaces_a_signing_key_and_a_bad_key_is_explained(op, bank_alpha):
    bad = op.post("/banks/alpha/signing-key", {"public_key": "bm90IGEga2V5"})
    assert bad.status_code == 400
    assert "must be a base64 raw 32-byte Ed25519 public key" in text(bad)
    key = public_key_b64(Ed25519PrivateKey.generate())
    assert op.post("/banks/alpha/signing-key", {"public_key": key}).status_code == 302
    assert Bank.objects.get(slug="alpha").signing_public_key == key
    assert AuditEvent.objects.filter(action="bank.signing_key_rotated").exists()


def test_revoking_asks_for_confirmation_and_cannot_be_undone(op, bank_alpha):
    unconfirmed = op.post("/banks/alpha/status", {"action": "revoke", "reason": "exit"})
    assert unconfirmed.status_code == 400
    assert "Tick this box to revoke" in text(unconfirmed)
    assert Bank.objects.get(slug="alpha").status == BankStatus.ACTIVE
    revoke = {"action": "revoke", "confirm_revoke": "on", "reason": "exit"}
    asked = op.post("/banks/alpha/status", revoke)
    assert asked.status_code == 200 and "Revoke alpha?" in text(asked)
    assert "A revocation cannot be undone." in text(asked)
    assert Bank.objects.get(slug="alpha").status == BankStatus.ACTIVE
    op.post("/banks/alpha/status", {**revoke, "confirmed": "yes"})
    assert Bank.objects.get(slug="alpha").status == BankStatus.REVOKED
    again = op.post("/banks/alpha/status", {"action": "reactivate", "reason": "back"})
    assert again.status_code == 400
    assert "bank alpha is revoked; revocation cannot be undone" in text(again)


def test_linking_a_representative_checks_the_account(op, bank_alpha, auditor, roleless):
    unknown = op.post("/banks/alpha/representatives", {"username": "ghost"})
    assert "there is no user &#x27;ghost&#x27;" in unknown.content.decode()
    staff = op.post("/banks/alpha/representatives", {"username": "audrey"})
    assert "audrey is an operator or auditor" in text(staff)
    assert op.post("/banks/alpha/representatives", {"username": "nora"}).status_code == 302
    link = BankRepresentative.objects.get(user=roleless)
    assert link.bank.slug == "alpha"
    assert AuditEvent.objects.filter(action="bank.representative_linked").exists()
    nora = Client()
    nora.force_login(roleless)
    assert nora.get("/banks/alpha/").status_code == 200
    asked = op.post(f"/banks/alpha/representatives/{link.pk}/remove")
    assert "Remove nora as representative of alpha?" in text(asked)
    assert nora.get("/banks/alpha/").status_code == 200
    op.post(f"/banks/alpha/representatives/{link.pk}/remove", {"confirmed": "yes"})
    assert nora.get("/banks/alpha/").status_code == 403


def test_a_representative_sees_their_own_figures_and_no_other_bank(bank_rep, published, client_for):
    response = client_for(bank_rep).get("/banks/alpha/")
    html = response.content.decode()
    assert 'data-series="alpha"' in html
    assert MEAN_LABEL not in html
    for other in ("beta", "gamma"):
        assert other not in html
    assert "0.410" in text(response)  # alpha's own AUPRC in the history table
    assert "/rounds/" not in html  # round pages are not theirs to open


def test_the_bank_page_shows_onboarding_and_participation(op, published):
    page = text(op.get("/banks/alpha/"))
    assert f"First update accepted in round {published.number}" in page
    assert "Metrics reported for 1 round" in page
    assert "submitted" in page
    assert "bank.created" in page  # recent audit events


# --- policies ------------------------------------------------------------------------------


@pytest.mark.parametrize("min_banks", [1, 2])
def test_a_new_version_with_min_banks_below_three_is_refused_with_the_reason(op, policy, min_banks):
    form = op.get(f"/policies/{policy.pk}/new-version")
    assert 'name="min_banks" value="3"' in form.content.decode()
    data = _policy_post(policy, min_banks=min_banks)
    response = op.post(f"/policies/{policy.pk}/new-version", data)
    assert response.status_code == 400
    assert "min_banks must be at least 3: with two banks each learns the other" in (text(response))
    assert RoundPolicy.objects.filter(name=policy.name).count() == 1


def test_a_new_version_leaves_the_base_alone(op, policy):
    response = op.post(f"/policies/{policy.pk}/new-version", _policy_post(policy, min_banks=4))
    assert response.status_code == 302
    new = RoundPolicy.objects.get(name=policy.name, version=2)
    assert response["Location"] == f"/policies/{new.pk}/"
    assert new.min_banks == 4 and new.active  # the active policy's successor is active
    policy.refresh_from_db()
    assert policy.min_banks == 3 and not policy.active
    assert "Policy default v2" in text(op.get(response["Location"]))


def test_a_new_policy_explains_a_bad_layer_list_and_a_model_too_big_to_upload(op, policy):
    data = {**_policy_post(policy), "name": "wide", "model_hidden": "32, sixteen"}
    response = op.post("/policies/new", data)
    assert response.status_code == 400
    assert "Hidden layer widths: Whole numbers separated by commas" in text(response)
    data["model_hidden"] = "4096, 4096, 4096"
    response = op.post("/policies/new", data)
    assert response.status_code == 400
    assert "Hidden layer widths: model_spec has about" in text(response)
    assert "upload limit" in text(response)
    assert not RoundPolicy.objects.filter(name="wide").exists()


def test_an_operator_activates_another_policy(op, policy):
    other = _create_policy(op, policy, "other")
    assert not other.active
    op.post(f"/policies/{other.pk}/activate")
    other.refresh_from_db()
    policy.refresh_from_db()
    assert other.active and not policy.active


def _policy_post(policy: RoundPolicy, **changes: Any) -> dict[str, Any]:
    """The form as the page pre-fills it from ``policy``, with ``changes``, as posted from
    the confirmation page (``confirmed``: the step that saves)."""
    from consortium.portal.forms import PolicyForm

    form = PolicyForm(base=policy)
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else value
    data["confirmed"] = "yes"
    data.update(changes)
    return data


def _create_policy(op: Client, base: RoundPolicy, name: str) -> RoundPolicy:
    assert op.post("/policies/new", {**_policy_post(base), "name": name}).status_code == 302
    return RoundPolicy.objects.get(name=name)


# --- audit ---------------------------------------------------------------------------------


def test_the_audit_trail_filters_by_action_actor_and_date(auditor, client_for, published):
    client = client_for(auditor)
    accepted = text(client.get("/audit/?action=update.accepted"))
    assert accepted.count("update.accepted") >= 3 + 1  # three rows, one select option
    assert "bank.created" not in accepted.split("Details Hash", 1)[1]
    by_alpha = text(client.get("/audit/?actor=bank:alpha"))
    assert "bank:beta" not in by_alpha
    assert "No event matches." in text(client.get("/audit/?until=2000-01-01"))


def test_the_export_buttons_carry_the_chosen_period_and_one_snapshot(
    auditor, client_for, published
):
    html = client_for(auditor).get("/audit/?since=2020-01-01&until=2030-12-31").content.decode()
    head = audit_head().seq
    for fmt in ("zip", "pdf", "csv", "json"):
        assert (
            f"/api/v1/audit/report?format={fmt}&amp;since=2020-01-01&amp;until=2030-12-31"
            f"&amp;at={head}" in html
        )


def test_the_verification_panel_reports_an_intact_chain(auditor, client_for, published):
    page = text(client_for(auditor).get("/audit/verification"))
    events = AuditEvent.objects.count()
    assert f"intact All {events} events link to their predecessor" in page


# --- what pages never show, and how they are served ---------------------------------------------


def test_no_page_shows_a_credential_hash_or_the_secret_key(op, published, bank_alpha, policy):
    bank = Bank.objects.get(slug="alpha")
    pages = [
        "/",
        "/rounds/",
        f"/rounds/{published.number}/",
        "/banks/",
        "/banks/alpha/",
        "/policies/",
        f"/policies/{policy.pk}/",
        "/audit/",
        "/audit/verification",
    ]
    for url in pages:
        html = op.get(url).content.decode()
        assert bank.credential_hash not in html, url
        assert bank_alpha.credential not in html, url
        assert settings.SECRET_KEY not in html, url


def test_static_files_are_served_by_the_portal_itself(client):
    css = client.get("/static/portal/portal.css")
    assert css.status_code == 200 and b"--accent" in b"".join(css.streaming_content)
    assert client.get("/static/portal/portal.js").status_code == 200


def test_the_status_form_chooses_no_action_and_a_blank_reason_is_a_400_naming_it(op, bank_alpha):
    page = op.get("/banks/alpha/").content.decode()
    form = page.split('data-testid="status-form"', 1)[1].split("</form>", 1)[0]
    options = re.findall(r"<option[^>]*>", form)
    # Only the empty "Choose an action…" may be selected: never "Suspend".
    assert options[0].startswith('<option value=""')
    assert not [o for o in options[1:] if "selected" in o]
    blank = op.post("/banks/alpha/status", {"action": "suspend", "reason": "   "})
    assert blank.status_code == 400
    assert "Reason" in text(blank) and "Give a reason: it is kept in the audit trail." in text(
        blank
    )
    nothing = op.post("/banks/alpha/status", {"reason": "because"})
    assert nothing.status_code == 400 and "Choose what to do with this bank." in text(nothing)
    assert Bank.objects.get(slug="alpha").status == BankStatus.ACTIVE


def test_suspending_shows_a_confirmation_page_that_works_without_javascript(op, bank_alpha):
    asked = op.post("/banks/alpha/status", {"action": "suspend", "reason": "late reports"})
    html = asked.content.decode()
    assert asked.status_code == 200 and "Suspend alpha?" in text(asked)
    assert "Reason recorded: late reports" in text(asked)
    assert '<input type="hidden" name="confirmed" value="yes">' in html
    assert '<input type="hidden" name="reason" value="late reports">' in html
    assert Bank.objects.get(slug="alpha").status == BankStatus.ACTIVE
    done = op.post(
        "/banks/alpha/status", {"action": "suspend", "reason": "late reports", "confirmed": "yes"}
    )
    assert done.status_code == 302
    assert Bank.objects.get(slug="alpha").status == BankStatus.SUSPENDED
    event = AuditEvent.objects.get(action="bank.suspended")
    assert event.data["reason"] == "late reports"
