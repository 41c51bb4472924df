"""Every list and form of the admin (the product and the sandbox) fits a 1,366 × 768 screen: no page scrolls sideways,
no column is cut off.

The pages are visited as a signed-in superuser after a real synchronization, so the lists have rows and the forms
have objects. A page wider than the window hides what is past its right edge (the sync job list lost its count
columns that way); the test names the elements that stick out, so a failure says where to look.
"""

import pytest
from django.contrib import admin
from django.urls import reverse

from jobs.services import sync_enqueue
from mappings.models import TableMapping

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]

WIDTH, HEIGHT = 1366, 768

# Elements past the right edge of the window, as "tag#id.class (right edge px)", for the failure message.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('#content *')) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > width + 1 && el.offsetParent !== null) {
      const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
        (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
      out.push(name + ' (' + Math.round(box.right) + ')');
    }
  }
  // A box that scrolls sideways by itself (Django's result list does) hides its right part just the same.
  const boxes = [];
  for (const el of document.querySelectorAll('#content *')) {
    const style = getComputedStyle(el).overflowX;
    if (['auto', 'scroll', 'hidden'].includes(style) && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 100) {
      boxes.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + el.className + ' (' +
        el.scrollWidth + ' in ' + el.clientWidth + ')');
    }
  }
  return {scroll: document.documentElement.scrollWidth, width: width, out: out.slice(0, 8), boxes: boxes};
}"""


def overflow(page) -> dict:
    return page.evaluate(OVERFLOW)


def product_pages():
    """(label, url) of each registered model's list and, when it has one, its first object's form."""
    pages = []
    for model in admin.site._registry:
        opts = model._meta
        if opts.app_label == "auth":
            continue
        pages.append((f"{opts.label} list", reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")))
        first = model.objects.order_by("pk").first()
        if first is not None:
            pages.append(
                (f"{opts.label} form", reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk]))
            )
    return pages


def test_every_list_and_form_fits_a_1366_pixel_screen(page, lookups_coupled, rq_worker):
    sync_enqueue(mapping=TableMapping.objects.get(name="CUSTOMER"))
    rq_worker()
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    too_wide = {}
    for label, url in product_pages():
        page.goto(url)
        found = overflow(page)
        if found["scroll"] > found["width"] + 1 or found["boxes"]:
            too_wide[label] = found
            page.shot("h13pages-wide-" + label.replace(" ", "-").replace(".", "-"))
    assert not too_wide, "\n".join(f"{label}: {found}" for label, found in too_wide.items())
