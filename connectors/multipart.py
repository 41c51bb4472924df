"""Dataverse `$batch`: encode requests as multipart/mixed and decode the multipart response (change sets included)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

CRLF = "\r\n"


@dataclass
class BatchPart:
    method: str
    url: str  # absolute, so it works whatever path prefix the service lives under
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass
class PartResponse:
    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text, or None


def encode_batch(parts: list[BatchPart]) -> tuple[str, bytes]:
    """Return (Content-Type header value, body) for a batch of independent requests (no change set)."""
    boundary = f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for part in parts:
        lines += [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary", ""]
        lines.append(f"{part.method} {part.url} HTTP/1.1")
        headers = dict(part.headers)
        if part.body is not None:
            headers.setdefault("Content-Type", "application/json; type=entry")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("")
        lines.append(json.dumps(part.body, ensure_ascii=False) if part.body is not None else "")
    lines.append(f"--{boundary}--")
    lines.append("")
    return f'multipart/mixed; boundary="{boundary}"', CRLF.join(lines).encode("utf-8")


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def boundary_of(content_type: str) -> str | None:
    match = _BOUNDARY.search(content_type or "")
    return match.group(1).strip() if match else None


def decode_batch(content_type: str, body: bytes | str) -> list[PartResponse]:
    """Parse a multipart/mixed batch response into one PartResponse per inner response, in order."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    boundary = boundary_of(content_type)
    if not boundary:
        raise ValueError("The batch response has no multipart boundary.")
    responses: list[PartResponse] = []
    for chunk in _split(text, boundary):
        headers, content = _split_headers(chunk)
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            responses.extend(decode_batch(part_type, content))  # a change set response
        else:
            responses.append(_parse_http_response(content))
    return responses


def _split(text: str, boundary: str) -> list[str]:
    delimiter = f"--{boundary}"
    pieces = re.split(rf"(?:\r?\n)?{re.escape(delimiter)}", text)
    parts = []
    for piece in pieces[1:]:  # before the first delimiter is the preamble
        if piece.startswith("--"):
            break  # closing delimiter
        parts.append(piece.lstrip("\r\n") if piece.startswith(("\r\n", "\n")) else piece)
    return parts


def _split_headers(chunk: str) -> tuple[dict[str, str], str]:
    match = re.search(r"\r?\n\r?\n", chunk)
    if not match:
        return _headers(chunk), ""
    return _headers(chunk[: match.start()]), chunk[match.end() :]


def _headers(block: str) -> dict[str, str]:
    headers = {}
    for line in re.split(r"\r?\n", block):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers


def _parse_http_response(content: str) -> PartResponse:
    status_line, _, rest = content.lstrip("\r\n").partition("\n")
    match = re.match(r"HTTP/\d(?:\.\d)?\s+(\d{3})", status_line.strip())
    status = int(match.group(1)) if match else 0
    if rest.startswith(("\r\n", "\n")):  # no headers at all
        headers: dict[str, str] = {}
        body_text = rest
    else:
        headers, body_text = _split_headers(rest)
    body_text = body_text.strip()
    body: Any = None
    if body_text:
        try:
            body = json.loads(body_text)
        except ValueError:
            body = body_text
    return PartResponse(status=status, headers=headers, body=body)
