"""Reconciliation clicked through in the real admin: start it from the mapping list, read the counts on its result
page, and heal an orphan with the page's button; the sandbox is served by the live server over a real socket."""

import pytest
from playwright.sync_api import expect

from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.models import Reconciliation
from jobs.services import sync_enqueue
from mappings.models import TableMapping
from sandbox import testing as sandbox_testing

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]


def test_reconcile_from_the_mapping_list_then_uncouple_the_orphan_from_the_result_page(
    page, live_connections, rq_worker
):
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    TableMapping.objects.filter(pk=customer.pk).update(sync_only_coupled=False)
    sync_enqueue(mapping=TableMapping.objects.get(pk=customer.pk))
    rq_worker()
    orphan = Coupling.objects.filter(table_mapping=customer, pending=False).order_by("pk").first()
    sandbox_testing.delete_as_another_user("dataverse", "accounts", orphan.dataverse_id)

    page.goto("/admin/mappings/tablemapping/")
    page.get_by_role("checkbox", name="Select this object for an action - CUSTOMER").check()
    page.select_option("select[name=action]", "reconcile")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_contain_text("CUSTOMER: reconciliation queued")
    rq_worker()
    reconciliation = Reconciliation.objects.get(table_mapping=customer)
    assert reconciliation.status == JobStatus.SUCCEEDED, reconciliation.message

    page.click("ul.messagelist a")
    result = page.locator(".reconciliation-counts")
    expect(page.get_by_role("row", name="… the Dataverse row is gone")).to_contain_text("1")
    expect(page.get_by_role("row", name="Coupled pairs", exact=False).first).to_contain_text(
        str(reconciliation.counts["coupled"])
    )
    expect(result).to_be_visible()
    page.shot("reconciliation-result")

    page.click("button[value=uncouple_orphans]")
    # It asks first, with the count, and nothing is queued until confirmed.
    expect(page.locator("form.bulk-confirm")).to_contain_text("1")
    assert Coupling.objects.filter(pk=orphan.pk).exists()
    page.shot("reconciliation-confirm-uncouple")
    page.click("form.bulk-confirm input[type=submit]")
    expect(page.locator("ul.messagelist")).to_contain_text("uncoupling the orphans")
    rq_worker()
    assert not Coupling.objects.filter(pk=orphan.pk).exists()
