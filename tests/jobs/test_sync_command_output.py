"""`manage.py sync` says what a preview would do, and what is wrong when Redis cannot be reached."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from jobs.models import SyncJob

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"]), pytest.mark.usefixtures("sandbox_connections")]


def test_a_preview_prints_what_it_would_do_not_nothing_to_do(customer):
    out = StringIO()
    call_command("sync", "CUSTOMER", "--preview", "--direction", "to_dataverse", stdout=out, stderr=StringIO())
    lines = out.getvalue().splitlines()
    customer_job = SyncJob.objects.get(table_mapping__name="CUSTOMER")  # its dependencies were previewed first
    summary = lines[lines.index(f"#{customer_job.pk} CUSTOMER to_dataverse: Succeeded") + 1]
    assert summary.strip().startswith("would insert ") and "nothing to do" not in summary


def test_without_redis_the_command_names_the_redis_and_how_to_start_it(customer, settings):
    unreachable = "unix:///nonexistent/syncadmin-redis.sock"
    settings.REDIS_URL = unreachable
    settings.RQ_QUEUES = {name: {**config, "URL": unreachable} for name, config in settings.RQ_QUEUES.items()}

    with pytest.raises(CommandError) as refused:
        call_command("sync", "CUSTOMER", "--direction", "to_dataverse", stdout=StringIO(), stderr=StringIO())

    assert unreachable in str(refused.value) and "make run" in str(refused.value)
    assert not SyncJob.objects.exists()  # no job left "queued" that nothing will ever run
