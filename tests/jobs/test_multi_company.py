"""Several Business Central companies synchronizing with one Dataverse environment (issue 17, first half).

End to end over a real socket (Django's live server serves the sandbox) with an RQ worker: two companies of one
environment, each with its own table mappings, share one Dataverse. As Business Central does (domain.md 3.10,
https://learn.microsoft.com/en-us/dynamics365/business-central/admin-synchronizing-business-central-and-sales#synchronize-data-from-multiple-companiesenvironments):
rows carry their company (bcbi_companyid), each company reads "its company or none", a multi-company mapping reads
every company's rows and couples a shared customer by match instead of creating it twice, and uncoupling clears the
company on the Dataverse row.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.db import transaction

# serialized_rollback: leave the database as later serialized-rollback tests expect it (no re-created content types).
pytestmark = pytest.mark.django_db(databases=["default", "sandbox"], transaction=True, serialized_rollback=True)

SECOND = "Sandbox Business Central Canada"


@pytest.fixture
def two_companies(live_sandbox_connections):
    """Company A (CRONUS USA, the existing connection and mappings) and company B (CRONUS Canada, a second connection
    of the same environment with its own default mappings), one Dataverse. B's first 3 customers are A's first 3."""
    from connectors.models import Connection
    from mappings.defaults import create_default_mappings
    from mappings.models import TableMapping
    from sandbox import services as sandbox

    bc_a, dataverse = live_sandbox_connections
    sandbox.seed_second_company(customers=6, shared=3)
    bc_b = Connection.objects.get(pk=bc_a.pk)
    bc_b.pk = None
    bc_b.name = SECOND
    bc_b.bc_company_id = sandbox.second_company_id()
    bc_b.save()
    # The mappings that existed before a second company belong to the first (what the migration does).
    TableMapping.objects.filter(company__isnull=True).update(company=bc_a)
    create_default_mappings(company=bc_b)
    for company in (bc_a, bc_b):
        customer = TableMapping.objects.get(name="CUSTOMER", company=company)
        customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
        customer.field_mappings.filter(bc_field="displayName", dataverse_field="name").update(use_for_matching=True)
        customer.sync_only_coupled = False
        customer.table_filter = ""  # blocked customers too: the seed blocks a few at random
        customer.direction = "to_dataverse"
        customer.save()
    return bc_a, bc_b, dataverse


def _customer(company):
    from mappings.models import TableMapping

    return TableMapping.objects.get(name="CUSTOMER", company=company)


def _sync(rq_worker, *mappings):
    from jobs.models import SyncJob
    from jobs.services import sync_enqueue

    jobs = []
    with transaction.atomic():
        for mapping in mappings:
            jobs += sync_enqueue(mapping=mapping)
    rq_worker()
    return list(SyncJob.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk"))


def _accounts():
    from sandbox import rows, schema
    from sandbox.models import row_model

    return list(row_model(schema.table("dataverse", "accounts")).objects.using(rows.DB).all())


def _bc_customers(company_id):
    from sandbox import rows, schema
    from sandbox.models import row_model

    return list(row_model(schema.table("bc", "customers")).objects.using(rows.DB).filter(company=str(company_id)))


def _company_row(connection):
    connection.refresh_from_db()
    return str(connection.dataverse_company_id)


def test_two_companies_one_dataverse_no_duplicate_of_a_shared_customer_each_row_stamped(two_companies, rq_worker):
    from coupling.models import Coupling
    from sandbox import rows, schema
    from sandbox.models import row_model

    bc_a, bc_b, _ = two_companies
    customer_b = _customer(bc_b)
    customer_b.multi_company = True  # customers the two companies share: read every company's accounts, couple by match
    customer_b.save()
    before = len(_accounts())  # 8 seeded accounts, 3 of them A's first customers

    [job_a] = _sync(rq_worker, _customer(bc_a))
    assert job_a.status == "succeeded", job_a.message
    [job_b] = _sync(rq_worker, customer_b)
    assert job_b.status == "succeeded", job_b.message

    # Each company got its row in Dataverse (cdm_companies), found by its Business Central id.
    companies = row_model(schema.table("dataverse", "cdm_companies")).objects.using(rows.DB)
    assert {c.bcbi_externalid: c.cdm_name for c in companies} == {
        str(bc_a.bc_company_id): bc_a.name,
        str(bc_b.bc_company_id): SECOND,
    }
    row_a, row_b = _company_row(bc_a), _company_row(bc_b)
    accounts = _accounts()
    by_name: dict[str, list] = {}
    for account in accounts:
        by_name.setdefault(account.name, []).append(account)
    customers_a, customers_b = _bc_customers(bc_a.bc_company_id), _bc_customers(bc_b.bc_company_id)
    shared = {c.displayName for c in customers_a} & {c.displayName for c in customers_b}
    assert len(shared) == 3
    # No duplicate: one account per customer name, a shared customer included; B created only its 3 own customers.
    assert all(len(by_name[c.displayName]) == 1 for c in customers_a + customers_b)
    assert len(accounts) == before + (len(customers_a) - 3) + (len(customers_b) - 3)
    assert job_b.coupled == 3 and job_b.inserted == 3
    # Each company's rows stamped: every account A wrote (matched or created) is A's; B stamps what it creates, and a
    # shared account keeps the company that wrote it first (B's mapping is multi-company).
    assert {by_name[c.displayName][0].bcbi_companyid for c in customers_a} == {row_a}
    assert {by_name[c.displayName][0].bcbi_companyid for c in customers_b if c.displayName not in shared} == {row_b}
    # Both companies' couplings point at the one shared account.
    shared_account = by_name[sorted(shared)[0]][0].rid
    assert Coupling.objects.filter(dataverse_id=shared_account).values("table_mapping__company").count() == 2


def test_a_company_reads_its_company_or_none_unless_multi_company(two_companies, rq_worker):
    bc_a, bc_b, _ = two_companies
    [job_a] = _sync(rq_worker, _customer(bc_a))
    assert job_a.status == "succeeded", job_a.message
    a_names = {c.displayName for c in _bc_customers(bc_a.bc_company_id)}
    unstamped = {a.name for a in _accounts() if a.bcbi_companyid is None and a.customertypecode == 3}
    assert unstamped, "the seed has accounts of no company"
    b_before = {c.displayName for c in _bc_customers(bc_b.bc_company_id)}

    # B's customers, from Dataverse: its company's accounts or those of none, never company A's.
    customer_b = _customer(bc_b)
    customer_b.direction = "from_dataverse"
    customer_b.save()
    [job_b] = _sync(rq_worker, customer_b)
    assert job_b.status == "succeeded", job_b.message
    b_after = {c.displayName for c in _bc_customers(bc_b.bc_company_id)}
    assert unstamped <= b_after
    assert not (b_after - b_before) & (a_names - b_before), "B read accounts stamped with company A"

    # Multi-company: the company filter is gone, A's accounts come in too (matched by name where B has them).
    customer_b.refresh_from_db()
    customer_b.multi_company = True
    customer_b.dataverse_watermark = None
    customer_b.save()
    [job_b2] = _sync(rq_worker, customer_b)
    assert job_b2.status == "succeeded", job_b2.message
    assert a_names <= {c.displayName for c in _bc_customers(bc_b.bc_company_id)}


def test_uncoupling_clears_the_company_on_the_dataverse_row(two_companies, rq_worker):
    from coupling.models import Coupling
    from jobs.services import uncoupling_job_enqueue

    bc_a, _, _ = two_companies
    customer_a = _customer(bc_a)
    _sync(rq_worker, customer_a)
    row_a = _company_row(bc_a)
    couplings = list(Coupling.objects.filter(table_mapping=customer_a).order_by("pk")[:2])
    ids = {str(c.dataverse_id) for c in couplings}
    assert {a.bcbi_companyid for a in _accounts() if a.rid in ids} == {row_a}

    with transaction.atomic():
        job = uncoupling_job_enqueue(mapping=customer_a, coupling_ids=[c.pk for c in couplings])
    rq_worker()
    job.refresh_from_db()

    assert job.status == "succeeded" and job.uncoupled == 2, job.message
    assert "Cleared the company on 2 Dataverse row(s)" in job.message
    accounts = {a.rid: a for a in _accounts()}
    assert all(accounts[i].bcbi_companyid is None for i in ids)  # the rows stay, belonging to no company
    assert not Coupling.objects.filter(pk__in=[c.pk for c in couplings]).exists()
    others = Coupling.objects.filter(table_mapping=customer_a).values_list("dataverse_id", flat=True)
    assert {accounts[str(i)].bcbi_companyid for i in others} == {row_a}  # the other rows keep their company


def test_uncoupling_a_shared_row_hands_it_to_the_company_still_coupling_it(two_companies, rq_worker):
    """A shared customer's account is stamped with company A, which created it; B couples it too (multi-company).
    When A uncouples it the row passes to B: left with no company, every company's mapping would read it again."""
    from coupling.models import Coupling
    from jobs.services import uncoupling_job_enqueue

    bc_a, bc_b, _ = two_companies
    customer_a, customer_b = _customer(bc_a), _customer(bc_b)
    customer_b.multi_company = True
    customer_b.save()
    _sync(rq_worker, customer_a)
    _sync(rq_worker, customer_b)
    row_a, row_b = _company_row(bc_a), _company_row(bc_b)
    shared = set(Coupling.objects.filter(table_mapping=customer_a).values_list("dataverse_id", flat=True)) & set(
        Coupling.objects.filter(table_mapping=customer_b).values_list("dataverse_id", flat=True)
    )
    assert len(shared) == 3
    only_a = Coupling.objects.filter(table_mapping=customer_a).exclude(dataverse_id__in=shared).first()
    leaving = list(Coupling.objects.filter(table_mapping=customer_a, dataverse_id__in=shared)) + [only_a]
    accounts = {a.rid: a for a in _accounts()}
    assert {accounts[str(c.dataverse_id)].bcbi_companyid for c in leaving} == {row_a}

    with transaction.atomic():
        job = uncoupling_job_enqueue(mapping=customer_a, coupling_ids=[c.pk for c in leaving])
    rq_worker()
    job.refresh_from_db()

    assert job.status == "succeeded" and job.uncoupled == 4, job.message
    assert "Cleared the company on 1 Dataverse row(s)" in job.message
    assert "3 Dataverse row(s) another company still couples now belong to that company" in job.message
    accounts = {a.rid: a for a in _accounts()}
    assert {accounts[str(i)].bcbi_companyid for i in shared} == {row_b}
    assert accounts[str(only_a.dataverse_id)].bcbi_companyid is None
    assert Coupling.objects.filter(table_mapping=customer_b, dataverse_id__in=shared).count() == 3


def test_one_companys_failing_or_locked_run_does_not_hold_up_another(two_companies, rq_worker):
    from coupling.models import Coupling
    from jobs.models import SyncJob
    from jobs.services import mapping_lock, sync_enqueue_all

    bc_a, bc_b, _ = two_companies
    customer_a, customer_b = _customer(bc_a), _customer(bc_b)
    # Company A's connection is broken (its secret was rotated in Entra and not here).
    bc_a.set_client_secret("not-the-secret")
    bc_a.save()
    with transaction.atomic():
        jobs = sync_enqueue_all(names=["CUSTOMER"])
    assert {j.table_mapping_id for j in jobs} == {customer_a.pk, customer_b.pk}
    rq_ids = dict(SyncJob.objects.filter(pk__in=[j.pk for j in jobs]).values_list("table_mapping_id", "rq_job_id"))
    assert rq_ids[customer_a.pk] != rq_ids[customer_b.pk]  # one RQ job per company
    rq_worker()
    status = dict(SyncJob.objects.filter(pk__in=[j.pk for j in jobs]).values_list("table_mapping_id", "status"))
    assert status == {customer_a.pk: "failed", customer_b.pk: "succeeded"}
    assert Coupling.objects.filter(table_mapping=customer_b).count() == 6  # B's 6 customers, 3 matched, 3 created

    # Company A's mapping is locked by a run in progress: B's run is not held up.
    bc_a.set_client_secret(bc_b.client_secret)
    bc_a.save()
    with mapping_lock(customer_a) as lock:
        assert lock is not None
        jobs = _sync(rq_worker, customer_a, customer_b)
    by_mapping = {j.table_mapping_id: j for j in jobs}
    assert by_mapping[customer_a.pk].status == "cancelled"
    assert "in progress" in by_mapping[customer_a.pk].message
    assert by_mapping[customer_b.pk].status == "succeeded"


def test_the_company_filter_is_one_term_of_the_mappings_dataverse_filter(two_companies):
    """What a company's mapping asks Dataverse for, spelled out (the engine adds nothing else)."""
    bc_a, _, _ = two_companies
    customer = _customer(bc_a)
    assert customer.dataverse_filter == "(statecode eq 0 and customertypecode eq 3) and (_bcbi_companyid_value eq null)"
    customer.company.dataverse_company_id = uuid.UUID("5b0e3ac2-1111-4c3e-9a77-2f0b5c1d9e01")
    assert customer.dataverse_filter == (
        "(statecode eq 0 and customertypecode eq 3) and (_bcbi_companyid_value eq 5b0e3ac2-1111-4c3e-9a77-2f0b5c1d9e01 "
        "or _bcbi_companyid_value eq null)"
    )
    customer.multi_company = True
    assert customer.dataverse_filter == "statecode eq 0 and customertypecode eq 3"


def test_defaults_per_company_from_the_command(two_companies):
    from mappings.models import TableMapping

    bc_a, bc_b, _ = two_companies
    TableMapping.objects.filter(company=bc_b, name="CUSTOMER").update(table_filter="")
    call_command("default_mappings", "--company", SECOND, "--reset", "customer")
    assert TableMapping.objects.get(company=bc_b, name="CUSTOMER").table_filter == "blocked eq ' '"
    assert TableMapping.objects.filter(name="CUSTOMER").count() == 2
    assert set(TableMapping.objects.filter(company=bc_b).values_list("name", flat=True)) == set(
        TableMapping.objects.filter(company=bc_a).values_list("name", flat=True)
    )


def test_a_preview_of_a_new_companys_mapping_writes_nothing_not_even_its_company_row(two_companies, rq_worker):
    """A preview says "nothing is written": before the company's first run its row in Dataverse (cdm_companies) does
    not exist, and the preview plans without it instead of creating it."""
    from jobs.models import SyncJob
    from jobs.services import sync_enqueue
    from sandbox import rows, schema
    from sandbox.models import row_model

    _, bc_b, _ = two_companies
    companies = row_model(schema.table("dataverse", "cdm_companies")).objects.using(rows.DB)
    before = companies.count()
    accounts_before = len(_accounts())
    with transaction.atomic():
        jobs = sync_enqueue(mapping=_customer(bc_b), dry_run=True)
    rq_worker()

    [preview] = SyncJob.objects.filter(pk__in=[j.pk for j in jobs])
    assert preview.status == "succeeded", preview.message
    assert preview.preview["counts"]["insert"] > 0  # it did plan B's customers
    assert companies.count() == before and len(_accounts()) == accounts_before
    bc_b.refresh_from_db()
    assert bc_b.dataverse_company_id is None

    [run] = _sync(rq_worker, _customer(bc_b))  # the run creates the row, as before
    assert run.status == "succeeded", run.message
    assert companies.count() == before + 1


def test_records_a_company_created_from_dataverse_rows_are_no_drift_for_their_missing_company_stamp(
    two_companies, rq_worker
):
    """A Business Central customer created from a Dataverse account leaves the account unstamped (the company did not
    write it): the reconciliation right after must not call those pairs drifted (the walk-through saw 179)."""
    from jobs.models import Reconciliation
    from jobs.reconciliation.services import reconciliation_enqueue

    bc_a, _, _ = two_companies
    customer = _customer(bc_a)
    customer.direction = "bidirectional"
    customer.save()
    to_dataverse, from_dataverse = _sync(rq_worker, customer)
    assert to_dataverse.status == from_dataverse.status == "succeeded", from_dataverse.message
    assert from_dataverse.inserted > 0

    with transaction.atomic():
        reconciliation = reconciliation_enqueue(mapping=customer)
    rq_worker()

    reconciliation = Reconciliation.objects.get(pk=reconciliation.pk)
    assert reconciliation.counts["drift_checked"] > 0, reconciliation.counts
    assert reconciliation.findings["drift"] == []
