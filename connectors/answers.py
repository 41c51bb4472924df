"""The shape an answer must have before anything in it is used, and where its links may lead.

A service behind a broken proxy answers with an HTML page, a truncated body, `null`, or an object without `value`;
a hostile one sends a next link to another host to collect the bearer token. Each of these becomes a classified
ConnectorError that says what came back, so a run fails with a reason instead of a Python error, and never reads an
answer without `value` as an empty table.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.types import ConnectorError, ErrorKind


def malformed(service: str, what: str, response: httpx.Response | None = None) -> ConnectorError:
    where = ""
    if response is not None:
        content_type = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
        where = f" (status {response.status_code}, '{content_type}')"
    return ConnectorError(
        ErrorKind.MALFORMED_ANSWER,
        f"{service} answered with {what}{where}. Nothing was read from it: check the environment URL, and any proxy "
        "between syncadmin and the service.",
        status=response.status_code if response is not None else None,
        response_excerpt=response.text[:500] if response is not None else "",
    )


def json_object(response: httpx.Response, *, service: str, expected: str) -> dict[str, Any]:
    """The answer's body as a JSON object, or a ConnectorError naming what came back instead."""
    content_type = response.headers.get("content-type", "").lower()
    if "html" in content_type:
        raise malformed(service, f"an HTML page, not {expected}", response)
    try:
        body = response.json()
    except ValueError:
        raise malformed(service, f"a body that is not JSON, not {expected}", response) from None
    if not isinstance(body, dict):
        kind = "null" if body is None else f"a JSON {type(body).__name__}"
        raise malformed(service, f"{kind}, not {expected}", response)
    return body


def collection(response: httpx.Response, *, service: str) -> dict[str, Any]:
    """An OData collection: an object whose `value` is a list of objects, and whose links, if any, are text."""
    body = json_object(response, service=service, expected="an OData collection")
    rows = body.get("value")
    if not isinstance(rows, list):
        missing = "without 'value'" if "value" not in body else "whose 'value' is not a list"
        raise malformed(service, f"a JSON object {missing}, not an OData collection", response)
    if not all(isinstance(row, dict) for row in rows):
        raise malformed(service, "a collection whose rows are not all JSON objects", response)
    for link in ("@odata.nextLink", "@odata.deltaLink"):
        if link in body and not isinstance(body[link], str):
            raise malformed(service, f"an {link} that is not a URL", response)
    return body


def same_origin(link: str, base_url: str, *, service: str) -> str:
    """`link` if it leads to the connection's own scheme, host and port; otherwise a ConnectorError (nothing sent)."""
    try:
        target, base = httpx.URL(link), httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError):
        raise malformed(service, f"a link that is not a URL ({str(link)[:200]!r})") from None
    if not target.is_absolute_url:
        raise malformed(service, f"a link that is not an absolute URL ({link[:200]!r})")
    if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
        raise ConnectorError(
            ErrorKind.MALFORMED_ANSWER,
            f"{service} answered with a link to another server ({target.scheme}://{target.host}"
            f"{f':{target.port}' if target.port else ''}); syncadmin follows links only to {base.host} and sent "
            "that server nothing.",
        )
    return link
