"""Counting one mapping's reconciliation: both tables under their filters against the couplings.

Reads, for 100,000 coupled records, a few dozen requests: each side's ids and modified-on under the mapping's
filter in server-driven pages of up to 5,000 (Dataverse) or 20,000 (Business Central) rows with `$select` of the key
and modified-on only; the coupled ids not among them checked for existence in pages of ids (100 per GET, `$batch` of
those); the uncoupled records' match fields by pages of ids; and a sample of coupled pairs read whole, to find drift.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from connectors.choices import ConnectionKind
from connectors.types import RemoteClient
from coupling.existence import chunked, missing_ids
from coupling.matching import MatchGroup, match_criteria, match_key
from coupling.models import Coupling
from jobs.choices import JobKind
from jobs.engine.pipeline import DirectionRun
from jobs.engine.planner import Action, plan_record, source_changed, target_changed
from jobs.engine.sides import Row, Side, run_directions, sides_for
from jobs.models import SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping

# Coupled pairs read whole to look for drift; drift is a sample, every other count is exact.
DRIFT_SAMPLE = 500
IDS_PER_READ = 5000


@dataclass
class Findings:
    counts: dict[str, int] = field(default_factory=dict)
    orphans: list[list[Any]] = field(default_factory=list)  # [coupling pk, side gone: "bc" | "dataverse" | "both"]
    drift: list[dict[str, Any]] = field(default_factory=list)  # {"coupling", "direction", "fields"}

    def as_json(self) -> dict[str, Any]:
        return {"orphans": self.orphans, "drift": self.drift}


def _id_pages(client: RemoteClient, side: Side) -> dict[UUID, Row]:
    """Every record under the side's filter: {id: row of key and modified-on (and its ETag, which comes along)}."""
    rows: dict[UUID, Row] = {}
    for page in client.read_pages(
        side.entity_set,
        filter=side.table_filter or None,
        select=[side.id_field, side.modified_field],
        page_size=getattr(client, "max_page_size", None),
    ):
        for row in page.rows:
            rows[side.row_id(row)] = row
    return rows


def reconcile_counts(
    mapping: TableMapping, *, bc_client: RemoteClient, dataverse_client: RemoteClient, drift_sample: int = DRIFT_SAMPLE
) -> Findings:
    bc, dataverse = sides_for(mapping, Direction.TO_DATAVERSE)
    couplings = list(
        Coupling.objects.filter(table_mapping=mapping).values_list(
            "pk", "bc_id", "dataverse_id", "pending", named=False
        )
    )
    bc_rows = _id_pages(bc_client, bc)
    dv_rows = _id_pages(dataverse_client, dataverse)

    coupled = [(pk, b, d) for pk, b, d, pending in couplings if not pending and b and d]
    # A coupled record outside its filter still exists: only those not read are checked, by pages of ids.
    bc_gone = missing_ids(bc_client, bc.entity_set, bc.id_field, [b for _, b, _ in coupled if b not in bc_rows])
    dv_gone = missing_ids(
        dataverse_client, dataverse.entity_set, dataverse.id_field, [d for _, _, d in coupled if d not in dv_rows]
    )
    findings = Findings()
    for pk, b, d in coupled:
        if b in bc_gone or d in dv_gone:
            side = "both" if (b in bc_gone and d in dv_gone) else ("bc" if b in bc_gone else "dataverse")
            findings.orphans.append([pk, side])

    known_bc = {b for _, b, _, _ in couplings if b}
    known_dv = {d for _, _, d, _ in couplings if d}
    uncoupled_bc = [i for i in bc_rows if i not in known_bc]
    uncoupled_dv = [i for i in dv_rows if i not in known_dv]
    with_match_bc, with_match_dv = _with_match_partner(
        mapping, bc_client, dataverse_client, bc, dataverse, uncoupled_bc, uncoupled_dv
    )
    orphan_sides = [side for _, side in findings.orphans]
    findings.counts = {
        "bc_records": len(bc_rows),
        "dataverse_records": len(dv_rows),
        "coupled": len(coupled),
        "orphans": len(findings.orphans),
        "orphans_bc_gone": orphan_sides.count("bc"),
        "orphans_dataverse_gone": orphan_sides.count("dataverse"),
        "orphans_both_gone": orphan_sides.count("both"),
        "uncoupled_bc": len(uncoupled_bc),
        "uncoupled_dataverse": len(uncoupled_dv),
        "uncoupled_bc_with_match": with_match_bc,
        "uncoupled_dataverse_with_match": with_match_dv,
    }
    orphaned = {pk for pk, _ in findings.orphans}
    present = [pk for pk, b, d in coupled if pk not in orphaned and b in bc_rows and d in dv_rows]
    checked, findings.drift = _drift(mapping, present, bc_rows, dv_rows, bc_client, dataverse_client, drift_sample)
    findings.counts["drift_checked"] = checked
    findings.counts["drift"] = len(findings.drift)
    return findings


def _with_match_partner(
    mapping: TableMapping,
    bc_client: RemoteClient,
    dataverse_client: RemoteClient,
    bc: Side,
    dataverse: Side,
    uncoupled_bc: list[UUID],
    uncoupled_dv: list[UUID],
) -> tuple[int, int]:
    """How many uncoupled records of each side have at least one uncoupled record on the other side whose match
    fields agree with theirs (coupling/matching.py's keys, any priority); 0 when the mapping has no match fields."""
    groups = match_criteria(mapping)
    if not groups or not uncoupled_bc or not uncoupled_dv:
        return 0, 0
    bc_fields = sorted({fm.bc_field for group in groups for fm in group})
    dv_fields = sorted({fm.dataverse_field for group in groups for fm in group})
    bc_match_rows = _read_fields(bc_client, bc, uncoupled_bc, bc_fields)
    dv_match_rows = _read_fields(dataverse_client, dataverse, uncoupled_dv, dv_fields)
    return (
        _count_with_partner(
            groups, bc_match_rows, ConnectionKind.BUSINESS_CENTRAL, dv_match_rows, ConnectionKind.DATAVERSE
        ),
        _count_with_partner(
            groups, dv_match_rows, ConnectionKind.DATAVERSE, bc_match_rows, ConnectionKind.BUSINESS_CENTRAL
        ),
    )


def _read_fields(client: RemoteClient, side: Side, ids: list[UUID], fields: list[str]) -> list[Row]:
    rows: list[Row] = []
    for chunk in chunked(ids, IDS_PER_READ):
        rows.extend(client.read_by_ids(side.entity_set, chunk, select=[side.id_field, *fields]).values())
    return rows


def _count_with_partner(
    groups: list[MatchGroup],
    rows: Iterable[Row],
    kind: ConnectionKind,
    others: Iterable[Row],
    other_kind: ConnectionKind,
) -> int:
    other_keys = [{match_key(row, group, other_kind) for row in others} - {None} for group in groups]
    return sum(
        1
        for row in rows
        if any(match_key(row, group, kind) in keys for group, keys in zip(groups, other_keys, strict=True))
    )


def _drift(
    mapping: TableMapping,
    present: list[int],
    bc_rows: dict[UUID, Row],
    dv_rows: dict[UUID, Row],
    bc_client: RemoteClient,
    dataverse_client: RemoteClient,
    sample_size: int,
) -> tuple[int, list[dict[str, Any]]]:
    """Coupled pairs neither side changed since the last sync whose mapped fields differ: (pairs checked, drifted).

    The unchanged pairs are known from the id pages (ETag or modified-on against the coupling's); a random sample of
    them is read whole and planned as a full synchronization would (values compared by the mapping's own rules).
    """
    directions = run_directions(mapping)
    if not directions or not present:
        return 0, []
    # Planned as an unsaved full-synchronization preview would plan them: forced comparison, nothing written.
    runs = {
        d: DirectionRun(
            SyncJob(kind=JobKind.FULL, table_mapping=mapping, direction=d, dry_run=True),
            bc_client=bc_client,
            dataverse_client=dataverse_client,
        )
        for d in directions
    }
    first = runs[directions[0]]
    wanted = set(present)
    unchanged = []
    # One coupling at a time (not 100,000 model instances at once): only the unchanged ones' ids are kept.
    for coupling in Coupling.objects.filter(table_mapping=mapping, pending=False).iterator(chunk_size=5000):
        if coupling.pk not in wanted:
            continue
        bc_row = bc_rows[coupling.bc_id]  # type: ignore[index]
        dv_row = dv_rows[coupling.dataverse_id]  # type: ignore[index]
        source_row, target_row = (bc_row, dv_row) if first.ctx.source.system == "bc" else (dv_row, bc_row)
        if not source_changed(first.ctx, source_row, coupling) and not target_changed(first.ctx, target_row, coupling):
            unchanged.append(coupling.pk)
    sample = sorted(random.sample(unchanged, min(sample_size, len(unchanged))))
    couplings = {c.pk: c for c in Coupling.objects.filter(pk__in=sample)}
    drifted: dict[int, dict[str, Any]] = {}
    for direction, run in runs.items():
        picked = [couplings[pk] for pk in sample if pk not in drifted]
        source_attr = run.ctx.source.coupling_attr("id")
        for chunk in chunked(picked, IDS_PER_READ):
            source_rows = run.reader.source_client.read_by_ids(
                run.ctx.source.entity_set, [getattr(c, source_attr) for c in chunk], select=run.reader.source_select
            )
            target_rows = run.reader.counterparts(chunk)
            rows = list(source_rows.values())
            run.lookups.prepare(rows)
            target_attr = run.ctx.target.coupling_attr("id")
            for coupling in chunk:
                row = source_rows.get(getattr(coupling, source_attr))
                counterpart = target_rows.get(getattr(coupling, target_attr))
                if row is None or counterpart is None:
                    continue
                plan = plan_record(run.ctx, row, coupling, counterpart, run.lookups)
                fields = [d.field for d in plan.diffs if not _is_company_stamp(mapping, d.field)]
                if plan.action == Action.UPDATE and fields:
                    drifted[coupling.pk] = {"coupling": coupling.pk, "direction": direction, "fields": fields}
    return len(sample), [drifted[pk] for pk in sorted(drifted)]


def _is_company_stamp(mapping: TableMapping, field_name: str) -> bool:
    """The company column the engine stamps on writes to Dataverse is no mapped field: a row the company did not
    write (the source of a record it created in Business Central) lacks it, and that is no drift."""
    column = mapping.dataverse_company_field
    return bool(mapping.stamps_company and column) and field_name.split("@", 1)[0] == column
