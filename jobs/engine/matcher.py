"""Matching during a synchronization: couple uncoupled source records of a page to their one target record.

Business Central matches uncoupled records during a sync only for currencies; here every mapping with match
criteria does, so a scheduled run couples the same company instead of skipping it or creating a duplicate. The
rule is match-based coupling's (`coupling.matching.pair_uniquely`); what this module adds is the page: the
candidates are searched for by the page's match values, and uncoupled source records outside the page that share
a value (rivals) keep a match from being unique, wherever the pages happen to split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F

from connectors.odata import and_filters, eq_any
from connectors.types import ConnectorError, RemoteClient
from coupling.matching import MatchGroup, details_text, identifying_fields, match_key, pair_uniquely
from coupling.models import AmbiguousMatch, Coupling
from coupling.services import ambiguous_matches_settle
from jobs.choices import ErrorClass
from jobs.engine.coupling_rows import insert_couplings
from jobs.engine.planned import PlannedCouplings, PlannedPair
from jobs.engine.planner import Action, Plan
from jobs.engine.reader import SourceUnreadable
from jobs.engine.sides import Row, Side
from jobs.models import SyncJob
from mappings.models import TableMapping

MATCH_VALUES_PER_REQUEST = 50


@dataclass
class PageMatches:
    """Uncoupled records of a page that matched ({source id: (new coupling, target row)}), and those whose match
    is shared ({source id: candidate target rows})."""

    coupled: dict[UUID, tuple[Coupling, Row]] = field(default_factory=dict)
    ambiguous: dict[UUID, list[Row]] = field(default_factory=dict)


class SyncMatcher:
    def __init__(
        self,
        job: SyncJob,
        source: Side,
        target: Side,
        *,
        groups: list[MatchGroup],
        source_client: RemoteClient,
        target_client: RemoteClient,
        source_select: list[str],
        target_select: list[str],
        planned: PlannedCouplings | None = None,
    ) -> None:
        self.job = job
        # A preview: the couplings its chain (and its own earlier pages) would have made by now, which the real run
        # has saved by then, so they take records out of matching as saved couplings do.
        self.planned = planned
        self.mapping: TableMapping = job.table_mapping
        self.source, self.target = source, target
        self.groups = groups
        self.source_client, self.target_client = source_client, target_client
        # Read with the match fields: the number, city and e-mail that tell candidates of the same name apart.
        self._details = {side.system: identifying_fields(self.mapping, side.system) for side in (source, target)}
        if source_select is not None:
            source_select = list(dict.fromkeys([*source_select, *self._details[source.system]]))
        if target_select is not None:
            target_select = list(dict.fromkeys([*target_select, *self._details[target.system]]))
        self.source_select, self.target_select = source_select, target_select
        # Ambiguous matches of records this run couples are settled: known once, so pages without any cost nothing.
        self._ambiguous_listed = AmbiguousMatch.objects.filter(table_mapping=self.mapping).exists()

    def match(self, rows: list[Row]) -> PageMatches:
        """Couple the page's uncoupled records (`rows`) that match uniquely; list the ambiguous ones.

        Those that match several target records, or share their one match with other uncoupled records, at some
        priority and match uniquely at none, are ambiguous. Business Central creates a new record for these, one
        more duplicate beside the ones that made the match ambiguous; here they fail and wait to be coupled.
        """
        if not rows or not self.groups:
            return PageMatches()
        sources = {self.source.row_id(row): row for row in rows}
        if not any(match_key(row, group, self.source.kind) for row in rows for group in self.groups):
            return PageMatches()  # nothing to search for
        candidates = self._uncoupled_targets(rows)
        rivals = self._rivals(rows, set(sources))
        if self.planned is not None:
            page = {str(i).lower() for i in sources}
            # A target the preview would have coupled to another record is taken (one coupled to a record of this
            # page is its pair, read back in the reverse direction); a rival it would have coupled claims nothing.
            candidates = {
                target_id: row
                for target_id, row in candidates.items()
                if (pair := self._planned_pair(self.target, target_id)) is None
                or str(self._pair_id(pair, self.source)).lower() in page
            }
            rivals = [row for row in rivals if self._planned_pair(self.source, self.source.row_id(row)) is None]
        if not candidates:
            return PageMatches()
        pairing = pair_uniquely(
            self.groups,
            sources,
            self.source.kind,
            candidates,
            self.target.kind,
            rivals=rivals,
        )
        ambiguous = {
            source_id: [candidates[t] for t in target_ids]
            for source_id, target_ids in pairing.ambiguous_sources.items()
        }
        if ambiguous and not self.job.dry_run:
            self._record_ambiguous(sources, ambiguous)
        result = PageMatches(ambiguous=ambiguous)
        for source_id, target_id in pairing.pairs.items():
            target_row = candidates[target_id]
            coupling = Coupling(
                table_mapping=self.mapping,
                **{
                    self.source.coupling_attr("id"): source_id,
                    self.target.coupling_attr("id"): target_id,
                    self.source.coupling_attr("name"): self.source.row_name(sources[source_id]),
                    self.target.coupling_attr("name"): self.target.row_name(target_row),
                },
            )
            result.coupled[source_id] = (coupling, target_row)
        if result.coupled and not self.job.dry_run:
            couplings = [c for c, _ in result.coupled.values()]
            with transaction.atomic():
                insert_couplings(couplings)
                self.settle_ambiguous(couplings)
                SyncJob.objects.filter(pk=self.job.pk).update(coupled=F("coupled") + len(couplings))
        return result

    def newly_coupled(self, matches: PageMatches) -> int:
        """A preview: how many of the page's matches the run would couple, which is all of them but those the
        chain's earlier previews would have coupled already (the reverse direction reads them back coupled)."""
        return sum(1 for source_id in matches.coupled if self._planned_pair(self.source, source_id) is None)

    def _planned_pair(self, side: Side, record_id: Any) -> PlannedPair | None:
        if self.planned is None:
            return None
        find = self.planned.by_dataverse_id if side.is_dataverse else self.planned.by_bc_id
        return find(self.mapping.pk, record_id)

    @staticmethod
    def _pair_id(pair: PlannedPair, side: Side) -> Any:
        return pair.dataverse_id if side.is_dataverse else pair.bc_id

    def settle_ambiguous(self, couplings: list[Coupling]) -> None:
        """Take records coupled now off the ambiguous matches (in the caller's transaction)."""
        if self._ambiguous_listed and couplings:
            ambiguous_matches_settle(
                mapping=self.mapping,
                bc_ids=[c.bc_id for c in couplings],
                dataverse_ids=[c.dataverse_id for c in couplings],
            )

    def ambiguous_plan(self, row: Row, targets: list[Row]) -> Plan:
        names = ", ".join(sorted(f"'{self.target.row_name(t)}'" for t in targets)[:5])
        return Plan(
            Action.FAIL,
            row,
            error_class=ErrorClass.AMBIGUOUS_MATCH,
            message=(
                f"The match fields do not single out one {self.target.label} record for this record: it matches "
                f"{names}{' and more' if len(targets) > 5 else ''}, or shares its match with another record. "
                f"Nothing was coupled and no new record was created beside them. Couple it by hand (Couplings, "
                f"ambiguous matches), then synchronize it again."
            ),
        )

    def _uncoupled_targets(self, rows: list[Row]) -> dict[UUID, Row]:
        found = self._search(self.target, self.target_client, self.target_select, rows)
        target_attr = self.target.coupling_attr("id")
        coupled = set(
            Coupling.objects.filter(table_mapping=self.mapping, **{f"{target_attr}__in": list(found)}).values_list(
                target_attr, flat=True
            )
        )
        return {target_id: row for target_id, row in found.items() if target_id not in coupled}

    def _rivals(self, rows: list[Row], page_ids: set[UUID]) -> list[Row]:
        """Uncoupled source records outside the page that share a match value with it: a match is unique only if
        no other uncoupled record of the whole table could claim it."""
        found = self._search(self.source, self.source_client, self.source_select, rows)
        others = [i for i in found if i not in page_ids]
        id_attr = self.source.coupling_attr("id")
        coupled = set(
            Coupling.objects.filter(
                table_mapping=self.mapping, pending=False, **{f"{id_attr}__in": others}
            ).values_list(id_attr, flat=True)
        )
        return [found[i] for i in others if i not in coupled]

    def _search(self, side: Side, client: RemoteClient, select: list[str], rows: list[Row]) -> dict[UUID, Row]:
        """Records of `side` whose first match field of a priority equals a value of the page, within that side's
        filter: one request per priority (and 50 values)."""
        found = {}
        for group in self.groups:
            source_field, side_field = group[0].field_of(self.source.kind), group[0].field_of(side.kind)
            values = sorted(
                {str(row[source_field]).strip() for row in rows if str(row.get(source_field) or "").strip()}
            )
            for start in range(0, len(values), MATCH_VALUES_PER_REQUEST):
                chunk = values[start : start + MATCH_VALUES_PER_REQUEST]
                flt = and_filters(eq_any(side_field, chunk), side.table_filter)
                try:
                    for page in client.read_pages(side.entity_set, filter=flt, select=select):
                        for row in page.rows:
                            found[side.row_id(row)] = row
                except ConnectorError as exc:
                    raise SourceUnreadable(f"{side.label} could not be searched for matches: {exc}") from exc
        return found

    def _record_ambiguous(self, sources: dict[UUID, Row], ambiguous: dict[UUID, list[Row]]) -> None:
        """List each ambiguous record with its candidates, where an administrator couples it by a click."""
        self._ambiguous_listed = True
        entries = [
            AmbiguousMatch(
                table_mapping=self.mapping,
                side=self.source.kind,
                record_id=source_id,
                record_name=self.source.row_name(sources[source_id]),
                candidates=[
                    {
                        "id": str(self.target.row_id(target)),
                        "name": self.target.row_name(target),
                        "details": details_text(target, self._details[self.target.system]),
                    }
                    for target in targets
                ],
                job_id=self.job.pk,
            )
            for source_id, targets in ambiguous.items()
        ]
        AmbiguousMatch.objects.bulk_create(
            entries,
            update_conflicts=True,
            unique_fields=["table_mapping", "side", "record_id"],
            # The job that first listed a record keeps it: a match-based coupling job's page counts the records
            # it found ambiguous "still listed" while they are, whichever run finds them again.
            update_fields=["record_name", "candidates"],
        )
