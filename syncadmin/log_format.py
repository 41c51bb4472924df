"""One JSON object per log line (LOG_FORMAT=json), for log collectors; no secret or token ever reaches it.

Fields: time (UTC, ISO 8601), level, logger, message, the `extra` values the caller gave (the run lines give
job, mapping, direction, kind, status and the counts) and, for an exception, its traceback.
"""

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

# What a record carries anyway: everything else on it came from `extra=` and goes into the line.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# Defence in depth: the code logs no secret, but a message may quote a server's answer or a URL.
_SECRETS = [
    (re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), r"\1[token]"),
    (
        re.compile(
            r"""(["']?(?:access_token|refresh_token|id_token|client_secret|password|secret|token)["']?\s*[:=]\s*["']?)"""
            r"""[^"'&\s,}]+""",
            re.IGNORECASE,
        ),
        r"\1[secret]",
    ),
]


def scrub(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
                line[name] = value if isinstance(value, int | float | bool | type(None)) else scrub(str(value))
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)
