"""Couplings a preview of a chain of mappings counts on: those its earlier mappings would make if they had run.

A real "synchronize modified records" of CUSTOMER runs CURRENCY and SALESPEOPLE first, in the same job, and their
inserts and matches couple the currencies and salespeople that customers refer to. A preview writes nothing, so
without this the CUSTOMER preview would find those lookups uncoupled and say "would fail" for records the real run
synchronizes. Each preview of the chain adds here what it would couple; the later ones resolve lookups through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class PlannedPair:
    """One coupling a preview would make. An id the other system would choose on insert is a label, not a GUID."""

    bc_id: UUID | str
    dataverse_id: UUID | str
    bc_values: dict[str, Any] = field(default_factory=dict)  # the Business Central record's fields (codes, numbers)


class PlannedCouplings:
    """By mapping id: the pairs the previews run so far in this chain would couple."""

    def __init__(self) -> None:
        self._by_bc: dict[int, dict[str, PlannedPair]] = {}
        self._by_dataverse: dict[int, dict[str, PlannedPair]] = {}
        # By (mapping id, side kind): records of that side the previews would write (insert, update or couple and
        # write). The reverse direction of the same mapping reads them back in the real run, unchanged.
        self._written: dict[tuple[int, str], set[str]] = {}

    def add(self, mapping_id: int, pair: PlannedPair) -> None:
        self._by_bc.setdefault(mapping_id, {})[str(pair.bc_id).lower()] = pair
        self._by_dataverse.setdefault(mapping_id, {})[str(pair.dataverse_id).lower()] = pair

    def wrote(self, mapping_id: int, side: str, record_id: Any) -> None:
        self._written.setdefault((mapping_id, side), set()).add(str(record_id).lower())

    def written(self, mapping_id: int, side: str) -> set[str]:
        return self._written.get((mapping_id, side), set())

    def by_bc_id(self, mapping_id: int, bc_id: Any) -> PlannedPair | None:
        return self._by_bc.get(mapping_id, {}).get(str(bc_id).lower())

    def by_dataverse_id(self, mapping_id: int, dataverse_id: Any) -> PlannedPair | None:
        return self._by_dataverse.get(mapping_id, {}).get(str(dataverse_id).lower())

    def __len__(self) -> int:
        return sum(len(pairs) for pairs in self._by_bc.values())
