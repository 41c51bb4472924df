"""Bulk writes through the sandbox: one result per operation, in order, with partial failures classified."""

import uuid

import pytest

from connectors.clients import open_client
from connectors.types import ErrorKind, WriteOperation

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def bc_customers(client) -> dict[str, dict]:
    return {row["id"]: row for page in client.read_pages("customers") for row in page.rows}


def test_bc_creates_updates_and_deletes_in_one_batch_with_a_result_per_operation(bc_connection):
    with open_client(bc_connection) as client:
        existing = list(bc_customers(client).values())
        target, doomed = existing[0], existing[1]
        operations = [
            WriteOperation("create", "customers", "new", {"displayName": "Fabrikam Batch Ltd"}),
            WriteOperation(
                "update",
                "customers",
                "upd",
                {"displayName": "Renamed Ltd"},
                uuid.UUID(target["id"]),
                target["@odata.etag"],
            ),
            WriteOperation("delete", "customers", "del", record_id=uuid.UUID(doomed["id"]), etag=doomed["@odata.etag"]),
            WriteOperation("create", "customers", "bad", {"displayName": "x" * 101}),
            WriteOperation(
                "create", "customers", "dep", {"displayName": "Needs Salesperson", "salespersonCode": "NOPE"}
            ),
        ]
        results = client.write_many(operations)
        after = bc_customers(client)

    assert [r.ref for r in results] == ["new", "upd", "del", "bad", "dep"]
    created, updated, deleted, invalid, dependent = results
    assert created.ok and after[str(created.record_id)]["displayName"] == "Fabrikam Batch Ltd"
    assert created.etag == after[str(created.record_id)]["@odata.etag"] and created.modified_on is not None
    assert created.row["number"]  # assigned by the number series
    assert updated.ok and updated.etag != target["@odata.etag"] and updated.row["displayName"] == "Renamed Ltd"
    assert deleted.ok and doomed["id"] not in after
    assert not invalid.ok and invalid.error.kind == ErrorKind.VALIDATION
    assert invalid.error.remote_code == "Application_StringExceededLength" and invalid.error.field == "displayName"
    assert not dependent.ok and dependent.error.kind == ErrorKind.MISSING_DEPENDENCY
    assert "Salesperson" in dependent.error.message
    assert client.request_counts["batch"] == 1
    assert len(after) == 12 - 1 + 1


def test_bc_update_with_a_stale_etag_is_a_conflict_and_changes_nothing(bc_connection):
    from sandbox import testing

    with open_client(bc_connection) as client:
        row = next(iter(bc_customers(client).values()))
        testing.edit_as_another_user("bc", "customers", row["id"], displayName="Changed Elsewhere")
        [result] = client.write_many(
            [
                WriteOperation(
                    "update", "customers", "r", {"displayName": "Ours"}, uuid.UUID(row["id"]), row["@odata.etag"]
                )
            ]
        )
        stored = client.read_by_ids("customers", [uuid.UUID(row["id"])])[uuid.UUID(row["id"])]

    assert not result.ok and result.error.kind == ErrorKind.CONFLICT
    assert result.error.status == 409 and result.error.remote_code == "Request_EntityChanged"
    assert result.error.correlation_id
    assert stored["displayName"] == "Changed Elsewhere"


def test_bc_splits_writes_into_batches_of_at_most_100(bc_connection):
    operations = [WriteOperation("create", "customers", str(i), {"displayName": f"Bulk {i}"}) for i in range(130)]
    with open_client(bc_connection) as client:
        results = client.write_many(operations)
        total = client.count("customers")
    assert all(r.ok for r in results) and [r.ref for r in results] == [str(i) for i in range(130)]
    assert len({r.record_id for r in results}) == 130
    assert client.request_counts["batch"] == 2
    assert total == 12 + 130


def test_dataverse_upserts_with_our_ids_then_updates_with_etags(dataverse_connection):
    ids = [uuid.uuid4() for _ in range(3)]
    with open_client(dataverse_connection) as client:
        created = client.write_many(
            [WriteOperation("upsert", "accounts", f"c{i}", {"name": f"Upserted {i}"}, ids[i]) for i in range(3)]
        )
        updates = [
            WriteOperation("update", "accounts", "u0", {"name": "Updated 0"}, ids[0], created[0].etag),
            WriteOperation("update", "accounts", "u1", {"name": "Updated 1"}, ids[1], None),  # If-Match: *
        ]
        updated = client.write_many(updates)
        stored = client.read_by_ids("accounts", ids)

    assert all(r.ok for r in created) and [r.record_id for r in created] == ids
    assert all(r.etag and r.modified_on and r.row["name"] == f"Upserted {i}" for i, r in enumerate(created))
    assert client.request_counts["write"] == 1  # one UpsertMultiple for the three
    assert [r.ok for r in updated] == [True, True]
    assert updated[0].etag != created[0].etag and updated[0].row["name"] == "Updated 0"
    assert stored[ids[0]]["name"] == "Updated 0" and stored[ids[1]]["name"] == "Updated 1"
    assert stored[ids[2]]["name"] == "Upserted 2"


def test_dataverse_reads_a_bulk_write_back_with_the_columns_written_not_the_whole_record(dataverse_connection):
    """best-practices/work-with-data: "Retrieve specific columns". The read-back returns what the saver keeps (ETag,
    modified-on, key, name, and each written column as the service stored it), not every column of the table."""
    ids = [uuid.uuid4() for _ in range(2)]
    operations = [
        WriteOperation("upsert", "accounts", "a", {"name": "Selected A", "telephone1": "555-0101"}, ids[0]),
        WriteOperation(
            "upsert", "accounts", "b", {"name": "Selected B", "address1_city": "Utrecht"}, ids[1],
            returned=("accountnumber",),  # a column the caller wants back without writing it
        ),
    ]  # fmt: skip
    with open_client(dataverse_connection) as client:
        written = client.write_many(operations)

    assert [r.ok for r in written] == [True, True]
    assert all(r.etag and r.modified_on and r.record_id == ids[i] for i, r in enumerate(written))
    expected = {"@odata.etag", "accountid", "name", "modifiedon", "telephone1", "address1_city", "accountnumber"}
    assert set(written[0].row) == set(written[1].row) == expected
    assert written[0].row["telephone1"] == "555-0101" and written[1].row["address1_city"] == "Utrecht"


def test_dataverse_records_written_but_not_read_back_fail_each_and_the_call_goes_on(dataverse_connection):
    """A read-back refused (here: a column the table lacks) leaves the written records' ETags unknown: each fails
    on its own, saying so and classified by the cause (a 400 is no passing trouble), and the next bulk message of
    the same call is written and read back as usual."""
    ids = [uuid.uuid4() for _ in range(3)]
    operations = [
        WriteOperation("upsert", "accounts", "a", {"name": "Unread A"}, ids[0], returned=("nosuchcolumn",)),
        WriteOperation("upsert", "accounts", "b", {"name": "Unread B"}, ids[1], returned=("nosuchcolumn",)),
        WriteOperation("upsert", "contacts", "c", {"lastname": "Read C"}, ids[2]),
    ]
    with open_client(dataverse_connection) as client:
        written = client.write_many(operations)
        stored = client.read_by_ids("accounts", ids[:2])

    assert [r.ok for r in written] == [False, False, True]
    assert all(r.error.kind == ErrorKind.VALIDATION and r.error.status == 400 for r in written[:2])
    assert written[0].error.message.startswith("The record was written but could not be read back: ")
    assert "nosuchcolumn" in written[0].error.message
    assert {stored[i]["name"] for i in ids[:2]} == {"Unread A", "Unread B"}  # written all the same
    assert written[2].etag and written[2].row["lastname"] == "Read C"


def test_dataverse_bulk_failure_is_narrowed_down_to_the_failing_records(dataverse_connection):
    """UpsertMultiple is all-or-nothing: the client resends through $batch so only the bad records fail."""
    ids = [uuid.uuid4() for _ in range(4)]
    values = [
        {"name": "Good 0"},
        {"name": "n" * 161},  # longer than the column's 160
        {"name": "Good 2"},
        {"name": "Bound", "transactioncurrencyid@odata.bind": f"/transactioncurrencies({uuid.uuid4()})"},
    ]
    with open_client(dataverse_connection) as client:
        results = client.write_many([WriteOperation("upsert", "accounts", str(i), values[i], ids[i]) for i in range(4)])
        stored = client.read_by_ids("accounts", ids)

    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].error.kind == ErrorKind.VALIDATION and results[1].error.field == "name"
    assert results[1].error.remote_code
    assert results[3].error.kind == ErrorKind.MISSING_DEPENDENCY
    assert set(stored) == {ids[0], ids[2]}
    assert results[0].etag == stored[ids[0]]["@odata.etag"]
    assert client.request_counts["batch"] == 1


def test_dataverse_creates_go_through_create_multiple_and_fall_back_on_failure(dataverse_connection):
    chosen = uuid.uuid4()
    operations = [
        WriteOperation("create", "accounts", "a", {"name": "Created A"}, chosen),
        WriteOperation("create", "accounts", "b", {"name": "Created B"}),  # the client chooses the id
    ]
    with open_client(dataverse_connection) as client:
        results = client.write_many(operations)
        again = client.write_many([WriteOperation("create", "accounts", "a2", {"name": "Created A"}, chosen)])
        total = client.count("accounts")

    assert [r.ok for r in results] == [True, True]
    assert results[0].record_id == chosen and results[1].record_id is not None
    # Creating the same id again (a rerun) does not duplicate the record.
    assert again[0].ok and again[0].record_id == chosen
    assert total == 12 + 2


def test_dataverse_stale_etag_conflict_and_delete(dataverse_connection):
    from sandbox import testing

    with open_client(dataverse_connection) as client:
        rows = [row for page in client.read_pages("accounts") for row in page.rows]
        stale, doomed = rows[0], rows[1]
        testing.edit_as_another_user("dataverse", "accounts", stale["accountid"], name="Changed Elsewhere")
        results = client.write_many(
            [
                WriteOperation(
                    "update", "accounts", "s", {"name": "Ours"}, uuid.UUID(stale["accountid"]), stale["@odata.etag"]
                ),
                WriteOperation(
                    "delete", "accounts", "d", record_id=uuid.UUID(doomed["accountid"]), etag=doomed["@odata.etag"]
                ),
                WriteOperation("update", "accounts", "m", {"name": "Nobody"}, uuid.uuid4(), None),
            ]
        )
        remaining = client.read_by_ids("accounts", [uuid.UUID(stale["accountid"]), uuid.UUID(doomed["accountid"])])

    conflict, deleted, missing = results
    assert not conflict.ok and conflict.error.kind == ErrorKind.CONFLICT and conflict.error.status == 412
    assert deleted.ok
    assert not missing.ok and missing.error.kind == ErrorKind.NOT_FOUND
    assert list(remaining.values())[0]["name"] == "Changed Elsewhere" and len(remaining) == 1


def test_bc_upsert_updates_an_existing_record_and_creates_a_missing_one(bc_connection):
    with open_client(bc_connection) as client:
        row = next(iter(bc_customers(client).values()))
        results = client.write_many(
            [
                WriteOperation("upsert", "customers", "there", {"displayName": "Upserted There"}, uuid.UUID(row["id"])),
                WriteOperation("upsert", "customers", "gone", {"displayName": "Upserted New"}, uuid.uuid4()),
            ]
        )
        after = bc_customers(client)
    assert [r.ok for r in results] == [True, True]
    assert results[0].record_id == uuid.UUID(row["id"]) and after[row["id"]]["displayName"] == "Upserted There"
    assert after[str(results[1].record_id)]["displayName"] == "Upserted New" and len(after) == 13
