"""`manage.py serve` starts Redis, web, worker and scheduler together, and one Ctrl-C stops every one of them."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings

STARTED = re.compile(r"started (.+)$", re.MULTILINE)
CHILD = re.compile(r"(\w+) \(pid (\d+)\)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def group_alive(pid: int) -> bool:
    """Whether any process is left in the process group the supervisor made for this child."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def serve(request, tmp_path):
    """Start `manage.py serve` on a free port with its own data folder; yield (process, port, log path).

    With the embedded Redis by default; `indirect` parametrization with "redis_url" gives it the tests' Redis.
    """
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in ("REDIS_URL", "PORT")}
    env.update(SYNCADMIN_DATA_DIR=str(tmp_path / "data"), PORT=str(port), PYTHONUNBUFFERED="1")
    if getattr(request, "param", None) == "redis_url":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own manage.py)
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )
    try:
        yield process, port, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_login_page(process, port: int, log_path, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{log_path.read_text()}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
        except httpx.TransportError:
            time.sleep(0.25)
    raise AssertionError(f"the login page did not answer within {timeout} s:\n{log_path.read_text()}")


def started_children(log: str) -> dict[str, int]:
    line = STARTED.search(log)
    assert line, log
    return {name: int(pid) for name, pid in CHILD.findall(line.group(1))}


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_signal_stops_redis_web_worker_and_scheduler(serve, stop_signal):
    process, port, log_path = serve

    response = wait_for_login_page(process, port, log_path)
    assert response.status_code == 200
    assert "Log in" in response.text
    children = started_children(log_path.read_text())
    assert set(children) == {"redis", "web", "worker", "scheduler"}
    assert all(group_alive(pid) for pid in children.values())

    process.send_signal(stop_signal)
    exit_code = process.wait(timeout=60)

    log = log_path.read_text()
    assert exit_code == 0, log
    assert "all processes stopped" in log
    assert [name for name, pid in children.items() if group_alive(pid)] == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
    assert not (log_path.parent / "data" / "redis.sock").exists()
    assert (log_path.parent / "data" / "redis.rdb").exists(), "the embedded Redis keeps its data in the data folder"


@pytest.mark.parametrize("serve", ["redis_url"], indirect=True)
def test_with_redis_url_no_redis_is_started_and_a_dying_child_stops_the_others(serve):
    process, port, log_path = serve
    wait_for_login_page(process, port, log_path)
    children = started_children(log_path.read_text())
    assert set(children) == {"web", "worker", "scheduler"}

    os.killpg(children["scheduler"], signal.SIGKILL)
    exit_code = process.wait(timeout=60)

    log = log_path.read_text()
    assert exit_code == 1, log
    assert "scheduler exited with code -9; stopping the others" in log
    assert [name for name, pid in children.items() if group_alive(pid)] == []
