"""Reading from both services through the sandbox: paging to the last page, watermarks, ids, counts."""

import uuid
from datetime import timedelta

import pytest

from connectors.clients import open_client
from connectors.odata import parse_datetime
from connectors.types import ConnectorError, ErrorKind

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def test_bc_reads_every_customer_page_by_page_to_the_last_page(bc_connection):
    with open_client(bc_connection) as client:
        pages = list(client.read_pages("customers", page_size=5))
        total = client.count("customers")

    ids = [row["id"] for page in pages for row in page.rows]
    assert [len(p.rows) for p in pages] == [5, 5, 2]
    assert len(ids) == len(set(ids)) == total == 12
    assert pages[-1].next_link is None and all(p.next_link for p in pages[:-1])
    assert all(row["@odata.etag"] and row["lastModifiedDateTime"] for page in pages for row in page.rows)
    assert client.request_counts["read"] == 3 + 1 and client.request_counts["token"] == 1


def test_dataverse_reads_every_account_page_by_page_to_the_last_page(dataverse_connection):
    with open_client(dataverse_connection) as client:
        pages = list(client.read_pages("accounts", page_size=5, select=["name"]))

    ids = [row["accountid"] for page in pages for row in page.rows]
    assert [len(p.rows) for p in pages] == [5, 5, 2]
    assert len(set(ids)) == 12
    assert set(pages[0].rows[0]) >= {"name", "accountid", "modifiedon", "@odata.etag"}
    assert "telephone1" not in pages[0].rows[0]  # $select was honoured


@pytest.mark.parametrize(
    ("service", "entity_set", "id_field", "modified_field", "values"),
    [
        ("bc", "customers", "id", "lastModifiedDateTime", {"displayName": "Changed Customer"}),
        ("dataverse", "accounts", "accountid", "modifiedon", {"name": "Changed Account"}),
    ],
)
def test_only_rows_changed_since_the_watermark_are_read_combined_with_the_filter(
    request, service, entity_set, id_field, modified_field, values
):
    from sandbox import testing

    connection = request.getfixturevalue("bc_connection" if service == "bc" else "dataverse_connection")
    with open_client(connection) as client:
        rows = [row for page in client.read_pages(entity_set) for row in page.rows]
        newest = max(parse_datetime(row[modified_field]) for row in rows)
        changed, untouched = rows[0][id_field], rows[1][id_field]
        testing.edit_as_another_user(service, entity_set, changed, **values)

        since = newest + timedelta(seconds=1)
        name_field = next(iter(values))
        recent = [row for page in client.read_pages(entity_set, modified_since=since) for row in page.rows]
        filtered = [
            row
            for page in client.read_pages(entity_set, modified_since=since, filter=f"{name_field} eq 'Somebody Else'")
            for row in page.rows
        ]

    assert [row[id_field] for row in recent] == [changed]
    assert untouched not in [row[id_field] for row in recent]
    assert recent[0][name_field] == values[name_field]
    assert filtered == []  # the caller's filter still applies, joined with `and`


@pytest.mark.parametrize("fixture", ["bc_connection", "dataverse_connection"])
def test_read_by_ids_returns_the_existing_rows_and_leaves_out_missing_ids(request, fixture):
    connection = request.getfixturevalue(fixture)
    entity_set = "customers" if fixture == "bc_connection" else "accounts"
    with open_client(connection) as client:
        key = client.primary_key(entity_set)
        existing = [uuid.UUID(row[key]) for page in client.read_pages(entity_set) for row in page.rows]
        missing = [uuid.uuid4() for _ in range(140)]
        reads_before = client.request_counts["read"]
        found = client.read_by_ids(entity_set, missing[:70] + existing + missing[70:])

    assert set(found) == set(existing)
    assert all(found[record_id][key] == str(record_id) for record_id in existing)
    # 152 ids: Business Central one $batch of two GETs of 100 ids; Dataverse one GET (it takes 32 KB of URL).
    assert client.request_counts["read"] - reads_before == 1


def test_dataverse_reads_a_bulk_writes_thousand_ids_back_as_one_get_inside_one_batch(dataverse_connection):
    """A `$batch` GET may have a 64 KB URL (compose-http-requests-handle-errors#maximum-url-length): the 1,000 ids of
    an UpsertMultiple go in one inner GET, not ten of 100, each of which the service runs (and counts) on its own."""
    with open_client(dataverse_connection) as client:
        existing = [uuid.UUID(row["accountid"]) for page in client.read_pages("accounts") for row in page.rows]
        inner_gets = []
        send_batch = client.batch_get

        def counting_batch_get(entity_set, queries):
            inner_gets.append(len(queries))
            return send_batch(entity_set, queries)

        client.batch_get = counting_batch_get
        alone = client.ids_per_get("accounts", "accountid", None, None, batched=False)
        batched = client.ids_per_get("accounts", "accountid", None, None, batched=True)  # as read_by_ids asks
        reads_before = client.request_counts["read"]
        thousand = client.read_by_ids("accounts", existing + [uuid.uuid4() for _ in range(1000 - len(existing))])
        most = client.read_by_ids("accounts", existing + [uuid.uuid4() for _ in range(batched - len(existing))])
        more = client.read_by_ids("accounts", existing + [uuid.uuid4() for _ in range(batched + 1 - len(existing))])

    assert set(thousand) == set(most) == set(more) == set(existing)
    # The sandbox refuses a URL past the limits: the largest counts the client packs are taken.
    assert 500 < alone < 1000 < batched
    assert inner_gets == [1, 1, 2]
    assert client.request_counts["read"] - reads_before == 3


def test_count_applies_the_filter(bc_connection, dataverse_connection):
    with open_client(bc_connection) as bc, open_client(dataverse_connection) as dataverse:
        assert bc.count("customers", filter="blocked eq ' '") <= bc.count("customers") == 12
        assert dataverse.count("accounts", filter="customertypecode eq 3") <= dataverse.count("accounts") == 12
        assert dataverse.count("accounts", filter="name eq 'No Such Account Anywhere'") == 0


def test_an_unknown_company_is_not_found(sandbox_connection):
    connection = sandbox_connection("business_central", bc_company_id=uuid.uuid4())
    with open_client(connection) as client, pytest.raises(ConnectorError) as caught:
        list(client.read_pages("customers"))
    assert caught.value.kind == ErrorKind.NOT_FOUND
    assert caught.value.status in (400, 404)


@pytest.mark.parametrize(("fixture", "service"), [("bc_connection", "bc"), ("dataverse_connection", "dataverse")])
def test_read_by_ids_follows_next_links_when_the_server_pages_smaller(request, fixture, service):
    from sandbox import testing

    connection = request.getfixturevalue(fixture)
    entity_set = "customers" if service == "bc" else "accounts"
    with open_client(connection) as client:
        key = client.primary_key(entity_set)
        existing = [uuid.UUID(row[key]) for page in client.read_pages(entity_set) for row in page.rows]
        testing.set_page_cap(service, 4)
        few = client.read_by_ids(entity_set, existing)  # one GET, three pages
        beyond_one_get = client.ids_per_get(entity_set, key, None, None, batched=False) + 1
        many = client.read_by_ids(entity_set, existing + [uuid.uuid4() for _ in range(beyond_one_get)])  # a $batch
        # Dataverse: an inner GET of over 32 KB of URL, whose next link is too long for a GET outside a $batch.
        batched = client.ids_per_get(entity_set, key, [key, client.modified_field], None, batched=True)
        most = client.read_by_ids(entity_set, existing + [uuid.uuid4() for _ in range(batched - len(existing))])

    assert set(few) == set(many) == set(most) == set(existing)
