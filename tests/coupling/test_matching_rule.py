"""The one uniqueness rule of matching, shared by match-based coupling and a synchronization."""

from coupling.matching import MatchField, pair_uniquely

BC, DV = "business_central", "dataverse"
BY_NAME = [[MatchField("displayName", "name", case_sensitive=False)]]
BY_NAME_THEN_CITY = [BY_NAME[0], [MatchField("city", "address1_city", case_sensitive=True)]]


def test_a_match_unique_both_ways_pairs_and_a_shared_one_waits_with_its_candidates():
    sources = {1: {"displayName": "Adatum"}, 2: {"displayName": "Trey"}, 3: {"displayName": "trey"}}
    targets = {"a": {"name": "ADATUM"}, "t": {"name": "Trey"}}
    pairing = pair_uniquely(BY_NAME, sources, BC, targets, DV)
    assert pairing.pairs == {1: "a"}
    assert pairing.ambiguous_sources == {2: ["t"], 3: ["t"]}
    assert pairing.ambiguous_targets == {"t": [2, 3]}


def test_a_rival_outside_the_page_keeps_a_match_from_being_unique():
    pairing = pair_uniquely(
        BY_NAME, {1: {"displayName": "Adatum"}}, BC, {"a": {"name": "Adatum"}}, DV, rivals=[{"displayName": "adatum"}]
    )
    assert pairing.pairs == {} and pairing.ambiguous_sources == {1: ["a"]}


def test_a_later_priority_settles_what_an_earlier_one_left_ambiguous_and_blank_never_matches():
    sources = {1: {"displayName": "Trey", "city": "Oslo"}, 2: {"displayName": "Trey", "city": ""}}
    targets = {"o": {"name": "Trey", "address1_city": "Oslo"}, "b": {"name": "Trey", "address1_city": "Bergen"}}
    pairing = pair_uniquely(BY_NAME_THEN_CITY, sources, BC, targets, DV)
    assert pairing.pairs == {1: "o"}
    assert pairing.ambiguous_sources == {2: ["o", "b"]}
