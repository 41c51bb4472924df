"""Run the whole product on one machine: embedded Redis, web server, RQ worker and RQ cron scheduler.

`--production` runs the web process under gunicorn (static files served by WhiteNoise, collected first) and every
process with DEBUG off; without it, Django's development server. A small supervisor: it starts each process in its
own process group, prefixes its output with its name, forwards one Ctrl-C (SIGINT) or SIGTERM to all of them, and
stops all of them when any one dies, saying which.
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from syncadmin.management import embedded_redis

# On the first signal the RQ worker finishes its current job ("warm shutdown"); give it this long.
GRACE_SECONDS = 20
# After the second signal (cold shutdown) wait this long before SIGKILL.
KILL_AFTER_SECONDS = 5
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    output_done: threading.Event = field(default_factory=threading.Event)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is already gone
            os.killpg(self.process.pid, signum)


def _die_with_parent_hook():
    """Return a preexec_fn that makes Linux send SIGTERM to the child if this supervisor is killed outright."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here: only a plain call happens after fork
    except OSError:
        return None
    return lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_answering(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def production_web_command(port: int) -> list[str]:
    """gunicorn on 127.0.0.1 (an HTTPS proxy in front), access log to the output; WEB_CONCURRENCY sets the workers."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "syncadmin.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-",
        # A sync page can take a while to render on a busy database; the default 30 s kills such a worker.
        "--timeout",
        "120",
    ]


class Command(BaseCommand):
    help = (
        "Start the embedded Redis (unless REDIS_URL is set), the web server on 127.0.0.1:PORT, an RQ worker and "
        "the RQ cron scheduler; Ctrl-C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reload", action="store_true", help="Restart the web server when code changes.")
        parser.add_argument(
            "--production",
            action="store_true",
            help="DEBUG off, static files collected, the web process under gunicorn (WEB_CONCURRENCY workers).",
        )

    def handle(self, *args, reload: bool = False, production: bool = False, **options):
        port = settings.PORT
        if not _port_free(port):
            raise CommandError(f"Port {port} on 127.0.0.1 is in use: stop what uses it, or set PORT to another port.")
        self.signals_received = 0
        self.stop_signal = signal.SIGTERM  # what the children get when one of them died on its own
        self.output_lock = threading.Lock()
        self.preexec = _die_with_parent_hook()
        self.child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PORT": str(port)}
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        self.production = production
        if production:
            self.child_env["DEBUG"] = "false"
            self._collect_static(manage)
            web = production_web_command(port)
        else:
            web = [*manage, "runserver", f"127.0.0.1:{port}", *([] if reload else ["--noreload"])]
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

        redis_children = []
        if not os.environ.get("REDIS_URL"):
            redis_children = [self._start_embedded_redis()]
        app_children = [
            self._spawn("web", web),
            self._spawn("worker", [*manage, "rqworker", "high", "default", "low", "--with-scheduler"]),
            self._spawn("scheduler", [*manage, "rqcron", "syncadmin.cron"]),
        ]
        children = redis_children + app_children
        self._say("started " + ", ".join(f"{c.name} (pid {c.process.pid})" for c in children))

        exit_code = self._supervise(children, port)
        # Redis goes last, so the worker can still record what it was doing.
        self._stop(app_children, self.stop_signal)
        self._stop(redis_children, signal.SIGTERM)
        self._say("all processes stopped")
        if exit_code:
            sys.exit(exit_code)

    def _collect_static(self, manage: list[str]) -> None:
        """Copy the static files where WhiteNoise serves them from, with the production settings; stop if that fails."""
        self._say("collecting static files")
        result = subprocess.run(  # noqa: S603 (our own manage.py)
            [*manage, "collectstatic", "--no-input", "--verbosity", "0"],
            env=self.child_env,
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise CommandError(f"collectstatic failed:\n{result.stdout}{result.stderr}".strip())

    def _start_embedded_redis(self) -> Child:
        socket_path = settings.EMBEDDED_REDIS_SOCKET
        try:
            embedded_redis.check_socket_free(socket_path)
        except embedded_redis.EmbeddedRedisError as exc:
            raise CommandError(str(exc)) from None
        command = embedded_redis.server_command(socket_path=socket_path, data_dir=settings.DATA_DIR, persist=True)
        child = self._spawn("redis", command)
        try:
            embedded_redis.wait_until_answering(child.process, socket_path)
        except embedded_redis.EmbeddedRedisError as exc:
            raise CommandError(str(exc)) from None
        return child

    def _spawn(self, name: str, command: list[str]) -> Child:
        process = subprocess.Popen(  # noqa: S603 (our own fixed commands)
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.child_env,
            cwd=settings.BASE_DIR,
            # Own process group: the terminal's Ctrl-C reaches only us, and we stop each child with its children.
            start_new_session=True,
            preexec_fn=self.preexec,  # only calls prctl: no locks are taken between fork and exec
        )
        child = Child(name=name, process=process)
        threading.Thread(target=self._pump_output, args=(child,), daemon=True).start()
        return child

    def _pump_output(self, child: Child) -> None:
        prefix = f"{child.name:<9}| ".encode()
        assert child.process.stdout is not None  # started with stdout=PIPE
        for line in iter(child.process.stdout.readline, b""):
            with self.output_lock:
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.flush()
        child.output_done.set()

    def _say(self, message: str) -> None:
        with self.output_lock:
            sys.stdout.write(f"serve    | {message}\n")
            sys.stdout.flush()

    def _on_signal(self, signum, frame) -> None:
        if not self.signals_received:
            self.stop_signal = signum  # forwarded as received: SIGINT or SIGTERM
        self.signals_received += 1

    def _supervise(self, children: list[Child], port: int) -> int:
        """Wait for a signal (return 0) or for a child to die (return 1)."""
        announced = False
        while not self.signals_received:
            for child in children:
                if not child.alive:
                    child.output_done.wait(timeout=2)  # let its last words reach the terminal first
                    self._say(f"{child.name} exited with code {child.process.returncode}; stopping the others")
                    return 1
            if not announced and _port_answering(port):
                announced = True
                self._announce(port)
            time.sleep(0.2)
        self._say("stopping (press Ctrl-C again to stop at once)")
        return 0

    def _announce(self, port: int) -> None:
        redis_where = "REDIS_URL" if os.environ.get("REDIS_URL") else f"the embedded Redis at {settings.REDIS_URL}"
        if self.production:
            self._say(
                f"syncadmin is up (production: gunicorn, DEBUG off) on 127.0.0.1:{port}, for the HTTPS proxy in "
                f"front of it; health: /healthz\nserve    | queue: {redis_where}; data: {settings.DATA_DIR}; "
                "press Ctrl-C to stop everything"
            )
            return
        self._say(
            f"syncadmin is up: http://127.0.0.1:{port}/admin/\n"
            "serve    | log in as admin with the password that demo_setup printed above on the first run "
            "(forgot it? .venv/bin/python manage.py changepassword admin)\n"
            f"serve    | queue: {redis_where}; data: {settings.DATA_DIR}; press Ctrl-C to stop everything"
        )

    def _stop(self, children: list[Child], signum: int) -> None:
        for child in children:
            if child.alive:
                child.signal_group(signum)
        seen_signals = self.signals_received
        deadline = time.monotonic() + GRACE_SECONDS
        escalated = False
        while any(child.alive for child in children):
            if not escalated and (time.monotonic() > deadline or self.signals_received > seen_signals):
                # A second signal makes the RQ worker abandon its job ("cold shutdown"); the job is retried later.
                escalated = True
                deadline = time.monotonic() + KILL_AFTER_SECONDS
                for child in children:
                    if child.alive:
                        self._say(f"{child.name} is still running: stopping it at once")
                        child.signal_group(signal.SIGTERM)
            elif escalated and time.monotonic() > deadline:
                for child in children:
                    if child.alive:
                        self._say(f"{child.name} did not stop: killing it")
                        child.signal_group(signal.SIGKILL)
                        child.process.wait()
            time.sleep(0.1)
        for child in children:
            # Leftovers of a group whose leader is gone (an RQ work horse, say) must not outlive us.
            child.signal_group(signal.SIGKILL)
            child.output_done.wait(timeout=2)
