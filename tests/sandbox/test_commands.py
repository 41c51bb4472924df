"""Management commands: sandbox_seed (idempotent, shared companies) and runsandbox (the sandbox alone on a real
socket, with faults injected from another process)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from sandbox import services
from tests.sandbox.conftest import BC_SCOPE, CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])
ROOT = Path(__file__).resolve().parents[2]


def test_seed_is_idempotent_and_shares_companies(bc, dv, registered, capsys):
    call_command("sandbox_seed", "--customers", "12", "--accounts", "10", "--shared", "4")
    first = capsys.readouterr().out
    assert "bc_customers: 12 added" in first and "dataverse_accounts: 10 added" in first
    call_command("sandbox_seed", "--customers", "12", "--accounts", "10", "--shared", "4")
    assert all(line.endswith(": 0 added") for line in capsys.readouterr().out.strip().splitlines())
    company = services.demo_company_id()
    customers = bc.get(f"companies({company})/customers", params={"$select": "displayName,phoneNumber,email"}).json()
    accounts = dv.get("accounts", params={"$select": "name,telephone1,emailaddress1"}).json()
    on_bc = {(c["displayName"], c["phoneNumber"], c["email"]) for c in customers["value"]}
    on_dv = {(a["name"], a["telephone1"], a["emailaddress1"]) for a in accounts["value"]}
    assert len(on_bc & on_dv) == 4
    assert services.seed_demo(customers=12, accounts=10, shared=4, reset=True)["bc_customers"] == 12


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manage(env, *args, **kwargs):
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120, **kwargs
    )


@pytest.fixture
def standalone(tmp_path):
    """`manage.py runsandbox` in its own process on its own SQLite file."""
    env = {**os.environ, "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'sandbox.sqlite3'}"}
    _manage(env, "migrate", "--database", "sandbox", "-v", "0")
    script = (
        "from sandbox import services; "
        f"services.register_client(client_id='{CLIENT_ID}', client_secret='{CLIENT_SECRET}'); "
        "services.seed_demo(customers=5, accounts=5, shared=2)"
    )
    _manage(env, "shell", "-c", script)
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "runsandbox", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/sandbox/dataverse/api/data/v9.2/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield base, env
    server.terminate()
    server.wait(timeout=10)


def test_runsandbox_serves_the_sandbox_alone_and_shares_faults_across_processes(standalone):
    base, env = standalone
    token = httpx.post(
        f"{base}/sandbox/oauth/{services.DEMO_TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": BC_SCOPE,
        },
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    root = f"{base}/sandbox/bc/v2.0/{services.DEMO_TENANT}/{services.DEMO_ENVIRONMENT}/api/v2.0/"
    customers = httpx.get(f"{root}companies({services.demo_company_id()})/customers", headers=headers)
    assert customers.status_code == 200 and len(customers.json()["value"]) == 5
    assert httpx.get(f"{base}/admin/").status_code == 404  # the sandbox alone
    _manage(env, "shell", "-c", "from sandbox import testing; testing.inject_faults('drop', 1, service='bc')")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{root}companies", headers=headers)
    _manage(env, "shell", "-c", "from sandbox import testing; testing.inject_faults('429', 1, retry_after=4)")
    throttled = httpx.get(f"{root}companies", headers=headers)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "4"
    assert httpx.get(f"{root}companies", headers=headers).status_code == 200
