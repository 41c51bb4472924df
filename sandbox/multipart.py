"""Dataverse `$batch`: multipart/mixed requests with change sets (atomic, rolled back on failure), `Content-ID`
references (`$1`), stop at the first error unless `Prefer: odata.continue-on-error`, at most 1,000 requests."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

from django.db import transaction

from sandbox import metering, rows, schema
from sandbox.wire import ApiError, Req, Resp, dataverse_error_response, parse_query

MAX_REQUESTS = 1000
CRLF = "\r\n"

Dispatch = Callable[[Req], Resp]


@dataclass
class Part:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    parts: list[Part] = field(default_factory=list)


def _boundary(content_type: str) -> str:
    m = re.search(r'boundary="?([^";]+)"?', content_type or "", re.IGNORECASE)
    if not m:
        raise ApiError(400, "0x80060888", "The batch request must have a multipart/mixed Content-Type with a boundary.")
    return m.group(1)


def _split(body: str, boundary: str) -> list[str]:
    delimiter = f"--{boundary}"
    if delimiter not in body:
        raise ApiError(400, "0x80060888", "The batch request body does not contain its boundary.")
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith("--"):
            break
        parts.append(chunk.lstrip("\r\n") if chunk.startswith(("\r\n", "\n")) else chunk)
    return parts


def _headers_and_rest(text: str) -> tuple[dict[str, str], str]:
    normalized = text.replace("\r\n", "\n")
    head, _, rest = normalized.partition("\n\n")
    headers = {}
    for line in head.split("\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parse_http(mime_headers: dict[str, str], text: str) -> Part:
    lines = text.replace("\r\n", "\n").lstrip("\n").split("\n")
    bits = lines[0].split()
    if len(bits) > 2 and bits[-1].startswith("HTTP/"):
        bits = [bits[0], " ".join(bits[1:-1])]
    if len(bits) < 2:
        raise ApiError(400, "0x80060888", f"Invalid request line in batch: '{lines[0]}'.")
    headers, i = {}, 1
    while i < len(lines) and lines[i].strip():
        name, _, value = lines[i].partition(":")
        headers[name.strip().lower()] = value.strip()
        i += 1
    body = "\n".join(lines[i + 1 :]).strip("\n")
    content_id = mime_headers.get("content-id") or headers.get("content-id")
    return Part(bits[0].upper(), bits[1], headers, body.encode(), content_id)


def parse(content_type: str, raw: bytes) -> list[Part | ChangeSet]:
    body = raw.decode("utf-8")
    items: list[Part | ChangeSet] = []
    for chunk in _split(body, _boundary(content_type)):
        mime, rest = _headers_and_rest(chunk)
        if mime.get("content-type", "").lower().startswith("multipart/mixed"):
            change_set = ChangeSet()
            for inner in _split(rest, _boundary(mime["content-type"])):
                inner_mime, inner_rest = _headers_and_rest(inner)
                part = _parse_http(inner_mime, inner_rest)
                if part.method == "GET":
                    raise ApiError(400, "0x80060888", "GET requests are not allowed inside a change set.")
                change_set.parts.append(part)
            items.append(change_set)
        else:
            items.append(_parse_http(mime, rest))
    return items


def _inner_request(outer: Req, part: Part, content_ids: dict[str, str]) -> Req:
    url = part.url
    m = re.match(r"^\$(\d+)(.*)$", url)
    if m:
        ref = f"${m.group(1)}"
        if ref not in content_ids:
            raise ApiError(400, "0x80060888", f"Content-ID Reference: '{ref}' does not exist in the batch context.")
        url = content_ids[ref] + m.group(2)
    url_length = len(url) if "://" in url else len(outer.base_url) + len(url.lstrip("/"))
    url = re.sub(r"^.*?/api/data/v[\d.]+/", "", url).lstrip("/")
    path, _, raw_query = url.partition("?")
    return Req(
        method=part.method,
        path=unquote(path),
        query=parse_query(raw_query),
        raw_query=raw_query,
        headers=part.headers,
        body=part.body,
        base_url=outer.base_url,
        client_id=outer.client_id,
        in_batch=True,
        content_ids=content_ids,
        url_length=url_length,
    )


# Lookups that hold for the whole batch, done by its first part that needs them rather than by every part: the
# caller's application user and the alternate keys' definitions (a batch is one request of one caller; keys are
# defined through the metadata API, not in a batch). 100 updates in a batch made 200 such queries before.
SHARED_LOOKUPS = ("actor", "alternate_keys")


def _run(outer: Req, part: Part, content_ids: dict[str, str], dispatch: Dispatch) -> Resp:
    metering.count_inner_request()
    try:
        inner = _inner_request(outer, part, content_ids)
        if inner.path.strip("/") == "$batch":
            raise ApiError(400, "0x80060888", "Batches cannot be nested.")
        inner.cache.update({key: outer.cache[key] for key in SHARED_LOOKUPS if key in outer.cache})
        try:
            with transaction.atomic(using=rows.DB):
                response = dispatch(inner)
        finally:
            outer.cache.update({key: inner.cache[key] for key in SHARED_LOOKUPS if key in inner.cache})
    except ApiError as err:
        return dataverse_error_response(err)
    if part.content_id and response.status < 400:
        entity = response.headers.get("OData-EntityId")
        if entity is None and response.body:
            entity = _entity_url_from_body(inner, response)
        if entity:
            content_ids[f"${part.content_id}"] = entity
    if "OData-EntityId" in response.headers:
        response.headers.setdefault("Location", response.headers["OData-EntityId"])
    return response


def _entity_url_from_body(inner: Req, response: Resp) -> str | None:
    table = schema.table("dataverse", inner.path.split("(")[0].split("/")[0])
    if table is None:
        return None
    try:
        rid = json.loads(response.body).get(table.primary_key)
    except ValueError:
        return None
    return f"{inner.base_url}{table.entity_set}({rid})" if rid else None


def _http_text(response: Resp) -> str:
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {response.status} {reason}".rstrip()]
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    return CRLF.join(lines) + CRLF + CRLF + (response.body.decode() if response.body else "")


def _part_text(boundary: str, response: Resp, content_id: str | None = None) -> str:
    head = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    return CRLF.join(head) + CRLF + CRLF + _http_text(response) + CRLF


class _ChangeSetFailed(Exception):
    def __init__(self, response: Resp, content_id: str | None):
        self.response = response
        self.content_id = content_id


def batch(req: Req, dispatch: Dispatch) -> Resp:
    """Run a multipart `$batch`, each part through `dispatch` (the Dataverse router, which routes `$batch` here)."""
    items = parse(req.header("content-type"), req.body)
    count = sum(len(i.parts) if isinstance(i, ChangeSet) else 1 for i in items)
    if count > MAX_REQUESTS:
        raise ApiError(400, "0x80060888", f"The batch has {count} requests; the maximum is {MAX_REQUESTS}.")
    continue_on_error = "odata.continue-on-error" in req.prefer()
    boundary = f"batchresponse_{uuid.uuid4()}"
    out: list[str] = []
    content_ids: dict[str, str] = {}
    status = 200
    for item in items:
        if isinstance(item, Part):
            response = _run(req, item, content_ids, dispatch)
            out.append(_part_text(boundary, response))
            failed = response.status >= 400
        else:
            inner = f"changesetresponse_{uuid.uuid4()}"
            texts = []
            try:
                with transaction.atomic(using=rows.DB):
                    for part in item.parts:
                        response = _run(req, part, content_ids, dispatch)
                        if response.status >= 400:
                            raise _ChangeSetFailed(response, part.content_id)
                        texts.append(_part_text(inner, response, part.content_id))
                failed = False
            except _ChangeSetFailed as failure:
                texts = [_part_text(inner, failure.response, failure.content_id)]
                response = failure.response
                failed = True
            out.append(
                f"--{boundary}{CRLF}Content-Type: multipart/mixed; boundary={inner}{CRLF}{CRLF}"
                + "".join(texts)
                + f"--{inner}--{CRLF}"
            )
        if failed and not continue_on_error:
            status = response.status
            break
    body = "".join(out) + f"--{boundary}--{CRLF}"
    headers = {"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"}
    if continue_on_error:
        headers["Preference-Applied"] = "odata.continue-on-error"
    return Resp(status, body.encode(), headers)
