"""Headless Chromium (the session's `browser`, tests/conftest.py) against the real admin on pytest-django's live server.

The live server also serves the sandbox, and the connections point at it over a real socket; RQ jobs run in this
process (a burst SimpleWorker) after each action, against the same databases.
"""

import os
from pathlib import Path

import pytest

from coupling.models import Coupling
from jobs.services import coupling_job_enqueue
from mappings.models import TableMapping


@pytest.fixture
def screenshot_dir(tmp_path):
    """Where the pages' screenshots go: BROWSER_SCREENSHOTS if set (to look at them), else the test's tmp dir."""
    folder = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser, live_server, admin_user, settings, screenshot_dir):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # plain http on localhost
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")

    def shot(name):
        page.screenshot(path=str(screenshot_dir / f"{name}.png"), full_page=True)

    page.shot = shot
    yield page
    context.close()


@pytest.fixture
def live_connections(live_server, make_sandbox_connections):
    return make_sandbox_connections(live_server.url)


@pytest.fixture
def lookups_coupled(live_connections, rq_worker):
    """Customers refer to currencies and salespeople: couple those first, by their match fields."""
    for name in ("CURRENCY", "SALESPEOPLE"):
        coupling_job_enqueue(mapping=TableMapping.objects.get(name=name))
    rq_worker()
    assert Coupling.objects.filter(table_mapping__name="CURRENCY").exists()
    return live_connections
