"""One log line per run start and end with its counts; as JSON with LOG_FORMAT=json; never a secret or a token."""

import json
import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings

from connectors import auth
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncJob
from jobs.services import sync_jobs_create, sync_jobs_run
from mappings.models import TableMapping
from syncadmin.log_format import JsonFormatter, scrub


class JsonLines(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def json_log():
    handler = JsonLines()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # everything any module says, the token requests included
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous_level)


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_a_run_logs_its_start_and_end_as_json_without_secret_or_token(sandbox_connections, json_log):
    bc, _ = sandbox_connections
    secret = bc.client_secret
    mapping = TableMapping.objects.get(name="CURRENCY")
    jobs = sync_jobs_create(mapping=mapping, kind=JobKind.MODIFIED, direction="to_dataverse")

    sync_jobs_run(job_ids=[job.pk for job in jobs])

    job = SyncJob.objects.get(pk=jobs[0].pk)
    assert job.status == JobStatus.SUCCEEDED
    lines = [json.loads(line) for line in json_log.lines]  # every line is one JSON object
    events = {line.get("event"): line for line in lines if line.get("job") == job.pk}
    assert events["run_start"]["message"] == f"Sync job {job.pk} started: CURRENCY to_dataverse (modified)"
    end = events["run_end"]
    assert (end["status"], end["mapping"], end["direction"]) == ("succeeded", "CURRENCY", "to_dataverse")
    assert (end["inserted"], end["modified"], end["failed"]) == (job.inserted, job.modified, job.failed)
    assert end["inserted"] + end["modified"] + end["unchanged"] > 0
    assert end["level"] == "INFO" and end["logger"] == "syncadmin.runs"
    tokens = [cached.access_token for cached in auth._cache.values()]
    assert tokens, "the run obtained a token"
    everything = "\n".join(json_log.lines)
    for value in (secret, *tokens):
        assert value not in everything


def test_a_message_that_quotes_a_secret_is_scrubbed():
    text = (
        'sent Authorization: Bearer eyJhbGciOi.abc-def_ghi and {"client_secret": "s3cr3t-value", "access_token": "tok"}'
    )
    assert scrub(text) == (
        'sent Authorization: Bearer [token] and {"client_secret": "[secret]", "access_token": "[secret]"}'
    )
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "password=%s", ("hunter22",), None)
    assert json.loads(JsonFormatter().format(record))["message"] == "password=[secret]"


def run_manage(tmp_path, *args, **variables) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "DEBUG")}
    env.update(SYNCADMIN_DATA_DIR=str(tmp_path / "data"), **variables)
    return subprocess.run(  # noqa: S603 (our own manage.py)
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=settings.BASE_DIR,
    )


def test_log_format_json_makes_every_line_json_and_a_bad_value_stops_the_process(tmp_path):
    result = run_manage(
        tmp_path,
        "shell",
        "-c",
        "import logging; logging.getLogger('syncadmin.runs').info('hello %s', 'there', extra={'job': 7})",
        LOG_FORMAT="json",
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["message"], line["job"], line["logger"]) == ("hello there", 7, "syncadmin.runs")

    bad = run_manage(tmp_path, "check", LOG_FORMAT="xml")
    assert bad.returncode != 0
    assert "Configuration error: LOG_FORMAT='xml' is not one of: plain, json." in bad.stderr
