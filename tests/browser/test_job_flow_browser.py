"""Confirm (with the run previewed for the page), run, job page: the walk an administrator takes, at 1,366 x 768,
comparing what each page says with what the run did."""

import re

import pytest
from playwright.sync_api import expect

from coupling.models import Coupling
from jobs.models import SyncJob
from mappings.models import TableMapping

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]


def choose_action(page, mapping, action):
    page.goto("/admin/mappings/tablemapping/")
    page.check(f"input.action-select[value='{mapping.pk}']")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def test_preview_confirm_run_and_the_job_page_agree(
    browser, live_server, admin_user, settings, live_connections, rq_worker, screenshot_dir
):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # plain http on localhost
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 768})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()

    # One click no longer runs: it asks, previewing the run's own jobs for this page; Confirm waits for them.
    choose_action(page, customer, "synchronize_modified_records")
    expect(page.locator("p.bulk-question")).to_contain_text("4 job(s), in this order")
    confirm = page.locator("input.bulk-confirm-button")
    expect(confirm).to_be_disabled()
    expect(page.locator("p.previews-running")).to_contain_text("0 of 4 job(s) finished")
    page.screenshot(path=str(screenshot_dir / "flow-1-confirm-previewing.png"), full_page=True)
    assert not SyncJob.objects.filter(dry_run=False).exists()
    rq_worker()  # the worker runs the previews; the page polls and fills in their counts
    preview = SyncJob.objects.get(dry_run=True, table_mapping=customer, direction="to_dataverse")
    would_insert = preview.preview["counts"]["insert"]
    expect(confirm).to_be_enabled()
    customer_row = page.locator("table.bulk-rows tbody tr").nth(2)
    expect(customer_row.locator("td").nth(2)).to_have_text(str(would_insert))
    expect(customer_row.locator("td").last).to_have_text(f"job #{preview.pk}: succeeded")
    page.screenshot(path=str(screenshot_dir / "flow-2-confirm-previewed.png"), full_page=True)
    confirm.click()
    expect(page.locator("ul.messagelist")).to_contain_text("Synchronization queued")
    rq_worker()

    run = SyncJob.objects.get(dry_run=False, table_mapping=customer, direction="to_dataverse")
    assert run.inserted == would_insert and run.failed == 0
    assert Coupling.objects.filter(table_mapping=customer, last_job_to_dataverse=run.pk).count() == run.inserted
    page.goto(f"/admin/jobs/syncjob/{run.pk}/change/")
    box = page.locator(".syncjob-progress")
    expect(box).to_contain_text("Succeeded")
    expect(box.locator("td.syncjob-finished")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))
    expect(box.locator("td.syncjob-requests")).to_contain_text(str(run.http_requests))
    expect(box.locator("td.syncjob-duration")).to_have_text(re.compile(r"^(\d+ seconds?|less than a second)$"))
    expect(page.get_by_text("The counts do not add up")).to_have_count(0)
    assert page.content().count("Finished at") == 1
    page.screenshot(path=str(screenshot_dir / "flow-3-job-page.png"), full_page=True)

    # The job list: the preview's row says what it would do, at 1,366 px.
    page.goto("/admin/jobs/syncjob/")
    would = page.locator(f"tr:has(a[href$='/{preview.pk}/change/']) td.field-inserted_count")
    expect(would).to_have_text(f"({would_insert})")
    page.screenshot(path=str(screenshot_dir / "flow-4-job-list.png"), full_page=True)
    context.close()
