"""The sync error page at 1,366 x 768 in Chromium: the "History" button (the admin's object tools) does not lie on
the explanation box, which it covered (the object tools float up by a negative margin into what came before them)."""

import pytest

from jobs.choices import ErrorClass
from jobs.models import SyncError, SyncJob
from mappings.models import TableMapping

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True, databases=["default", "sandbox"]),
]

WIDTH, HEIGHT = 1366, 768

BOXES = """() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top,
                                                                      bottom: r.bottom}; };
  return {
    tools: box(document.querySelector('.object-tools')),
    history: box(document.querySelector('.object-tools a.historylink')),
    explanation: box(document.querySelector('#explanation')),
    title: box(document.querySelector('#content h1')),
    window: document.documentElement.clientWidth,
    pageScroll: document.documentElement.scrollWidth,
  };
}"""


def overlap(a, b) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


@pytest.mark.parametrize("error_class", [ErrorClass.VALIDATION, ErrorClass.AMBIGUOUS_MATCH])
def test_the_history_button_does_not_cover_the_explanation(page, live_connections, error_class):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    job = SyncJob.objects.create(table_mapping=mapping, direction="to_dataverse", status="partly_failed")
    error = SyncError.objects.create(
        job=job,
        table_mapping=mapping,
        direction="to_dataverse",
        error_class=error_class,
        message="The field 'name' of account is longer than its 160 characters allow: " + "x" * 120,
        bc_name="Adatum Corporation",
    )
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto(f"/admin/jobs/syncerror/{error.pk}/change/")
    boxes = page.evaluate(BOXES)
    page.shot(f"sync-error-{error_class}")

    assert not overlap(boxes["tools"], boxes["explanation"]), boxes
    assert not overlap(boxes["history"], boxes["explanation"]), boxes
    # The button is on the screen, beside the title's line or above the box, and nothing scrolls sideways.
    assert boxes["history"]["right"] <= boxes["window"] and boxes["pageScroll"] <= boxes["window"], boxes
    assert boxes["history"]["bottom"] <= boxes["explanation"]["top"], boxes
    assert page.locator(".object-tools a.historylink").is_visible()
