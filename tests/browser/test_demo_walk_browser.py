"""A walk through the demo at 1,366 × 768, as a new administrator: preview, confirm, run, job page, errors,
schedules, the emulated data. On every page: nothing sticks out to the right (no sideways scroll of the page or of a
list), and the columns that carry the news are on screen.

Screenshots go to BROWSER_SCREENSHOTS (named h13pages-<step>.png) when it is set, e.g. BROWSER_SCREENSHOTS=/tmp.
"""

import re

import pytest
from playwright.sync_api import expect

from jobs.models import SyncJob
from syncadmin.management.demo import demo_customer_mapping_open

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]

WIDTH, HEIGHT = 1366, 768
# Every column of the mapping list, the sync's news (last sync, errors, skipped) included.
MAPPING_COLUMNS = [
    "name_display",
    "related_links",
    "tables_display",
    "filters_display",
    "only_coupled",
    "dependency_names",
    "last_sync_display",
    "errors_display",
    "skipped_display",
]

FITS = """() => {
  const width = document.documentElement.clientWidth;
  const boxes = [];
  for (const el of document.querySelectorAll('#content *')) {
    const style = getComputedStyle(el).overflowX;
    if (['auto', 'scroll', 'hidden'].includes(style) && el.clientWidth > 100 && el.scrollWidth > el.clientWidth + 1) {
      boxes.push(el.tagName.toLowerCase() + '.' + el.className + ' (' + el.scrollWidth + ' in ' + el.clientWidth + ')');
    }
  }
  return {page: document.documentElement.scrollWidth, width: width, boxes: boxes};
}"""

# Where a header is on screen: its box against the window and against the list's own scrolling box.
ON_SCREEN = """(selector) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  const box = el.getBoundingClientRect();
  const results = el.closest('.results') || document.documentElement;
  const frame = results.getBoundingClientRect();
  return box.width > 0 && box.left >= frame.left - 1 && box.right <= Math.min(frame.right, window.innerWidth) + 1;
}"""


def check(page, step: str, *, columns=()):
    """The page fits the window, the named columns are on screen; a screenshot either way."""
    page.wait_for_load_state("networkidle")
    page.shot(f"h13pages-{step}")
    fits = page.evaluate(FITS)
    assert fits["page"] <= fits["width"] + 1 and not fits["boxes"], f"{step}: {fits}"
    for column in columns:
        assert page.evaluate(ON_SCREEN, f"th.column-{column}"), f"{step}: column {column} is not on screen"


def run_action(page, mapping_name: str, action_label: str, rq_worker):
    """Select one mapping in the list, run an action; confirm it if the action asks first."""
    page.goto("/admin/mappings/tablemapping/")
    page.get_by_role("checkbox", name=f"Select this object for an action - {mapping_name}", exact=True).check()
    page.select_option("select[name=action]", label=action_label)
    page.click("button[name=index]")
    page.wait_for_load_state("networkidle")
    if page.locator("#changelist").count() == 0:  # a bulk write shows what it will do first, then asks
        check(page, f"confirm-{mapping_name.lower()}")
        if page.locator(".confirm-previews").count():  # a run is previewed for its page first: Confirm waits for it
            rq_worker()
            expect(page.locator("input.bulk-confirm-button")).to_be_enabled()
        page.get_by_role("button", name=re.compile("confirm|yes|run|synchroni|start", re.I)).first.click()
    rq_worker()


def test_the_demo_walk_fits_a_1366_screen_with_its_key_columns_visible(
    page, live_connections, rq_worker, screenshot_dir
):
    demo_customer_mapping_open()
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})

    page.goto("/admin/")
    check(page, "01-dashboard")
    page.goto("/admin/mappings/tablemapping/")
    check(page, "02-mappings", columns=MAPPING_COLUMNS)

    run_action(page, "CUSTOMER", "Preview: what would synchronizing modified records change", rq_worker)
    preview = SyncJob.objects.filter(dry_run=True).order_by("pk").last()
    assert preview is not None
    page.goto(f"/admin/jobs/syncjob/{preview.pk}/change/")
    check(page, "03-preview-job")

    run_action(page, "CUSTOMER", "Synchronize modified records", rq_worker)
    page.goto("/admin/jobs/syncjob/")
    check(
        page,
        "04-job-list",
        columns=[
            "status_badge",
            "inserted_count",
            "modified_count",
            "unchanged_count",
            "skipped_count",
            "failed_count",
            "coupled_count",
            "http_requests",
        ],
    )
    job = SyncJob.objects.filter(dry_run=False, table_mapping__name="CUSTOMER").order_by("pk").last()
    assert job is not None and job.inserted > 0
    page.goto(f"/admin/jobs/syncjob/{job.pk}/change/")
    check(page, "05-job-page")

    page.goto("/admin/jobs/syncerror/")
    check(page, "06-errors")
    page.goto("/admin/jobs/schedule/")
    check(page, "07-schedules", columns=["table_mapping", "status", "next_run_at", "last_message"])
    page.goto("/admin/coupling/coupling/")
    check(page, "08-couplings")
    customer = job.table_mapping
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    check(page, "09-mapping-form")
    # A value map opens as its own small form over the grid, which stays as wide as it was.
    page.locator("details.rows-widget > summary").nth(1).click()
    check(page, "10-value-map-open")
    page.locator(".inline-group").first.screenshot(path=str(screenshot_dir / "h13pages-10-field-grid.png"))
    page.locator("details.rows-widget > summary").nth(1).click()
    page.locator("details.rows-widget > summary").first.click()  # the transformation of the first field
    page.locator("details.rows-widget[open] select").first.select_option("substring")
    assert page.locator("details.rows-widget[open] input[data-option=start]").first.is_visible()
    assert not page.locator("details.rows-widget[open] input[data-option=find]").first.is_visible()
    page.locator(".inline-group").first.screenshot(path=str(screenshot_dir / "h13pages-10-transformation-open.png"))
    page.goto("/admin/sandbox/dvaccount/")
    check(page, "11-sandbox-accounts")
    assert page.locator("#result_list tbody tr").count() > 0
