"""Business Central companies: which mappings a configuration service works on, and each company's row in Dataverse.

A company is a Business Central connection (one per company). Each table mapping belongs to one (`company`); the
configuration services (defaults, reset, export, import) work on one company's mappings at a time, where names are
unique. Business Central's integration solution keeps a row per company in Dataverse (`cdm_companies`, found by
the company's id in `bcbi_externalid`), which the company lookup of accounts and contacts points at (domain.md 3.10).
"""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from connectors.choices import ConnectionKind
from connectors.models import Connection
from connectors.odata import as_uuid, eq
from connectors.types import RemoteClient, WriteOperation
from mappings.models import COMPANY_ENTITY_SET, TableMapping


class CompanyRequired(ValueError):
    """Several companies have mappings and the caller did not say which one it means."""


def company_scope(company: Connection | None) -> tuple[QuerySet[TableMapping], Connection | None]:
    """The mappings a configuration service works on, and the company a mapping it creates belongs to.

    With a company: that company's mappings. Without: the mappings of the one company that has mappings (or of no
    company, before any was chosen), so a one-company installation never has to name it; with several, refused.
    """
    if company is not None:
        if company.kind != ConnectionKind.BUSINESS_CENTRAL:
            raise CompanyRequired(f"{company.name} is not a Business Central connection: a company is one.")
        return TableMapping.objects.filter(company=company), company
    company_ids = set(TableMapping.objects.values_list("company_id", flat=True).distinct())
    if len(company_ids) > 1:
        names = ", ".join(sorted(Connection.objects.filter(pk__in=company_ids).values_list("name", flat=True)))
        raise CompanyRequired(f"Mappings of several companies exist ({names}): choose the company.")
    only = company_ids.pop() if company_ids else None
    if only is None:
        return TableMapping.objects.filter(company__isnull=True), None
    return TableMapping.objects.filter(company_id=only), Connection.objects.get(pk=only)


def company_of(mapping: TableMapping) -> Connection:
    """The Business Central connection a mapping synchronizes: its company, else the only enabled one."""
    if mapping.company_id is not None:
        company = mapping.company
        if company is None or not company.enabled:
            raise Connection.DoesNotExist(f"The company of {mapping.name} ({company}) is disabled: enable it.")
        return company
    try:
        return Connection.objects.active(ConnectionKind.BUSINESS_CENTRAL)
    except Connection.MultipleObjectsReturned:
        raise Connection.MultipleObjectsReturned(
            f"{mapping.name} belongs to no company and several Business Central connections are enabled: "
            "choose its company on the mapping."
        ) from None


def dataverse_company_row(company: Connection, dataverse_client: RemoteClient, *, create: bool = True) -> UUID | None:
    """The company's row in Dataverse: found by its Business Central id (bcbi_externalid), created when missing
    (as Business Central does when a company connects), and remembered on the connection. With `create=False` (a
    preview, which writes nothing) a missing row stays missing: None."""
    if company.dataverse_company_id is not None:
        return company.dataverse_company_id
    external_id = str(company.bc_company_id or company.pk)
    found = None
    for page in dataverse_client.read_pages(
        COMPANY_ENTITY_SET, filter=eq("bcbi_externalid", external_id), select=["cdm_companyid"], page_size=1
    ):
        found = next((as_uuid(row.get("cdm_companyid")) for row in page.rows), None)
        break
    if found is None and not create:
        return None
    if found is None:
        [result] = dataverse_client.write_many(
            [
                WriteOperation(
                    kind="create",
                    entity_set=COMPANY_ENTITY_SET,
                    ref="company",
                    values={"cdm_name": company.name[:100], "bcbi_externalid": external_id},
                )
            ]
        )
        if not result.ok or result.record_id is None:
            raise result.error or RuntimeError(f"Dataverse did not create the company row of {company.name}.")
        found = result.record_id
    Connection.objects.filter(pk=company.pk).update(dataverse_company_id=found)
    company.dataverse_company_id = found
    return found


def company_named(name: str | None) -> Connection | None:
    """The company (Business Central connection) a command names, or None when it names none; CompanyRequired
    listing the known ones when no Business Central connection has that name."""
    if not name:
        return None
    company = Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL, name=name).first()
    if company is None:
        known = Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL).values_list("name", flat=True)
        raise CompanyRequired(f"No Business Central connection named {name!r}. Known: {', '.join(known) or 'none'}.")
    return company
