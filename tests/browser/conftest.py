"""Headless Chromium against the real admin on pytest-django's live server.

The live server also serves the sandbox, and the connections point at it over a real socket; RQ jobs run in this
process (a burst SimpleWorker) after each action, against the same databases.
"""

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from coupling.models import Coupling
from jobs.services import coupling_job_enqueue
from mappings.defaults import create_default_mappings
from mappings.models import TableMapping

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Module scope, not session: Playwright's sync API allows one running instance per thread, and other test folders
# (tests/mappings) start their own; ours must be stopped before theirs starts.
@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


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
    # A transactional test empties the tables when it ends, the default mappings of the data migration too.
    if not TableMapping.objects.exists():
        create_default_mappings()
    return make_sandbox_connections(live_server.url)


@pytest.fixture
def lookups_coupled(live_connections, rq_worker):
    """Customers refer to currencies and salespeople: couple those first, by their match fields."""
    for name in ("CURRENCY", "SALESPEOPLE"):
        coupling_job_enqueue(mapping=TableMapping.objects.get(name=name))
    rq_worker()
    assert Coupling.objects.filter(table_mapping__name="CURRENCY").exists()
    return live_connections


@pytest.fixture(scope="module", autouse=True)
def database_restored_afterwards(django_db_blocker):
    """Leave the database as the migrations left it once this folder's transactional tests have emptied it.

    Their flush re-creates content types under new ids and drops the default mappings; later tests may rely on
    either (and a serialized-rollback test restores the original rows, which would collide). When the session
    keeps a snapshot, reload exactly it; otherwise put the default mappings back.
    """
    yield
    from django.core.management import call_command
    from django.db import connections

    with django_db_blocker.unblock():
        connection = connections["default"]
        if getattr(connection, "_test_serialized_contents", None):
            call_command("flush", database="default", interactive=False, inhibit_post_migrate=True, verbosity=0)
            connection.creation.deserialize_db_from_string(connection._test_serialized_contents)
        elif not TableMapping.objects.exists():
            create_default_mappings()
