"""/metrics answers only with the bearer token, with numbers computed from the database; /healthz says 200 or 503."""

from datetime import timedelta

import django_rq
import pytest
import redis
import rq
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs.choices import JobStatus
from jobs.models import SyncError, SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping
from operations import health

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-the-tests-0123456789"


def samples(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_without_a_configured_token_metrics_do_not_exist(client, settings):
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-of-some-length", f"Basic {TOKEN}", TOKEN])
def test_metrics_refuse_a_missing_or_wrong_token(client, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {"Authorization": authorization} if authorization else {}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"syncadmin_" not in response.content


def test_metrics_give_the_numbers_of_the_job_log(client, settings):
    settings.METRICS_TOKEN = TOKEN
    customer = TableMapping.objects.get(name="CUSTOMER")
    now = timezone.now()
    common = {"table_mapping": customer, "direction": Direction.TO_DATAVERSE}
    ok = SyncJob.objects.create(
        **common,
        status=JobStatus.SUCCEEDED,
        finished_at=now - timedelta(minutes=10),
        inserted=5,
        modified=2,
        http_requests_by_kind={"token": 1, "read": 3, "write": 2, "retry": 1},
    )
    SyncJob.objects.create(**common, status=JobStatus.SUCCEEDED, finished_at=now - timedelta(hours=2), inserted=1)
    failed = SyncJob.objects.create(
        **common,
        status=JobStatus.FAILED,
        finished_at=now - timedelta(minutes=1),
        failed=2,
        http_requests_by_kind={"read": 4},
    )
    SyncJob.objects.create(**common, status=JobStatus.SUCCEEDED, dry_run=True, inserted=99)  # a preview: not counted
    for error_class in ("validation", "validation", "conflict"):
        SyncError.objects.create(
            job=failed, table_mapping=customer, direction=failed.direction, error_class=error_class, message="x"
        )
    TableMapping.objects.filter(pk=customer.pk).update(
        bc_watermark=now - timedelta(minutes=30), dataverse_watermark=now - timedelta(minutes=3)
    )
    django_rq.get_queue("low", commit_mode="auto").enqueue("jobs.tasks.cleanup_old_jobs")

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    values = samples(response.content.decode())
    to_dv = (("company", ""), ("direction", "to_dataverse"), ("mapping", "CUSTOMER"))

    def labelled(*pairs):
        return tuple(sorted((*to_dv, *pairs)))

    assert values[("syncadmin_sync_runs", labelled(("outcome", "succeeded")))] == 2
    assert values[("syncadmin_sync_runs", labelled(("outcome", "failed")))] == 1
    assert values[("syncadmin_sync_records", labelled(("outcome", "inserted")))] == 6
    assert values[("syncadmin_sync_records", labelled(("outcome", "failed")))] == 2
    assert values[("syncadmin_open_errors", (("error_class", "validation"),))] == 2
    assert values[("syncadmin_open_errors", (("error_class", "conflict"),))] == 1
    assert values[("syncadmin_http_requests", (("service", "all"), ("status", "read")))] == 7
    assert values[("syncadmin_http_requests", (("service", "all"), ("status", "retry")))] == 1
    assert values[("syncadmin_queue_jobs", (("queue", "low"),))] == 1
    assert values[("syncadmin_queue_jobs", (("queue", "high"),))] == 0
    assert values[("syncadmin_redis_up", ())] == 1
    # CUSTOMER is bidirectional: it reads both sides, each behind its own watermark.
    bc_lag = values[
        ("syncadmin_mapping_lag_seconds", (("company", ""), ("mapping", "CUSTOMER"), ("side", "business_central")))
    ]
    assert 30 * 60 <= bc_lag < 31 * 60
    dv_lag = values[
        ("syncadmin_mapping_lag_seconds", (("company", ""), ("mapping", "CUSTOMER"), ("side", "dataverse")))
    ]
    assert 3 * 60 <= dv_lag < 4 * 60
    since = values[("syncadmin_seconds_since_last_success", (("company", ""), ("mapping", "CUSTOMER")))]
    assert (now - ok.finished_at).total_seconds() <= since < 11 * 60
    assert not any(
        name == "syncadmin_seconds_since_last_success" and ("mapping", "VENDOR") in labels for name, labels in values
    )


def test_metrics_take_a_fixed_number_of_queries_whatever_the_number_of_jobs(
    client, settings, django_assert_max_num_queries
):
    settings.METRICS_TOKEN = TOKEN
    for mapping in TableMapping.objects.all():
        for status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            SyncJob.objects.create(
                table_mapping=mapping, direction=Direction.TO_DATAVERSE, status=status, finished_at=timezone.now()
            )

    with django_assert_max_num_queries(10):
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_healthz_is_503_without_a_worker_and_200_with_one(client, redis_url):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "failing",
        "checks": {"database": "ok", "redis": "ok", "worker": "failing"},
    }

    worker = rq.Worker(["default"], connection=django_rq.get_connection("default"))
    worker.register_birth()
    try:
        response = client.get("/healthz")
    finally:
        worker.register_death()

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "worker": "ok"}}


def test_healthz_is_503_when_redis_does_not_answer(client, monkeypatch, tmp_path):
    nowhere = redis.Redis(unix_socket_path=str(tmp_path / "no-redis.sock"), socket_connect_timeout=1)
    monkeypatch.setattr(health.django_rq, "get_connection", lambda name: nowhere)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "failing", "worker": "failing"}


def test_healthz_and_metrics_need_no_login_and_set_no_cookie(client, settings):
    settings.METRICS_TOKEN = TOKEN
    for response in (client.get("/healthz"), client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})):
        assert response.status_code in (200, 503)
        assert not response.cookies


def test_metrics_give_each_connections_requests_as_the_connectors_counted_them(client, settings, redis_connection):
    from connectors.choices import ConnectionKind
    from connectors.models import Connection
    from operations import traffic

    settings.METRICS_TOKEN = TOKEN
    bc = Connection.objects.create(
        kind=ConnectionKind.BUSINESS_CENTRAL, name="BC", environment_url="https://bc.example", tenant="t", client_id="c"
    )
    for status, retried in ((200, False), (429, False), (200, True)):
        traffic.record(bc.pk, "business_central", "read", status, retried, False)
    traffic.record(bc.pk, "business_central", "token", None, False, True)

    values = samples(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).content.decode())

    def hour(outcome):
        labels = (("connection", "BC"), ("outcome", outcome), ("service", "business_central"))
        return values[("syncadmin_connection_requests_last_hour", labels)]

    assert (hour("all"), hour("throttled"), hour("retried"), hour("token_failed")) == (3, 1, 1, 1)
    window = (("connection", "BC"), ("measure", "requests"), ("service", "business_central"))
    limit = (("connection", "BC"), ("measure", "limit"), ("service", "business_central"))
    assert values[("syncadmin_connection_requests_window", window)] == 3
    assert values[("syncadmin_connection_requests_window", limit)] == 6000
