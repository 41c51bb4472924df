"""Inputs of any size get a clear answer in moments: a huge filter, a huge or deeply nested import file.

Before, a 20 KB Business Central filter raised RecursionError (a 500), and a 10 MB import took minutes in a
duplicate-name check that was quadratic in the number of mappings.
"""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from mappings.models import MappingChange
from mappings.services import configuration_export, configuration_snapshot

pytestmark = pytest.mark.django_db


def long_filter(field: str, conditions: int = 1100) -> str:
    return " and ".join(f"{field} eq 'value {i}'" for i in range(conditions))


@pytest.mark.parametrize(
    ("key", "field", "label"),
    [
        ("table_filter", "displayName", "Table filter"),
        ("integration_table_filter", "name", "Integration table filter"),
    ],
)
def test_a_20_kb_filter_is_refused_with_its_length_and_nothing_is_saved(admin_client, change_form, key, field, label):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data[key] = long_filter(field)
    assert len(data[key]) > 20_000
    before = configuration_snapshot()

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert f"{label} is {len(data[key]):,} characters long; at most 8,000 are accepted" in response.content.decode()
    assert configuration_snapshot() == before


def test_a_long_filter_within_the_limit_is_checked_as_usual_without_recursion(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["table_filter"] = long_filter("displayName", 250) + " or city eq 'x'"  # 7 KB, 251 levels deep
    assert len(data["table_filter"]) < 8000

    response = admin_client.post(url, data)

    assert "Business Central does not support &#x27;or&#x27; across different fields" in response.content.decode()


def import_upload(admin_client, content: bytes):
    upload = io.BytesIO(content)
    upload.name = "mappings.json"
    return admin_client.post(reverse("admin:mappings_tablemapping_import"), {"file": upload, "delete_missing": "on"})


def test_a_10_mb_import_is_refused_by_its_size_before_it_is_parsed_and_changes_nothing(admin_client):
    document = configuration_export()
    template = document["table_mappings"][0]
    copies = [{**template, "name": f"M{i}"} for i in range(4000)]
    content = json.dumps({**document, "table_mappings": copies}).encode()
    assert len(content) > 10 * 1024 * 1024
    before = configuration_snapshot()

    response = import_upload(admin_client, content)

    assert f"The file is {len(content) / 1024 / 1024:.1f} MB; at most 2 MB is accepted." in response.content.decode()
    assert configuration_snapshot() == before and not MappingChange.objects.exists()


def test_an_import_of_many_mappings_finds_the_duplicate_names_in_one_pass(admin_client):
    document = configuration_export()
    template = document["table_mappings"][0]
    copies = [{**template, "name": f"M{i % 150}"} for i in range(152)]  # M0 and M1 twice, just under 2 MB
    content = json.dumps({**document, "table_mappings": copies}).encode()
    assert len(content) < 2 * 1024 * 1024

    response = import_upload(admin_client, content)

    html = response.content.decode()
    assert "mapping names appear more than once: M0, M1." in html
    assert not MappingChange.objects.exists()


@pytest.mark.parametrize("depth", [11, 100_000])
def test_deeply_nested_json_in_an_import_is_a_clear_error(admin_client, tmp_path, depth):
    content = ("[" * depth + "]" * depth).encode()
    before = configuration_snapshot()

    response = import_upload(admin_client, content)
    assert "The file nests JSON more than 10 levels deep." in response.content.decode()

    path = tmp_path / "deep.json"
    path.write_bytes(content)
    with pytest.raises(CommandError, match="nests JSON more than 10 levels deep. Nothing was changed."):
        call_command("import_mappings", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert configuration_snapshot() == before


@pytest.mark.parametrize(
    ("key", "expression", "message"),
    [
        (
            "table_filter",
            "length(displayName) gt 3",
            "Table filter: Business Central does not support the function length() in filters; it supports "
            "contains, endswith, startswith, substring, tolower and toupper.",
        ),
        (
            "integration_table_filter",
            "tolower(name) eq 'contoso'",
            "Integration table filter: Dataverse does not support the function tolower() in filters; it supports "
            "contains, endswith and startswith.",
        ),
    ],
)
def test_a_filter_function_the_service_does_not_support_is_refused_when_the_mapping_is_saved(
    admin_client, change_form, key, expression, message
):
    # Business Central: "Using filter expressions in OData URIs" lists the functions it supports (protocols.md 2.3);
    # Dataverse: "Filter rows" (query data using the Web API) lists contains, startswith and endswith (1.4).
    url, data = change_form.data(admin_client, "CUSTOMER")
    data[key] = expression
    before = configuration_snapshot()

    response = admin_client.post(url, data)

    assert message in response.content.decode()
    assert configuration_snapshot() == before


def test_the_functions_each_service_supports_are_accepted(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["table_filter"] = "startswith(toupper(displayName),'A')"
    data["integration_table_filter"] = "contains(name,'a')"

    response = admin_client.post(url, data, follow=True)

    assert response.redirect_chain, response.content.decode()[:2000]
