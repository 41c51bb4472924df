"""Dataverse change tracking: a full read that ends in a delta link, then only changes and deleted ids."""

import uuid

import pytest

from connectors.clients import open_client
from connectors.dataverse import ChangeTrackingExpired

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def test_the_delta_link_returns_changed_and_new_rows_and_the_ids_of_deleted_ones(dataverse_connection):
    from sandbox import testing

    with open_client(dataverse_connection) as client:
        initial = list(client.read_changes("accounts", select=["name"], page_size=5))
        rows = [row for page in initial for row in page.rows]
        delta_link = initial[-1].delta_link

        changed, deleted = rows[0]["accountid"], rows[1]["accountid"]
        testing.edit_as_another_user("dataverse", "accounts", changed, name="Changed Since")
        testing.delete_as_another_user("dataverse", "accounts", deleted)
        created = testing.create_as_another_user("dataverse", "accounts", name="Created Since")

        changes = list(client.read_changes("accounts", delta_link=delta_link))
        nothing = list(client.read_changes("accounts", delta_link=changes[-1].delta_link))

    assert len(rows) == 12 and [len(p.rows) for p in initial] == [5, 5, 2]
    assert delta_link and all(p.delta_link is None for p in initial[:-1])
    changed_rows = {row["accountid"]: row for page in changes for row in page.rows}
    assert set(changed_rows) == {changed, str(created)}
    assert changed_rows[changed]["name"] == "Changed Since"
    assert [i for page in changes for i in page.deleted_ids] == [uuid.UUID(deleted)]
    assert changes[-1].delta_link and changes[-1].delta_link != delta_link
    assert [r for p in nothing for r in p.rows] == [] and [i for p in nothing for i in p.deleted_ids] == []


def test_an_expired_delta_token_asks_for_a_full_read(dataverse_connection):
    from sandbox import testing

    with open_client(dataverse_connection) as client:
        delta_link = list(client.read_changes("accounts"))[-1].delta_link
        testing.set_change_tracking_days(0)
        with pytest.raises(ChangeTrackingExpired) as caught:
            list(client.read_changes("accounts", delta_link=delta_link))
    assert "read the whole table again" in caught.value.message
