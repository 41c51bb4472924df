"""Dataverse CreateMultiple / UpdateMultiple / UpsertMultiple (all-or-nothing, at most 1,000) and multipart $batch
(change sets with rollback, Content-ID references, stop at first error vs odata.continue-on-error)."""

import uuid

import pytest

from tests.sandbox.conftest import DV_ROOT

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

ACCOUNT = "Microsoft.Dynamics.CRM.account"


def count_named(dv, prefix):
    return len(dv.get("accounts", params={"$filter": f"startswith(name,'{prefix}')"}).json()["value"])


def test_create_multiple_returns_ids(dv, seeded):
    chosen = str(uuid.uuid4())
    targets = [
        {"@odata.type": ACCOUNT, "name": "Bulk A"},
        {"@odata.type": ACCOUNT, "name": "Bulk B", "accountid": chosen},
    ]
    response = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    assert len(body["Ids"]) == 2 and body["Ids"][1] == chosen
    assert dv.get(f"accounts({body['Ids'][0]})").json()["name"] == "Bulk A"


def test_create_multiple_is_all_or_nothing(dv, seeded):
    targets = [{"@odata.type": ACCOUNT, "name": "Atomic 1"}, {"@odata.type": ACCOUNT, "name": "x" * 200}]
    response = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80044331"
    assert count_named(dv, "Atomic") == 0


def test_type_annotation_is_required(dv, seeded):
    response = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{"name": "No type"}]})
    assert response.status_code == 400


def test_upsert_multiple_creates_and_updates_and_answers_204(dv, seeded):
    existing = dv.get("accounts", params={"$top": 1}).json()["value"][0]
    new_id = str(uuid.uuid4())
    targets = [
        {"@odata.type": ACCOUNT, "accountid": existing["accountid"], "name": "Upserted existing"},
        {"@odata.type": ACCOUNT, "accountid": new_id, "name": "Upserted new"},
    ]
    response = dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
    assert response.status_code == 204
    assert dv.get(f"accounts({existing['accountid']})").json()["name"] == "Upserted existing"
    assert dv.get(f"accounts({new_id})").json()["name"] == "Upserted new"
    after = dv.get(f"accounts({existing['accountid']})").json()["@odata.etag"]
    assert int(after[3:-1]) > int(existing["@odata.etag"][3:-1])


def test_update_multiple_fails_whole_on_a_missing_row(dv, seeded):
    existing = dv.get("accounts", params={"$top": 1}).json()["value"][0]
    targets = [
        {"@odata.type": ACCOUNT, "accountid": existing["accountid"], "name": "Should not stick"},
        {"@odata.type": ACCOUNT, "accountid": str(uuid.uuid4()), "name": "Missing"},
    ]
    response = dv.post("accounts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": targets})
    assert response.status_code == 404
    assert dv.get(f"accounts({existing['accountid']})").json()["name"] == existing["name"]


def test_more_than_1000_targets_are_refused(dv, seeded):
    targets = [{"@odata.type": ACCOUNT, "name": f"n{i}"} for i in range(1001)]
    assert dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets}).status_code == 400


def _batch_body(parts, boundary="batch_AAA"):
    return "\r\n".join([*parts, f"--{boundary}--", ""]).encode()


def _request_part(boundary, method, url, body=None, content_id=None, headers=()):
    lines = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += list(headers)
    lines.append("")
    lines.append(body or "")
    return "\r\n".join(lines)


def _post_batch(dv, body, boundary="batch_AAA", prefer=None):
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    return dv.post("$batch", content=body, headers=headers)


def _changeset(inner_parts, changeset="changeset_BBB", boundary="batch_AAA"):
    head = f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
    return head + "\r\n".join([*inner_parts, f"--{changeset}--"])


def test_batch_with_change_set_and_content_id_references(dv, seeded):
    cs = "changeset_BBB"
    body = _batch_body(
        [
            _changeset(
                [
                    _request_part(cs, "POST", "/api/data/v9.2/accounts", '{"name":"Batch parent"}', content_id="1"),
                    _request_part(cs, "PATCH", "$1", '{"telephone1":"555-0100"}', content_id="2"),
                    _request_part(
                        cs, "POST", "contacts", '{"lastname":"Batchkid","parentcustomerid_account@odata.bind":"$1"}',
                        content_id="3",
                    ),
                ]
            ),
            _request_part("batch_AAA", "GET", "accounts?$select=name&$filter=name%20eq%20'Batch%20parent'"),
        ]
    )  # fmt: skip
    response = _post_batch(dv, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("multipart/mixed; boundary=batchresponse_")
    text = response.text
    assert text.count("HTTP/1.1 204 No Content") == 3
    assert "Content-ID: 1" in text and "OData-EntityId:" in text and "Location:" in text
    assert '"telephone1"' not in text and '"name":"Batch parent"' in text
    parent = dv.get("accounts", params={"$filter": "name eq 'Batch parent'"}).json()["value"][0]
    assert parent["telephone1"] == "555-0100"
    kid = dv.get("contacts", params={"$filter": "lastname eq 'Batchkid'"}).json()["value"][0]
    assert kid["_parentcustomerid_value"] == parent["accountid"]


def test_failed_change_set_rolls_back_and_stops_the_batch(dv, seeded):
    cs = "changeset_CCC"
    body = _batch_body(
        [
            _changeset(
                [
                    _request_part(cs, "POST", "accounts", '{"name":"Rolled back"}', content_id="1"),
                    _request_part(cs, "POST", "accounts", '{"name":"' + "x" * 200 + '"}', content_id="2"),
                ],
                changeset=cs,
            ),
            _request_part("batch_AAA", "POST", "accounts", '{"name":"Never run"}'),
        ]
    )
    response = _post_batch(dv, body)
    assert response.status_code == 400
    assert "0x80044331" in response.text
    assert count_named(dv, "Rolled back") == 0
    assert count_named(dv, "Never run") == 0


def test_continue_on_error_runs_every_part(dv, seeded):
    body = _batch_body(
        [
            _request_part("batch_AAA", "POST", "accounts", '{"name":"' + "x" * 200 + '"}'),
            _request_part("batch_AAA", "POST", "accounts", '{"name":"Still created"}'),
        ]
    )
    response = _post_batch(dv, body, prefer="odata.continue-on-error")
    assert response.status_code == 200
    assert "HTTP/1.1 400" in response.text and "HTTP/1.1 204" in response.text
    assert count_named(dv, "Still created") == 1


def test_unknown_content_id_reference_is_400(dv, seeded):
    cs = "changeset_DDD"
    body = _batch_body([_changeset([_request_part(cs, "PATCH", "$7", '{"name":"x"}', content_id="1")], changeset=cs)])
    response = _post_batch(dv, body)
    assert response.status_code == 400
    assert "Content-ID Reference: '$7' does not exist in the batch context." in response.text


def test_batch_updates_with_if_match_inside(dv, seeded):
    row = dv.get("accounts", params={"$top": 1}).json()["value"][0]
    body = _batch_body(
        [
            _request_part(
                "batch_AAA", "PATCH", f"accounts({row['accountid']})", '{"name":"Batch stale"}',
                headers=["If-Match: W/\"1\""],
            ),
            _request_part(
                "batch_AAA", "PATCH", f"accounts({row['accountid']})", '{"name":"Batch fresh"}',
                headers=[f"If-Match: {row['@odata.etag']}"],
            ),
        ]
    )  # fmt: skip
    response = _post_batch(dv, body, prefer="odata.continue-on-error")
    assert "HTTP/1.1 412 Precondition Failed" in response.text
    assert dv.get(f"accounts({row['accountid']})").json()["name"] == "Batch fresh"


def test_upsert_multiple_handles_the_same_new_row_twice(dv, seeded):
    new_id = str(uuid.uuid4())
    targets = [
        {"@odata.type": ACCOUNT, "accountid": new_id, "name": "First write"},
        {"@odata.type": ACCOUNT, "accountid": new_id, "telephone1": "555-0101"},
    ]
    assert dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets}).status_code == 204
    row = dv.get(f"accounts({new_id})").json()
    assert (row["name"], row["telephone1"]) == ("First write", "555-0101")
    duplicate = [{"@odata.type": ACCOUNT, "accountid": new_id, "name": "Again"}]
    assert dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": duplicate}).status_code == 412


def test_choice_values_of_a_bulk_write_are_checked_without_a_query_each(dv, seeded):
    """A standard option is checked against the schema; only a value outside it is looked up among the options added
    with InsertOptionValue. A query per choice value of every record took more than half of a bulk insert's time."""
    from django.db import connections

    from sandbox.models import DvOptionValue

    targets = [
        {"@odata.type": ACCOUNT, "accountid": str(uuid.uuid4()), "name": f"Typed {i}", "customertypecode": 3}
        for i in range(20)
    ]
    statements = []  # an execute wrapper, not CaptureQueriesContext: each request resets Django's query log

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connections["sandbox"].execute_wrapper(record):
        response = dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
    assert response.status_code == 204
    assert count_named(dv, "Typed") == 20
    assert statements, "the sandbox's queries were not seen"
    assert [sql for sql in statements if DvOptionValue._meta.db_table in sql] == []

    # A value that is neither a standard option nor an appended one is still refused.
    unknown = [{"@odata.type": ACCOUNT, "accountid": str(uuid.uuid4()), "name": "Typed x", "customertypecode": 4242}]
    response = dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": unknown})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x8004431a"


def test_a_batch_looks_up_its_caller_and_the_alternate_keys_once(dv, seeded):
    """The parts of a `$batch` share the lookups that hold for the whole request: 100 updates in one batch made 200
    such queries, a sixth of the sandbox's work for an incremental run."""
    from django.db import connections

    from connectors.multipart import BatchPart, encode_batch
    from sandbox.models import AppClient, Setting

    accounts = dv.get("accounts", params={"$top": 10}).json()["value"]
    parts = [
        BatchPart(
            "PATCH",
            f"{DV_ROOT}accounts({account['accountid']})",
            {"If-Match": account["@odata.etag"], "Prefer": "return=representation"},
            {"name": f"Batched {i}"},
        )
        for i, account in enumerate(accounts)
    ]
    content_type, body = encode_batch(parts)
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connections["sandbox"].execute_wrapper(record):
        response = dv.post("$batch", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200
    assert count_named(dv, "Batched") == len(accounts) == 10
    assert sum(AppClient._meta.db_table in sql for sql in statements) == 1
    assert sum(Setting._meta.db_table in sql for sql in statements) <= 2  # the request's settings, the keys once


def _url_of_length(length, prefix):
    """A GET URL of accounts exactly `length` characters long: a filter of ids (`accountid eq <guid> or ...`, as
    the connectors send), padded to the length with spaces (written `+`) before the first `eq`."""
    head = f"{prefix}accounts?$filter=accountid"
    term = f"accountid+eq+{uuid.UUID(int=0)}"
    terms = [term.removeprefix("accountid")]
    while len(head) + len("+or+".join([*terms, term])) <= length:
        terms.append(term)
    tail = "+or+".join(terms)
    return head + "+" * (length - len(head) - len(tail)) + tail


def test_a_url_longer_than_32_kb_is_refused_and_inside_a_batch_64_kb_are_taken(dv, seeded):
    """learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
    #maximum-url-length: "The maximum length of URL accepted is 32 KB (32768 characters) ... If you send requests
    inside the body of a $batch request, you can send requests with URLs up to 64 KB (65,536 characters)"."""
    root = str(dv.base_url)
    at_limit = dv.get(_url_of_length(32_768, root))
    past_limit = dv.get(_url_of_length(32_769, root))
    assert at_limit.status_code == 200 and at_limit.json()["value"] == []
    assert past_limit.status_code == 414
    assert "32,769 characters long; at most 32,768" in past_limit.json()["error"]["message"]

    def batched_get(length):
        return _post_batch(dv, _batch_body([_request_part("batch_AAA", "GET", _url_of_length(length, root))])).text

    assert "HTTP/1.1 200 OK" in batched_get(65_536)
    refused = batched_get(65_537)
    assert "HTTP/1.1 414" in refused and "at most 65,536" in refused
