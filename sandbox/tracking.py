"""Dataverse change tracking: `Prefer: odata.track-changes` gives a delta link on the last page; the delta link
returns rows changed since (by row version) and `$deletedEntity` entries for deleted rows; tokens expire after
`change_tracking_days` (default 7) and then force a full resync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sandbox import dataverse_query, odata, rows, schema
from sandbox.models import Counter, Tombstone, row_model
from sandbox.wire import ApiError, Req, Resp, json_resp

REJECTED_WITH_TRACKING = ("$filter", "$orderby", "$expand", "$top", "$skip")


def _current_version() -> int:
    value = (
        Counter.objects.using(rows.DB).filter(name="dataverse:versionnumber").values_list("value", flat=True).first()
    )
    return value or 0


def _make_token(version: int) -> str:
    return f"{version}!{rows.clock_now():%m/%d/%Y %H:%M:%S}"


def _read_token(text: str) -> int:
    try:
        version_text, _, stamp = text.partition("!")
        version = int(version_text)
        issued = datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ApiError(400, "0x80060888", "The $deltatoken is not valid. Follow @odata.deltaLink as returned.") from exc
    days = float(rows.get_setting("change_tracking_days"))
    if rows.clock_now() - issued > timedelta(days=days):
        raise ApiError(
            400, "0x80044352", "Version stamp associated with the client has expired. Please perform a full sync."
        )
    return version


def _check(req: Req) -> None:
    for name in REJECTED_WITH_TRACKING:
        if name in req.query:
            raise ApiError(
                400, "0x80060888", f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.'
            )


def _link(req: Req, table: schema.Table, params: list[str]) -> str:
    kept = [p for p in req.raw_query.split("&") if p.startswith(("$select=", "%24select="))]
    return f"{req.base_url}{table.entity_set}?" + "&".join(kept + params)


def _page_size(req: Req) -> int:
    cap = int(rows.get_setting("page_cap:dataverse"))
    asked = req.prefer().get("odata.maxpagesize")
    return max(1, min(int(asked), cap)) if asked and asked.isdigit() else cap


def read(req: Req, table: schema.Table) -> Resp:
    _check(req)
    select = req.query.get("$select")
    serializer = rows.dataverse_serializer(table, dataverse_query.select_columns(table, select), key_last=bool(select))
    qs = row_model(table).objects.using(rows.DB).all()
    skiptoken = req.query.get("$skiptoken")
    paging, page_number = dataverse_query.token_from_cookie(skiptoken) if skiptoken else ({}, 1)
    size = _page_size(req)
    if "$deltatoken" not in req.query:
        snapshot = paging.get("v", _current_version())
        token = {"k": paging["k"]} if "k" in paging else None
        page = rows.read_page(table, qs, serializer, order=[], page_size=size, token=token)
        body = {"@odata.context": dataverse_query.context_url(req, table, select), "value": page.rows}
        if page.next_token:
            next_token = odata.encode_token({**odata.decode_token("dataverse", page.next_token), "v": snapshot})
            cookie = quote(dataverse_query.paging_cookie(next_token, page_number + 1, tracking=True), safe="")
            body["@odata.nextLink"] = _link(req, table, [f"$skiptoken={cookie}"])
        else:
            body["@odata.deltaLink"] = _link(req, table, [f"$deltatoken={quote(_make_token(snapshot), safe='')}"])
        return json_resp(200, body, {"Preference-Applied": "odata.track-changes"})
    since = _read_token(req.query["$deltatoken"])
    snapshot = paging.get("v", _current_version())
    after_version = paging.get("after", since)
    changed = list(
        qs.filter(version__gt=after_version, version__lte=snapshot)
        .order_by("version")
        .values_list(*serializer.fields)[: size + 1]
    )
    more = len(changed) > size
    changed = changed[:size]
    body = {
        "@odata.context": dataverse_query.context_url(req, table, select, "/$delta"),
        "value": [serializer.build(r) for r in changed],
    }
    if more:
        last = changed[-1][0]  # the row version is the serializer's first field
        next_token = odata.encode_token({"v": snapshot, "after": last})
        cookie = quote(dataverse_query.paging_cookie(next_token, page_number + 1, tracking=True), safe="")
        body["@odata.nextLink"] = _link(
            req, table, [f"$deltatoken={quote(req.query['$deltatoken'], safe='')}", f"$skiptoken={cookie}"]
        )
        return json_resp(200, body)
    deleted = Tombstone.objects.using(rows.DB).filter(
        entity_set=table.entity_set, version__gt=since, version__lte=snapshot
    )
    context = f"{req.base_url}$metadata#{table.entity_set}/$deletedEntity"
    body["value"] += [
        {"@odata.context": context, "id": rid, "reason": "deleted"} for rid in deleted.values_list("rid", flat=True)
    ]
    body["@odata.deltaLink"] = _link(req, table, [f"$deltatoken={quote(_make_token(snapshot), safe='')}"])
    return json_resp(200, body)


def count(req: Req, table: schema.Table) -> Resp:
    since = _read_token(req.query["$deltatoken"])
    changed = row_model(table).objects.using(rows.DB).filter(version__gt=since).count()
    deleted = Tombstone.objects.using(rows.DB).filter(entity_set=table.entity_set, version__gt=since).count()
    return Resp(200, str(changed + deleted).encode(), {"Content-Type": "text/plain"})
