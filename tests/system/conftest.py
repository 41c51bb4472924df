"""A throw-away installation for tests that need real processes: workers that can be killed, several at once.

Its own data folder (SQLite files in WAL mode, shared by every process), the test run's Redis, the sandbox served
by `manage.py runsandbox` on a free loopback port, and RQ workers started as `manage.py rqworker --burst`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SETUP = """
import json, uuid
from connectors.choices import ConnectionKind
from connectors.models import Connection
from mappings.models import FieldMapping, TableMapping
from sandbox import services as sandbox
secret = uuid.uuid4().hex
sandbox.register_client(client_id="scratch", client_secret=secret)
counts = sandbox.seed_demo(customers={customers}, accounts=0, shared=0)
tenant = sandbox.DEMO_TENANT
base = "http://127.0.0.1:{port}/sandbox"
common = dict(tenant=tenant, client_id="scratch", token_url=f"{{base}}/oauth/{{tenant}}/oauth2/v2.0/token",
              page_size=500)
bc = Connection(kind=ConnectionKind.BUSINESS_CENTRAL, name="bc", environment_url=f"{{base}}/bc",
                bc_environment=sandbox.DEMO_ENVIRONMENT, bc_company_id=sandbox.demo_company_id(), **common)
dv = Connection(kind=ConnectionKind.DATAVERSE, name="dv", environment_url=f"{{base}}/dataverse", **common)
for c in (bc, dv):
    c.set_client_secret(secret)
    c.save()
TableMapping.objects.filter(name="CUSTOMER").update(direction="to_dataverse", table_filter="")
# Salespeople and currencies are not what these tests are about: no lookups through their couplings.
FieldMapping.objects.filter(table_mapping__name="CUSTOMER", lookup_mapping__isnull=False).update(enabled=False)
print(json.dumps(counts))
"""

VERIFY = """
import json
from collections import Counter
from connectors.clients import open_client
from connectors.models import Connection
from coupling.models import Coupling
from jobs.models import SyncJob
bc = open_client(Connection.objects.get(name="bc"))
dv = open_client(Connection.objects.get(name="dv"))
customers = {str(r["id"]): r for p in bc.read_pages("customers", select=["id", "displayName"]) for r in p.rows}
accounts = {str(r["accountid"]): r for p in dv.read_pages("accounts", select=["accountid", "name"]) for r in p.rows}
couplings = list(
    Coupling.objects.filter(table_mapping__name="CUSTOMER").values_list("bc_id", "dataverse_id", "pending")
)
last = SyncJob.objects.filter(table_mapping__name="CUSTOMER").order_by("-pk").first()
print(json.dumps({
    "customers": len(customers),
    "accounts": len(accounts),
    "couplings": len(couplings),
    "pending": sum(1 for c in couplings if c[2]),
    "bc_coupled_twice": sum(1 for n in Counter(str(c[0]) for c in couplings).values() if n > 1),
    "names_match": sum(1 for b, d, _ in couplings if str(d) in accounts
                       and accounts[str(d)]["name"] == customers.get(str(b), {}).get("displayName")),
    "jobs": [dict(id=j.pk, status=j.status, inserted=j.inserted, modified=j.modified, unchanged=j.unchanged,
                  failed=j.failed, message=j.message) for j in SyncJob.objects.order_by("pk")],
    "last": dict(status=last.status, inserted=last.inserted, modified=last.modified, unchanged=last.unchanged,
                 failed=last.failed) if last else None,
}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scratch:
    def __init__(self, folder: Path, redis_url: str):
        self.folder = folder
        self.port = free_port()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "SANDBOX_DATABASE_URL", "DJANGO_SETTINGS_MODULE")
        }
        self.env.update(
            {
                "SYNCADMIN_DATA_DIR": str(folder),
                "DEBUG": "1",
                "REDIS_URL": redis_url,
                "SYNC_LOCK_TIMEOUT_SECONDS": "10",
                # Shorter than the lock, as the defaults are (30 s and 300 s): a killed run is known dead first.
                "SYNC_WORKER_LOST_AFTER_SECONDS": "3",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.processes: list[subprocess.Popen] = []

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def shell(self, code: str, timeout: float = 300) -> dict:
        out = self.manage("shell", "-c", code, timeout=timeout).stdout.strip().splitlines()
        return json.loads(out[-1])

    def start(self, *args: str, log_name: str = "process") -> subprocess.Popen:
        log = open(self.folder / f"{log_name}-{len(self.processes)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches RQ's work horse too
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """Kill the process and its children at once, as a crashed machine would."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def install(self, *, customers: int) -> dict:
        self.manage("migrate", "--no-input")
        self.manage("migrate", "--database", "sandbox", "--no-input")
        sandbox = self.start("runsandbox", "--port", str(self.port), log_name="sandbox")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if sandbox.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the sandbox server did not start") from None
                time.sleep(0.1)
        return self.shell(SETUP.format(customers=customers, port=self.port))

    def verify(self) -> dict:
        return self.shell(VERIFY)

    def stop(self) -> None:
        for process in self.processes:
            self.kill(process)


import pytest  # noqa: E402


@pytest.fixture
def scratch(redis_url):
    # Not pytest's tmp_path: its numbered folders are pruned by any other pytest run on the machine.
    folder = Path(tempfile.mkdtemp(prefix="syncadmin-scratch-"))
    installation = Scratch(folder, redis_url)
    try:
        yield installation
    finally:
        installation.stop()
        print(f"scratch installation kept for inspection in {folder}" if os.environ.get("KEEP_SCRATCH") else "")
        if not os.environ.get("KEEP_SCRATCH"):
            shutil.rmtree(folder, ignore_errors=True)
