"""Helpers for tests and the admin page: out-of-band edits "by another user", fault injection and service knobs.

Everything is stored in the sandbox database, so it works across processes (demo) as well as in-process (tests).
`service` is "bc" or "dataverse"; values use the API's property names (`displayName=...`, `name=...`).
"""

from __future__ import annotations

import uuid

from django.db import transaction

from sandbox import bc, costs, dataverse, faults, rows, schema, services, webhooks
from sandbox.models import AccessToken, Fault, row_model
from sandbox.wire import Req

ANOTHER_USER_ID = "0a7e5f3c-9b1d-4c2e-8f6a-5d4c3b2a1f00"


def _table(service: str, entity_set: str) -> schema.Table:
    table = schema.table(service, entity_set)
    if table is None:
        raise ValueError(f"unknown {service} entity set {entity_set!r}")
    return table


def _company_of(table: schema.Table, record_id) -> str:
    company = (
        row_model(table).objects.using(rows.DB).filter(rid=str(record_id)).values_list("company", flat=True).first()
    )
    if company is None:
        raise LookupError(f"no {table.entity_set} row {record_id}")
    return company


def _internal_request() -> Req:
    return Req("PATCH", "", {}, {}, b"", base_url="http://sandbox.invalid/api/data/v9.2/")


def another_user_id() -> str:
    """A Dataverse user other than any app's: out-of-band edits are stamped with it (`_modifiedby_value`)."""
    users = row_model(schema.table("dataverse", "systemusers")).objects.using(rows.DB)
    if not users.filter(rid=ANOTHER_USER_ID).exists():
        stamp = rows.later_than(None, seconds_only=True)
        users.create(
            rid=ANOTHER_USER_ID,
            created_at=stamp,
            modified_at=stamp,
            version=rows.next_versions(),
            firstname="Alex",
            lastname="Other",
            fullname="Alex Other",
            internalemailaddress="alex.other@cronus-demo.com",
            domainname="alex.other@cronus-demo.com",
            islicensed=True,
        )
    return ANOTHER_USER_ID


def edit_as_another_user(service: str, entity_set: str, record_id, **values) -> None:
    """Change a row as someone else would: the ETag, version and modified-on move, webhooks fire."""
    table = _table(service, entity_set)
    with transaction.atomic(using=rows.DB):
        if service == "bc":
            bc.update_row(table, _company_of(table, record_id), str(record_id), values, if_match=None)
        else:
            rid = str(record_id).lower()
            dataverse.modify(_internal_request(), table, rid, values, actor=another_user_id())


def delete_as_another_user(service: str, entity_set: str, record_id) -> None:
    table = _table(service, entity_set)
    with transaction.atomic(using=rows.DB):
        if service == "bc":
            bc.delete_row(table, _company_of(table, record_id), str(record_id), if_match=None)
        else:
            dataverse.remove(table, str(record_id).lower(), actor=another_user_id())


def delete_keeping_a_copy(service: str, entity_set: str, record_id) -> dict:
    """Delete a row as someone else would, returning what it held, for `restore_as_another_user`."""
    copy = row_model(_table(service, entity_set)).objects.using(rows.DB).filter(rid=str(record_id)).values().first()
    if copy is None:
        raise LookupError(f"no {entity_set} row {record_id}")
    delete_as_another_user(service, entity_set, record_id)
    return copy


def restore_as_another_user(service: str, entity_set: str, copy: dict) -> None:
    """Put a deleted row back under its id, as someone restoring it would (Dataverse's restore of deleted records;
    in Business Central, the id existing again): a new version and modified-on, as any change."""
    table = _table(service, entity_set)
    values = dict(copy)
    values.pop("id", None)
    with transaction.atomic(using=rows.DB):
        if service == "bc":
            values.update(modified_at=rows.later_than(values["modified_at"]), version=values["version"] + 1)
            values["etag"] = rows.bc_etag()
        else:
            values.update(
                modified_at=rows.later_than(values["modified_at"], seconds_only=True),
                version=rows.next_versions(),
                modified_by=another_user_id(),
            )
        row_model(table).objects.using(rows.DB).create(**values)


def create_as_another_user(service: str, entity_set: str, **values) -> uuid.UUID:
    """Create a row out of band (as if typed in by a user); returns its id."""
    table = _table(service, entity_set)
    with transaction.atomic(using=rows.DB):
        if service == "bc":
            rid = bc.create_row(table, str(services.demo_company_id()), values)
        else:
            rid = dataverse.insert(_internal_request(), table, values, actor=another_user_id())
    return uuid.UUID(rid)


def inject_faults(kind: str, count: int = 1, *, service: str = "", retry_after: int = 1, seconds: float = 0.0) -> None:
    """The next `count` requests (to `service`, or to either when "") fail as `kind`:

    "429" (throttled, with Retry-After), "503" (with Retry-After), "timeout" (no answer in time; `seconds` is how
    long a real socket is held first), "drop" (connection closed without a response), or "latency" (answered
    after `seconds` more).
    """
    if kind not in faults.KINDS:
        raise ValueError(f"fault kind must be one of {faults.KINDS}")
    Fault.objects.using(rows.DB).create(
        kind=kind, service=service, remaining=count, retry_after=retry_after, seconds=seconds
    )


def clear_faults() -> None:
    Fault.objects.using(rows.DB).all().delete()


def set_token_lifetime(seconds: int) -> None:
    """`expires_in` of tokens issued from now on."""
    rows.set_setting("token_lifetime", int(seconds))


def expire_tokens() -> None:
    """Make every token issued so far expired (the next call with one gets 401)."""
    AccessToken.objects.using(rows.DB).update(expires_at=0)


def set_page_cap(service: str, n: int) -> None:
    """The server's largest page (BC default 20,000; Dataverse 5,000)."""
    if service not in ("bc", "dataverse"):
        raise ValueError("service must be 'bc' or 'dataverse'")
    rows.set_setting(f"page_cap:{service}", int(n))


def set_alternate_keys(entity_set: str, keys: list[list[str]]) -> None:
    """Define Dataverse alternate keys for a table, e.g. `set_alternate_keys("accounts", [["accountnumber"]])`."""
    table = _table("dataverse", entity_set)
    for key in keys:
        for column in key:
            if table.column(column) is None:
                raise ValueError(f"{entity_set} has no column {column}")
    current = dict(rows.get_setting("alternate_keys"))
    current[entity_set] = keys
    rows.set_setting("alternate_keys", current)


def set_throttle(
    *, enabled: bool = True, limit: int = 6000, window_seconds: int = 300, concurrency: int = 52, retry_after: int = 5
):
    """Service protection limits per client: requests per sliding window, and requests in flight."""
    rows.set_setting(
        "throttle",
        {
            "enabled": enabled,
            "limit": limit,
            "window_seconds": window_seconds,
            "concurrency": concurrency,
            "retry_after": retry_after,
        },
    )


def set_webhook_timing(
    *, bc_delay: float | None = None, collection_threshold: int | None = None, dataverse_delay: float | None = None
):
    """BC coalesces changes for ~30 s (near zero suits tests) and sends `collection` above the threshold."""
    if bc_delay is not None:
        rows.set_setting("bc_webhook_delay", float(bc_delay))
    if collection_threshold is not None:
        rows.set_setting("bc_webhook_collection_threshold", int(collection_threshold))
    if dataverse_delay is not None:
        rows.set_setting("dataverse_webhook_delay", float(dataverse_delay))


def set_change_tracking_days(days: float) -> None:
    """How long Dataverse delta tokens stay valid (default 7 days); older ones force a full resync."""
    rows.set_setting("change_tracking_days", days)


def register_dataverse_webhook(
    *, url: str, entity_set: str, messages=("Create", "Update", "Delete"), header_name: str = "", header_value: str = ""
) -> int:
    return webhooks.register_dataverse_webhook(
        url=url, entity_set=entity_set, messages=messages, header_name=header_name, header_value=header_value
    )


def set_cost_profile(profile: costs.CostProfile | None) -> None:
    """Make the emulated services take time and enforce their limits as `profile` says (None: off again).

    See sandbox.costs; `costs.cost_profile(...)` does the same for a block.
    """
    costs.store(profile)


cost_profile = costs.cost_profile
