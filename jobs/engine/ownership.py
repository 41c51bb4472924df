"""Which mapping a record belongs to when several mappings synchronize one Business Central table (mappings.validation
`check_shared_tables` states the rule and refuses mappings that break it).

A record belongs to the first mapping, by record priority, whose filter it matches. A run of a later mapping asks
the source, for each page, which of its records an earlier mapping's filter takes (one read by ids per earlier
mapping, with that mapping's filter, so the service itself evaluates the filter), and leaves those alone.
"""

from __future__ import annotations

from connectors.types import RemoteClient
from jobs.engine.sides import Row, Side
from mappings.models import TableMapping


class EarlierMappings:
    """The mappings that come before one mapping on its source table, and the records they take."""

    def __init__(self, mapping: TableMapping, source: Side, client: RemoteClient) -> None:
        self.filters: list[tuple[str, str]] = []
        if not source.is_dataverse:  # the rule is Business Central's side (mappings.validation.SHARED_SIDES)
            earlier = (
                # Each company's mappings share out its own records: another company's mapping takes none of them.
                TableMapping.objects.filter(
                    company_id=mapping.company_id,
                    bc_entity_set=source.entity_set,
                    record_priority__lt=mapping.record_priority,
                )
                .exclude(pk=mapping.pk)
                .order_by("record_priority", "name")
                .values_list("name", "table_filter")
            )
            self.filters = list(earlier)
        self.source, self.client = source, client

    def keep(self, rows: list[Row]) -> list[Row]:
        """The rows no earlier mapping takes. Raises ConnectorError when the source cannot be asked."""
        for _name, expression in self.filters:
            if not rows:
                break
            if not expression.strip():
                return []  # refused when saved; a mapping saved before the rule existed still takes everything
            ids = [self.source.row_id(row) for row in rows]
            taken = self.client.read_by_ids(
                self.source.entity_set, ids, select=[self.source.id_field], filter=expression
            )
            rows = [row for row in rows if self.source.row_id(row) not in taken]
        return rows
