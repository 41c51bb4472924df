"""`manage.py serve --production` runs the web process under gunicorn with DEBUG off and WhiteNoise serving the static
files; `manage.py check --deploy` is clean with the production environment the README documents."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

GOOD_SECRET_KEY = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"
GOOD_FERNET_KEY = "dGhpcyBpcyAzMiBieXRlcyBvZiB0ZXN0IGtleSEhISE="
# The README's production environment (section "Production"), with test values.
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": GOOD_SECRET_KEY,
    "SYNCADMIN_ENCRYPTION_KEY": GOOD_FERNET_KEY,
    "ALLOWED_HOSTS": "sync.example.com,127.0.0.1",
    "SANDBOX_ENABLED": "false",
    "BEHIND_HTTPS_PROXY": "true",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "METRICS_TOKEN": "a-metrics-token-of-32-characters",
    "LOG_FORMAT": "json",
}


def base_env(tmp_path) -> dict[str, str]:
    # Not the test run's own switches (the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE): a production environment.
    dropped = ("DEBUG", "PORT", "SECRET_KEY", "LOG_FORMAT", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(SYNCADMIN_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    return env


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path):
    result = subprocess.run(  # noqa: S603 (our own manage.py)
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        env={**base_env(tmp_path), **PRODUCTION_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_production_starts_gunicorn_with_debug_off_and_serves_static_files(tmp_path, redis_url):
    port = free_port()
    env = {**base_env(tmp_path), **PRODUCTION_ENV, "PORT": str(port), "REDIS_URL": redis_url}
    env["SECURE_SSL_REDIRECT"] = "false"  # no HTTPS proxy in front of it here
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "serve", "--production"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        static = None
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            try:
                static = httpx.get(f"http://127.0.0.1:{port}/static/admin/css/base.css", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.25)
        assert static is not None, f"nothing answered within 90 s:\n{log_path.read_text()}"
        assert static.status_code == 200
        assert "text/css" in static.headers["content-type"]

        log = log_path.read_text()
        started = next(line for line in log.splitlines() if "serve    | started " in line)
        web_pid = int(started.split("web (pid ")[1].split(")")[0])
        assert "gunicorn syncadmin.wsgi:application" in command_line(web_pid)
        assert (tmp_path / "data" / "static" / "admin" / "css" / "base.css").exists(), "collectstatic ran first"

        missing = httpx.get(f"http://127.0.0.1:{port}/admin/no-such-page/", timeout=5)
        assert "Traceback" not in missing.text and "DEBUG = True" not in missing.text  # DEBUG is off
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code in (200, 503) and health.json()["checks"]["database"] == "ok"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
