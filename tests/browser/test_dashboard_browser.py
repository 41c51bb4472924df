"""The admin's start page in a browser: with a day of runs and errors, every chart is drawn, without a console error."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connectors.clients import open_client
from jobs.choices import ErrorClass, JobStatus
from jobs.models import SyncError, SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping
from operations import dashboard_hours
from operations.traffic import redis_client

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]

SCREENSHOT = "/tmp/dashboard.png"


@pytest.fixture
def a_day_of_runs(live_connections):
    """Runs of every mapping every 20 minutes for a day, some failing with errors; one run under way; some requests."""
    now = timezone.now()
    classes = [ErrorClass.VALIDATION, ErrorClass.MISSING_DEPENDENCY, ErrorClass.THROTTLED]
    for position, mapping in enumerate(TableMapping.objects.order_by("name")):
        direction = Direction.FROM_DATAVERSE if mapping.name == "SALESPEOPLE" else Direction.TO_DATAVERSE
        for step in range(72):
            finished = now - timedelta(minutes=20 * step + position)
            failed = 2 if step % 9 == position else 0
            job = SyncJob.objects.create(
                table_mapping=mapping,
                direction=direction,
                status=JobStatus.PARTLY_FAILED if failed else JobStatus.SUCCEEDED,
                started_at=finished - timedelta(seconds=5 + 3 * position + step % 7),
                finished_at=finished,
                inserted=step % 4,
                modified=(step * (position + 1)) % 11,
                unchanged=30,
                failed=failed,
            )
            SyncError.objects.bulk_create(
                SyncError(
                    job=job,
                    table_mapping=mapping,
                    direction=direction,
                    error_class=classes[(step + i) % len(classes)],
                    message="The record failed.",
                )
                for i in range(failed)
            )
        SyncError.objects.filter(table_mapping=mapping).update(created_at=now - timedelta(hours=position * 3))
        mapping.bc_watermark = mapping.dataverse_watermark = now - timedelta(minutes=2 + position)
        mapping.save()
    customer = TableMapping.objects.get(name="CUSTOMER")
    SyncJob.objects.create(
        table_mapping=customer,
        direction=Direction.TO_DATAVERSE,
        status=JobStatus.RUNNING,
        started_at=now - timedelta(seconds=90),
        progress_done=1800,
        progress_total=5000,
    )
    bc, dataverse = live_connections
    for connection, entity_set in ((bc, "customers"), (dataverse, "accounts")):
        with open_client(connection) as client:
            client.count(entity_set)
    # The page keeps the figures of finished hours, which never change in real life; this history was written into
    # hours a page may already have kept (the login lands on it), so forget them.
    for key in redis_client().scan_iter(f"{dashboard_hours.KEY_PREFIX}:*"):
        redis_client().delete(key)


def test_the_dashboard_draws_every_chart_without_console_errors(page, a_day_of_runs, screenshot_dir):
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.set_viewport_size({"width": 1366, "height": 768})

    page.goto("/admin/")

    charts = page.evaluate(
        """() => Array.from(document.querySelectorAll("canvas[data-chart]")).map(canvas => {
            const chart = Chart.getChart(canvas);
            return {
                name: canvas.dataset.chart,
                drawn: Boolean(chart) && canvas.width > 0 && canvas.height > 0,
                points: chart ? chart.data.datasets.reduce((n, set) => n + set.data.filter(v => v).length, 0) : 0,
                datasets: chart ? chart.data.datasets.length : 0,
            };
        })"""
    )
    assert [chart["name"] for chart in charts] == ["records", "errors", "durations"]
    assert all(chart["drawn"] and chart["points"] > 0 for chart in charts), charts
    assert {c["name"]: c["datasets"] for c in charts} == {"records": 4, "errors": 3, "durations": 5}
    assert page.locator("tr[data-mapping]").count() == 5
    assert page.locator("#ops-running tr[data-job]").count() == 1
    assert page.locator("#ops-connections tr[data-connection]").count() == 2
    assert int(page.locator("#ops-connections .ops-window").first.get_attribute("data-requests")) >= 1
    assert problems == []
    page.screenshot(path=SCREENSHOT)
    page.shot("dashboard")

    page.click("text=30 days")
    page.wait_for_selector("#ops-charts strong:has-text('30 days')")
    assert page.evaluate("() => Chart.getChart(document.getElementById('chart-records')).data.labels.length") == 721
    assert problems == []
