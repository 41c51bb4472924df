"""Validation rules that need no metadata, submitted through the admin's change form (Django test client, logged
in): each shows its specific message, and nothing is saved."""

import re

import pytest

from mappings.models import TableMapping
from mappings.services import configuration_snapshot

pytestmark = pytest.mark.django_db


def _submit_refused(admin_client, url, data, message):
    before = configuration_snapshot()
    response = admin_client.post(url, data)
    assert response.status_code == 200, "the form should come back with errors, not redirect"
    errors = re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)
    assert message in response.content.decode(), errors
    assert configuration_snapshot() == before
    return response


def test_an_unchanged_default_saves_and_says_the_names_were_not_checked_without_connections(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["table_filter"] = "blocked eq ' ' and displayName ne ''"
    response = admin_client.post(url, data, follow=True)
    assert response.redirect_chain, response.content.decode()[:3000]
    assert TableMapping.objects.get(name="CUSTOMER").table_filter == "blocked eq ' ' and displayName ne ''"
    assert "names were not checked: No enabled Business Central connection" in response.content.decode()


def test_a_field_direction_the_table_direction_does_not_allow_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CURRENCY")
    data[change_form.field_key(data, "symbol", "currencysymbol", "direction")] = "from_dataverse"
    _submit_refused(
        admin_client,
        url,
        data,
        "Field mapping 2 (symbol &lt;- currencysymbol): direction From Dataverse is not allowed in a mapping that "
        "syncs To Dataverse only.",
    )


def test_a_direction_the_table_syncs_without_an_enabled_field_mapping_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CURRENCY")
    data["direction"] = "bidirectional"
    _submit_refused(
        admin_client,
        url,
        data,
        "The mapping syncs From Dataverse but no enabled field mapping does: set the direction of at least one "
        "enabled field mapping to From Dataverse or Bidirectional.",
    )


def test_disabling_every_field_mapping_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "SALESPEOPLE")
    for key in [k for k in data if k.endswith("-enabled")]:
        del data[key]
    _submit_refused(admin_client, url, data, "The mapping syncs From Dataverse but no enabled field mapping does")


def test_a_dependency_cycle_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "SALESPEOPLE")
    data["dependencies"] = [str(TableMapping.objects.get(name="CONTACT").pk)]
    _submit_refused(
        admin_client, url, data, "Dependency cycle: SALESPEOPLE -&gt; CONTACT -&gt; CUSTOMER -&gt; SALESPEOPLE."
    )


def test_a_mapping_depending_on_itself_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "VENDOR")
    data["dependencies"] = [str(TableMapping.objects.get(name="VENDOR").pk)]
    _submit_refused(admin_client, url, data, "VENDOR cannot depend on itself.")


def test_a_filter_that_is_not_valid_odata_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["integration_table_filter"] = "statecode eq 0 and"
    _submit_refused(admin_client, url, data, "Integration table filter is not a valid OData filter")


def test_a_bad_transformation_rule_is_refused_with_a_close_match(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data[change_form.field_key(data, "city", "address1_city", "transformation")] = '[{"rule": "upercase"}]'
    _submit_refused(admin_client, url, data, "unknown rule &quot;upercase&quot;. Did you mean &quot;uppercase&quot;?")


def test_a_one_way_field_without_a_target_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(data, bc_field="number", dataverse_field="", direction="to_dataverse")
    _submit_refused(admin_client, url, data, "To Dataverse needs a Dataverse column to write to.")


def test_clear_value_and_not_null_together_are_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data[change_form.field_key(data, "salespersonCode", "ownerid", "clear_value_on_failed_lookup")] = "on"
    _submit_refused(admin_client, url, data, "choose either clear value on failed lookup or not null, not both.")


def test_values_for_new_records_must_be_an_object(admin_client, change_form):
    url, data = change_form.data(admin_client, "VENDOR")
    data["dataverse_new_record_values"] = "[11]"
    _submit_refused(admin_client, url, data, "Values for new records must be a JSON object")


def test_or_across_different_business_central_fields_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["table_filter"] = "blocked eq ' ' or city eq 'Seattle'"
    _submit_refused(admin_client, url, data, "Business Central does not support &#x27;or&#x27; across different fields")


def test_a_match_field_needs_both_sides(admin_client, change_form):
    url, data = change_form.data(admin_client, "CONTACT")
    data[change_form.field_key(data, "type", "", "use_for_matching")] = "on"
    _submit_refused(admin_client, url, data, "match-based coupling compares two fields")


@pytest.mark.parametrize(
    "expression, words",
    [
        ("statecode eq 0 and", "&#x27;and&#x27; at position 16 (near «statecode eq 0 ▸and») has nothing after it"),
        ("statecode = 0", "&#x27;=&#x27; at position 11 (near «statecode ▸= 0») is not an OData operator: write"),
        ("statecode eqq 0", "Did you mean &#x27;eq&#x27;?"),
        ("name eq 'Garcia", "the text value opened with &#x27; at position 9 is not closed"),
        ("(statecode eq 0", "a parenthesis opened in it is closed: add &#x27;)&#x27;."),
    ],
)
def test_a_filter_syntax_error_says_in_words_what_is_wrong_and_where(admin_client, change_form, expression, words):
    """Not the parser's internals (`Token(type='WS', ...)`): what is wrong, at which position, with an excerpt."""
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["integration_table_filter"] = expression
    response = _submit_refused(admin_client, url, data, words)
    assert "Token(" not in response.content.decode()


def test_value_maps_and_transformations_are_edited_as_rows_and_saved_as_the_same_json(admin_client, change_form):
    """The field grid shows small row forms instead of JSON boxes; what they post is stored as the JSON it always was
    (the export format does not change), and a bad rule in a row is still refused with its message."""
    from mappings.models import FieldMapping

    url, data = change_form.data(admin_client, "CUSTOMER")
    html = admin_client.get(url).content.decode()
    key = change_form.field_key(data, "city", "address1_city", "transformation")
    prefix = key[: -len("transformation")]
    assert f'name="{prefix}transformation__0__rule"' in html and f'name="{prefix}value_map__0__key"' in html
    assert f'<textarea name="{prefix}transformation"' not in html
    del data[key], data[prefix + "value_map"]
    data.update(
        {
            f"{prefix}transformation__rows": "3",
            f"{prefix}transformation__0__rule": "trim",
            f"{prefix}transformation__1__rule": "substring",
            f"{prefix}transformation__1__start": "1",
            f"{prefix}transformation__1__length": "10",
            f"{prefix}transformation__1__find": "left over from another rule",
            f"{prefix}transformation__2__rule": "",
            f"{prefix}value_map__rows": "3",
            f"{prefix}value_map__0__key": "Oslo",
            f"{prefix}value_map__0__value": "OSLO",
            f"{prefix}value_map__1__key": "1",
            f"{prefix}value_map__1__value": '"1"',
            f"{prefix}value_map__2__key": "",
            f"{prefix}value_map__2__value": "ignored",
        }
    )
    response = admin_client.post(url, data, follow=True)
    assert response.redirect_chain, response.content.decode()[:2000]
    saved = FieldMapping.objects.get(table_mapping__name="CUSTOMER", bc_field="city")
    assert saved.transformation == [{"rule": "trim"}, {"rule": "substring", "start": 1, "length": 10}]
    assert saved.value_map == {"Oslo": "OSLO", "1": "1"}

    url, data = change_form.data(admin_client, "CUSTOMER")
    del data[key]
    data.update({f"{prefix}transformation__rows": "1", f"{prefix}transformation__0__rule": "upercase"})
    _submit_refused(admin_client, url, data, "unknown rule &quot;upercase&quot;. Did you mean &quot;uppercase&quot;?")


def test_a_value_map_with_the_same_value_in_two_rows_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    prefix = change_form.field_key(data, "city", "address1_city", "value_map")
    del data[prefix]
    data.update(
        {
            f"{prefix}__rows": "2",
            f"{prefix}__0__key": "Oslo",
            f"{prefix}__0__value": "OSLO",
            f"{prefix}__1__key": "Oslo",
            f"{prefix}__1__value": "Kristiania",
        }
    )
    _submit_refused(admin_client, url, data, "value map: &#x27;Oslo&#x27; is in more than one row")
