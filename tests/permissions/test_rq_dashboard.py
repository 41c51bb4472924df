"""The RQ dashboard (/admin/rq/) needs django-rq's own permission, `django_rq.admin` (superusers have it): without it
a staff user, whatever else they may do, cannot see the queues, empty one, or delete or requeue a job; the admin
index links to it only for those who have it. django-rq's own admin entry, which let any staff user in, is gone."""

from __future__ import annotations

import pytest
import rq
from django.contrib.auth.models import Permission
from django.urls import reverse
from django_rq.queues import get_queues_list

from tests.permissions.conftest import csrf_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(redis_connection):
    """A job waiting in the default queue (as a queued sync job's RQ job would), never run here."""
    queue = rq.Queue("default", connection=redis_connection)
    return queue, queue.enqueue("os.getcwd")


@pytest.fixture
def operator(user_of):
    """A staff user with only the dashboard permission."""
    user = user_of("staff")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="django_rq", codename="admin"))
    return type(user).objects.get(pk=user.pk)


def _queue_index(name: str) -> int:
    return [queue["name"] for queue in get_queues_list()].index(name)


def _empty_and_delete(client, job) -> None:
    index = _queue_index("default")
    token = {"csrfmiddlewaretoken": client.csrf_token}
    client.post(reverse("django_rq:clear", args=[index]), token)
    client.post(reverse("django_rq:delete_job", args=[index, job.id]), token)
    client.post(reverse("django_rq:actions", args=[index]), {**token, "action": "delete", "job_ids": [job.id]})


@pytest.mark.parametrize("kind", ["staff", "viewer", "runner", "editor"])
def test_without_the_dashboard_permission_a_staff_user_can_neither_see_nor_empty_the_queues(user_of, queued, kind):
    queue, job = queued
    client = csrf_client(user_of(kind))

    assert client.get(reverse("django_rq:home")).status_code == 403
    assert client.get(reverse("django_rq:jobs", args=[_queue_index("default")])).status_code == 403
    assert client.get(reverse("django_rq:home_json")).status_code == 401  # answered as an anonymous caller
    _empty_and_delete(client, job)

    assert queue.count == 1 and queue.job_ids == [job.id]
    assert queue.fetch_job(job.id) is not None


@pytest.mark.parametrize("who", ["operator", "superuser"])
def test_with_the_dashboard_permission_the_queue_can_be_emptied(user_of, operator, queued, who):
    queue, _job = queued
    client = csrf_client(operator if who == "operator" else user_of("superuser"))

    assert client.get(reverse("django_rq:home")).status_code == 200
    assert client.get(reverse("django_rq:home_json")).status_code == 200
    client.post(reverse("django_rq:clear", args=[_queue_index("default")]), {"csrfmiddlewaretoken": client.csrf_token})

    assert queue.count == 0


def test_the_admin_index_links_to_the_dashboard_only_for_those_who_may_use_it(user_of, operator):
    link = f'href="{reverse("django_rq:home")}"'

    assert link not in csrf_client(user_of("editor")).get(reverse("admin:index")).content.decode()
    assert link in csrf_client(operator).get(reverse("admin:index")).content.decode()
    assert link in csrf_client(user_of("superuser")).get(reverse("admin:index")).content.decode()


def test_django_rqs_own_admin_entry_is_not_there(user_of):
    client = csrf_client(user_of("staff"))

    assert client.get("/admin/django_rq/dashboard/").status_code == 404
    assert client.get(f"/admin/django_rq/dashboard/queues/{_queue_index('default')}/empty/").status_code == 404
