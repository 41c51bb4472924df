"""A list that caps its count says so ("10,000+"), and the pages past the cap stay reachable."""

import re
import uuid

import pytest
from django.contrib import admin
from django.urls import reverse

from adminkit.admin import CappedCountPaginator
from coupling.models import Coupling
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db


@pytest.fixture
def thirty_couplings_five_a_page(monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 10)
    monkeypatch.setattr(CappedCountPaginator, "PAGES_AHEAD", 1)
    monkeypatch.setattr(admin.site._registry[Coupling], "list_per_page", 5)
    mapping = TableMapping.objects.get(name="CUSTOMER")
    Coupling.objects.bulk_create(
        [
            Coupling(table_mapping=mapping, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4(), bc_name=f"C{i:02}")
            for i in range(30)
        ]
    )


def listed(admin_client, page=None):
    url = reverse("admin:coupling_coupling_changelist") + (f"?p={page}" if page else "")
    html = admin_client.get(url).content.decode()
    count = html.split('<span class="result-count">')[1].split("</span>")[0]
    pages = [int(n) for n in re.findall(r'<a href="\?p=(\d+)"', html)]
    return count, pages, html


def test_the_capped_count_says_plus_and_every_page_stays_reachable(admin_client, thirty_couplings_five_a_page):
    count, pages, html = listed(admin_client)
    assert count == "10+" and "narrow the filters" in html
    assert max(pages) == 2

    # Each last page link leads further, until the end of the list, where the count is exact again.
    page, seen = 1, set()
    while True:
        count, pages, html = listed(admin_client, page)
        # A whole word: "C45" inside a random CSRF token is not a coupling's name.
        seen |= set(re.findall(r"(?<![A-Za-z0-9])C\d\d(?![A-Za-z0-9])", html))
        if not pages or max(pages) <= page:
            break
        page = max(pages)
    assert count == "30" and page == 6
    assert len(seen) == 30  # every coupling was shown on some page
