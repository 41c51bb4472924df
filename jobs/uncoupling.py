"""Uncoupling records the way every path does it: by a person (an uncoupling job) or by a run's deletion policy.

The records' open errors are closed first (they are found through the couplings the uncoupling removes), then
`coupling.services.couplings_uncouple` removes the couplings and clears this company's stamp on the Dataverse rows.
Both the services (`jobs.services`) and the engine (`jobs.engine.deletions`) call this module, so it imports neither.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from connectors.types import RemoteClient
from coupling.models import Coupling
from coupling.services import Uncoupled, couplings_uncouple
from jobs.models import SyncError, SyncJob

ERROR_BATCH = 500


def errors_of_couplings_close(job: SyncJob, couplings: QuerySet[Coupling], state: str, *, user=None) -> None:
    """Close the open errors of the mapping's records these couplings pair, in either direction: an error about a
    pair that is no longer one is no longer wrong."""
    errors = SyncError.objects.filter(table_mapping=job.table_mapping_id)
    pairs = list(couplings.values_list("bc_id", "dataverse_id"))
    for start in range(0, len(pairs), ERROR_BATCH):
        batch = pairs[start : start + ERROR_BATCH]
        bc_ids = [bc_id for bc_id, _ in batch if bc_id]
        dataverse_ids = [dataverse_id for _, dataverse_id in batch if dataverse_id]
        errors.filter(Q(bc_id__in=bc_ids) | Q(dataverse_id__in=dataverse_ids)).close(state, job_id=job.pk, user=user)


def records_uncouple(
    job: SyncJob, couplings: QuerySet[Coupling], *, state: str, dataverse_client: RemoteClient | None, user=None
) -> Uncoupled:
    """Close the records' errors, then uncouple them (see couplings_uncouple)."""
    errors_of_couplings_close(job, couplings, state, user=user)
    return couplings_uncouple(mapping=job.table_mapping, couplings=couplings, dataverse_client=dataverse_client)
