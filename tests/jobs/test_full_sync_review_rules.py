"""The full synchronization review's rules: from the counts on both sides, the couplings and the match fields."""

import pytest

from jobs.review import COUPLE_FIRST, FULL_SYNC, NOTHING, MappingState, recommend
from mappings.choices import Direction
from mappings.models import TableMapping

CODE = [("code", "isocurrencycode")]


def state(bc, dataverse, coupled, match=(), direction=Direction.BIDIRECTIONAL):
    mapping = TableMapping(
        name="CURRENCY", bc_entity_set="currencies", dataverse_entity_set="transactioncurrencies", direction=direction
    )
    return MappingState(mapping, bc, dataverse, coupled, list(match))


@pytest.mark.parametrize(
    ("given", "expected", "says"),
    [
        (state(0, 0, 0), NOTHING, "Neither Business Central currencies nor Dataverse transactioncurrencies"),
        # Already coupled: a shared record is no reason to couple first (what the review used to say).
        (state(5, 5, 5), NOTHING, "Every record on both sides is coupled"),
        (state(5, 5, 5, CODE), NOTHING, "the modified-records runs keep them in step"),
        (state(5, 7, 0), COUPLE_FIRST, "CURRENCY has no match fields"),
        (state(5, 7, 3), COUPLE_FIRST, "coupled: 3"),
        (state(5, 7, 0, CODE), FULL_SYNC, "match fields (code = isocurrencycode) single out one record"),
        (state(5, 7, 0, CODE + [("name", "currencyname")]), FULL_SYNC, "(code = isocurrencycode, name = currencyname)"),
        (state(5, 0, 0), FULL_SYNC, "Only Business Central has records"),
        (state(0, 4, 0), FULL_SYNC, "Only Dataverse has records"),
        (state(6, 4, 4), FULL_SYNC, "Only Business Central has uncoupled records"),
        (state(4, 6, 4), FULL_SYNC, "creates them in Business Central currencies"),
        # One-way: the uncoupled records on the side it does not read from stay as they are.
        (state(3, 5, 3, direction=Direction.TO_DATAVERSE), NOTHING, "synchronizes only to Dataverse"),
        (state(0, 5, 0, direction=Direction.TO_DATAVERSE), NOTHING, "uncoupled Dataverse transactioncurrencies"),
        (state(5, 0, 0, direction=Direction.FROM_DATAVERSE), NOTHING, "synchronizes only from Dataverse"),
        (state(5, 0, 0, direction=Direction.TO_DATAVERSE), FULL_SYNC, "copies them to Dataverse transactioncurrencies"),
        # One-way still duplicates the other side's uncoupled records without match fields.
        (state(5, 7, 0, direction=Direction.TO_DATAVERSE), COUPLE_FIRST, "no match fields"),
        (state(5, 7, 0, CODE, direction=Direction.TO_DATAVERSE), FULL_SYNC, "code = isocurrencycode"),
    ],
)
def test_the_recommendation_and_its_reason(given, expected, says):
    recommendation, reason = recommend(given)

    assert recommendation == expected
    assert says in reason
    assert "company" not in reason  # the mapping's own tables, whatever they hold


def test_couplings_of_records_outside_the_filters_do_not_make_a_side_count_below_zero():
    assert recommend(state(2, 3, 9))[0] == NOTHING
