"""Which coupled ids still exist in a system: pages of ids, never one request per record.

`read_by_ids` asks for 100 ids per GET (`id eq a or id eq b ...`) and sends more as one `$batch`, selecting the key
only; a record outside the mapping's filter still exists, so no filter is applied here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar
from uuid import UUID

from connectors.types import RemoteClient

# Ids asked per read_by_ids call: 5,000 ids make 50 GETs in one `$batch` (100 per GET).
IDS_PER_CALL = 5000


T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def missing_ids(client: RemoteClient, entity_set: str, key: str, ids: Iterable[UUID]) -> set[UUID]:
    """The ids among `ids` that no longer exist in `entity_set` (404 or simply absent from the answer)."""
    wanted = list(dict.fromkeys(ids))
    missing: set[UUID] = set()
    for chunk in chunked(wanted, IDS_PER_CALL):
        found = {UUID(str(i)) for i in client.read_by_ids(entity_set, chunk, select=[key])}
        missing.update(i for i in chunk if i not in found)
    return missing
