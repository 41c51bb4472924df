"""A bad environment value stops any process at start with one line that names the variable and the expected form."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

SETTING_VARIABLES = [
    "DATABASE_URL",
    "SANDBOX_DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "SYNCADMIN_ENCRYPTION_KEY",
    "SYNCADMIN_ENCRYPTION_KEY_FILE",
    "DEBUG",
    "ALLOWED_HOSTS",
    "SYNCADMIN_DATA_DIR",
    "PORT",
    "SANDBOX_ENABLED",
    "SYNC_JOB_RETENTION_DAYS",
    "SESSION_COOKIE_SECURE",
    "SYNC_SKIP_REPEATED_FAILURES",
    "SYNC_LOCK_TIMEOUT_SECONDS",
    "SYNC_SHARED_FULL_SYNC_HELPERS",
    "SYNC_WORKER_LOST_AFTER_SECONDS",
    "METRICS_TOKEN",
    "LOG_FORMAT",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
]
GOOD_SECRET_KEY = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"
GOOD_FERNET_KEY = "dGhpcyBpcyAzMiBieXRlcyBvZiB0ZXN0IGtleSEhISE="


def manage_check(tmp_path, **variables) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in SETTING_VARIABLES}
    env["SYNCADMIN_DATA_DIR"] = str(tmp_path / "data")
    env.update(variables)
    return subprocess.run(  # noqa: S603 (our own manage.py)
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )


BAD_VALUES = [
    ({"DATABASE_URL": "mysql://db.example.com/sync"}, "DATABASE_URL", "postgres://USER:PASSWORD@HOST:PORT/NAME"),
    ({"DATABASE_URL": "postgres://db.example.com:5432/"}, "DATABASE_URL", "names no database"),
    ({"SANDBOX_DATABASE_URL": "sandbox.sqlite3"}, "SANDBOX_DATABASE_URL", "sqlite:////absolute/path"),
    ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL", "redis://HOST:PORT/DB"),
    ({"REDIS_URL": "redis://127.0.0.1:port/0"}, "REDIS_URL", "redis://HOST:PORT/DB"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY", "at least 32 random characters"),
    ({"DEBUG": "false", "SYNCADMIN_ENCRYPTION_KEY": GOOD_FERNET_KEY}, "SECRET_KEY is required", "SECRET_KEY_FILE"),
    ({"SECRET_KEY_FILE": "/nonexistent/secret"}, "SECRET_KEY_FILE", "cannot be read"),
    ({"SYNCADMIN_ENCRYPTION_KEY": "not-a-key"}, "SYNCADMIN_ENCRYPTION_KEY", "32 url-safe base64-encoded bytes"),
    ({"DEBUG": "false", "SECRET_KEY": GOOD_SECRET_KEY}, "SYNCADMIN_ENCRYPTION_KEY is required", "Fernet"),
    ({"DEBUG": "maybe"}, "DEBUG", "true/false"),
    ({"ALLOWED_HOSTS": " , "}, "ALLOWED_HOSTS", "comma-separated list"),
    ({"PORT": "http"}, "PORT", "whole number"),
    ({"PORT": "70000"}, "PORT", "at most 65535"),
    ({"SANDBOX_ENABLED": "perhaps"}, "SANDBOX_ENABLED", "true/false"),
    ({"SYNC_JOB_RETENTION_DAYS": "0"}, "SYNC_JOB_RETENTION_DAYS", "at least 1"),
    ({"SESSION_COOKIE_SECURE": "sometimes"}, "SESSION_COOKIE_SECURE", "true/false"),
    ({"SYNC_SKIP_REPEATED_FAILURES": "twice"}, "SYNC_SKIP_REPEATED_FAILURES", "true/false"),
    ({"SYNC_LOCK_TIMEOUT_SECONDS": "1"}, "SYNC_LOCK_TIMEOUT_SECONDS", "at least 2"),
    ({"SYNC_SHARED_FULL_SYNC_HELPERS": "many"}, "SYNC_SHARED_FULL_SYNC_HELPERS", "whole number"),
    ({"SYNC_WORKER_LOST_AFTER_SECONDS": "1"}, "SYNC_WORKER_LOST_AFTER_SECONDS", "at least 3"),
    ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN", "at least 16 random characters"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT", "plain, json"),
    ({"EMAIL_USE_SSL": "true"}, "EMAIL_USE_TLS and EMAIL_USE_SSL", "turn one of them off"),
]


@pytest.mark.parametrize(("variables", "named", "expected_form"), BAD_VALUES, ids=[case[1] for case in BAD_VALUES])
def test_a_bad_value_stops_the_process_naming_the_variable(tmp_path, variables, named, expected_form):
    result = manage_check(tmp_path, **variables)

    assert result.returncode != 0
    assert f"Configuration error: {named}" in result.stderr
    assert expected_form in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unwritable_data_folder_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    result = manage_check(tmp_path, SYNCADMIN_DATA_DIR=str(blocker / "data"))

    assert result.returncode != 0
    assert "Configuration error: SYNCADMIN_DATA_DIR" in result.stderr
    assert "cannot be created" in result.stderr


def test_a_complete_production_environment_passes(tmp_path):
    result = manage_check(
        tmp_path,
        DEBUG="false",
        SECRET_KEY=GOOD_SECRET_KEY,
        SYNCADMIN_ENCRYPTION_KEY=GOOD_FERNET_KEY,
        ALLOWED_HOSTS="sync.example.com",
        REDIS_URL="redis://127.0.0.1:6399/2",
        PORT="8123",
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_local_keys_are_generated_once_into_the_data_folder(tmp_path):
    first = manage_check(tmp_path)
    secret_key = (tmp_path / "data" / "secret_key").read_text()
    encryption_key = (tmp_path / "data" / "encryption_key").read_text()
    second = manage_check(tmp_path)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert len(secret_key) >= 50
    assert (tmp_path / "data" / "secret_key").read_text() == secret_key
    assert (tmp_path / "data" / "encryption_key").read_text() == encryption_key
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0
