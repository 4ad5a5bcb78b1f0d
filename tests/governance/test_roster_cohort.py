"""check_cohort: a round may name only active roster members, under their roster keys."""

from __future__ import annotations

import pytest
from roster_helpers import Ceremony, new_bank, signed

from governance import RosterError, SuspendBank, apply, check_cohort


def entries(ceremony: Ceremony, *bank_ids: str) -> list[tuple[str, str]]:
    return [(bank_id, ceremony[bank_id].public) for bank_id in bank_ids]


def test_three_active_members_under_their_roster_keys_make_a_cohort(ceremony: Ceremony) -> None:
    check_cohort(ceremony.state, entries(ceremony, "alpha", "beta", "gamma"), 3)


@pytest.mark.parametrize(
    ("cohort", "reason"),
    [
        (["alpha", "beta"], "only 2 distinct roster member(s); at least 3 needed"),
        (["alpha", "beta", "gamma"], "only 3 distinct roster member(s); at least 4 needed"),
    ],
)
def test_a_cohort_below_the_floor_is_refused(
    ceremony: Ceremony, cohort: list[str], reason: str
) -> None:
    min_banks = 4 if len(cohort) == 3 else 2  # the roster's floor of 3 wins over a lower one

    with pytest.raises(RosterError, match="cohort refused") as info:
        check_cohort(ceremony.state, entries(ceremony, *cohort), min_banks)
    assert reason in str(info.value) and info.value.code == "cohort"


def test_a_bank_outside_the_roster_is_refused(ceremony: Ceremony) -> None:
    sham = new_bank("sham")
    cohort = [*entries(ceremony, "alpha", "beta", "gamma"), ("sham", sham.public)]

    with pytest.raises(RosterError, match="roster version 0: cohort refused: bank 'sham' is not"):
        check_cohort(ceremony.state, cohort, 3)


def test_a_member_under_a_key_that_is_not_its_roster_key_is_refused(ceremony: Ceremony) -> None:
    rotated_by_operator = new_bank("alpha").public
    cohort = [("alpha", rotated_by_operator), *entries(ceremony, "beta", "gamma", "delta")]

    with pytest.raises(
        RosterError, match="bank 'alpha' is named with a key that is not its roster"
    ):
        check_cohort(ceremony.state, cohort, 3)


def test_a_suspended_member_is_refused(ceremony: Ceremony) -> None:
    suspend = signed(
        ceremony.propose(SuspendBank("delta")),
        ceremony["alpha"],
        ceremony["beta"],
        ceremony["gamma"],
    )
    state = apply(ceremony.state, suspend)

    with pytest.raises(RosterError, match="bank 'delta' is suspended"):
        check_cohort(state, entries(ceremony, "alpha", "beta", "delta"), 3)


def test_a_bank_named_twice_is_refused_rather_than_counted_once(ceremony: Ceremony) -> None:
    cohort = entries(ceremony, "alpha", "beta", "gamma", "alpha")

    with pytest.raises(RosterError, match="bank 'alpha' appears twice"):
        check_cohort(ceremony.state, cohort, 3)
