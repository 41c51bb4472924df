"""Who wants to hear about each HTTP request to the remote systems: a list of callables, for counting traffic.

The connectors know nothing of where the counts go (operations registers its Redis recorder at start-up), so the
imports keep pointing one way. An observer is called after every attempt of an API request, and once when a token
cannot be obtained, with:

    (connection_id, service, kind, status, retried, token_failure)

- `connection_id`: the Connection's pk (None for a connection never saved, as in a connection test before saving);
- `service`: the Connection's kind (`business_central` or `dataverse`);
- `kind`: the request's kind (`read`, `write`, `batch`, `metadata`, `webhook`, or `token` for a token failure);
- `status`: the HTTP status, or None when no answer came (timeout, dropped connection, refused token request);
- `retried`: this attempt repeats an earlier one of the same request;
- `token_failure`: the token endpoint refused or failed (then `kind` is `token`).

An observer must be fast (it runs on the request's thread) and must not raise; if one does all the same, the request
goes on and the failure is logged once per observer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger("connectors")

Observer = Callable[[int | None, str, str, int | None, bool, bool], None]

observers: list[Observer] = []
_failed: set[int] = set()  # ids of observers whose failure was already logged


def notify(
    connection_id: int | None, service: str, kind: str, status: int | None, *, retried: bool, token_failure: bool
) -> None:
    """Tell every observer about one request attempt (or token failure); never raise."""
    for observer in observers:
        try:
            observer(connection_id, service, kind, status, retried, token_failure)
        except Exception:
            if id(observer) not in _failed:
                _failed.add(id(observer))
                logger.exception("A request observer failed; requests go on, its counts may be missing")
