"""What a Dataverse collection read shares with change tracking (sandbox/tracking.py): the `$select` columns, the
paging cookie inside `$skiptoken`, and the `@odata.context` URL."""

from __future__ import annotations

import re
from urllib.parse import unquote

from sandbox import odata, schema
from sandbox.wire import ApiError, Req


def select_columns(table: schema.Table, text: str | None) -> list[schema.Column]:
    columns = odata.parse_select(table, text)
    if text and any(c.kind == "money" for c in columns):
        currency = table.column("_transactioncurrencyid_value")
        if currency and currency not in columns:
            columns.append(currency)
    return columns


def paging_cookie(token: str, page: int, tracking: bool = False) -> str:
    return f'<cookie pagenumber="{page}" pagingcookie="{token}" istracking="{tracking}" />'


def token_from_cookie(text: str) -> tuple[dict, int]:
    text = unquote(text)
    match = re.search(r'pagenumber="(\d+)"\s+pagingcookie="([^"]*)"', text)
    if not match:
        raise ApiError(400, "0x80060888", "The $skiptoken is not valid. Follow @odata.nextLink as it was returned.")
    return odata.decode_token("dataverse", match.group(2)), int(match.group(1))


def context_url(req: Req, table: schema.Table, select: str | None, suffix: str = "") -> str:
    return f"{req.base_url}$metadata#{table.entity_set}" + (f"({select})" if select else "") + suffix
