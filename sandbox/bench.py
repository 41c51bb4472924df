"""The sandbox benchmark: reading 5,000-row pages from a 100,000-row table, a 1,000-record UpsertMultiple and a
100-request Business Central `$batch`, all through real HTTP (in-process WSGI transport) with bearer tokens.

It runs against a throwaway SQLite file (the sandbox's default engine), never the configured sandbox data.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import connections

from sandbox import rows, schema, seed, services
from sandbox.models import row_model

CLIENT_ID = "sandbox-bench"
CLIENT_SECRET = "bench-" + uuid.uuid4().hex
HOST = "http://localhost"


@contextmanager
def throwaway_sandbox_database():
    """Point the `sandbox` alias at a fresh SQLite file for the duration, then restore it."""
    handler = connections
    original = dict(handler.settings[rows.DB])
    handler[rows.DB].close()
    with tempfile.TemporaryDirectory() as folder:
        config = {**original, "ENGINE": "django.db.backends.sqlite3", "NAME": str(Path(folder) / "bench.sqlite3")}
        config["OPTIONS"] = {}
        handler.settings[rows.DB] = config
        handler[rows.DB] = handler.create_connection(rows.DB)
        try:
            call_command("migrate", "sandbox", database=rows.DB, verbosity=0)
            yield
        finally:
            handler[rows.DB].close()
            handler.settings[rows.DB] = original
            handler[rows.DB] = handler.create_connection(rows.DB)


def _client(app, root: str, scope: str, http: httpx.Client) -> httpx.Client:
    token = http.post(
        f"{HOST}/sandbox/oauth/{services.DEMO_TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": scope,
        },
    ).json()["access_token"]
    return httpx.Client(
        transport=httpx.WSGITransport(app=app),
        base_url=root,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=120,
    )


def _page_times(client: httpx.Client, url: str, pages: int) -> tuple[list[float], int]:
    times, count = [], 0
    link = url
    while link and len(times) < pages:
        started = time.perf_counter()
        response = client.get(link, headers={"Prefer": "odata.maxpagesize=5000"})
        times.append((time.perf_counter() - started) * 1000)  # the whole answer received; parsing is the client's
        body = response.json()
        count += len(body["value"])
        link = body.get("@odata.nextLink")
    return times, count


def run(*, rows_per_table: int = 100_000, pages: int = 20, out=print) -> dict:
    results = {}
    with throwaway_sandbox_database():
        started = time.perf_counter()
        services.register_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        seed.seed(
            company_id=str(services.DEMO_COMPANY_ID),
            customers=rows_per_table,
            accounts=rows_per_table,
            shared=0,
            seed=7,
        )
        out(f"seeded {rows_per_table:,} BC customers and {rows_per_table:,} Dataverse accounts in "
            f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        app = get_wsgi_application()
        http = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=HOST)
        bc_root = f"{HOST}/sandbox/bc/v2.0/{services.DEMO_TENANT}/{services.DEMO_ENVIRONMENT}/api/v2.0/"
        dv_root = f"{HOST}/sandbox/dataverse/api/data/v9.2/"
        bc = _client(app, bc_root, "https://api.businesscentral.dynamics.com/.default", http)
        dv = _client(app, dv_root, f"{HOST}/sandbox/dataverse/.default", http)
        company = services.DEMO_COMPANY_ID

        for label, client, url in (
            ("BC customers", bc, f"companies({company})/customers"),
            ("Dataverse accounts", dv, "accounts"),
            (
                "Dataverse accounts, $select + $filter on modifiedon",
                dv,
                "accounts?$select=name,accountnumber,telephone1,modifiedon&$filter=modifiedon gt 2000-01-01T00:00:00Z",
            ),
        ):
            times, count = _page_times(client, url, pages)
            results[label] = {"median_ms": statistics.median(times), "max_ms": max(times), "pages": len(times)}
            out(
                f"read {label}: {len(times)} pages of 5,000 ({count:,} rows): "
                f"median {statistics.median(times):.0f} ms, "
                f"mean {statistics.mean(times):.0f} ms, max {max(times):.0f} ms per page"
            )

        existing = list(
            row_model(schema.table("dataverse", "accounts")).objects.using(rows.DB).values_list("rid", flat=True)[:500]
        )
        targets = [
            {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": rid, "name": f"Bench updated {i}"}
            for i, rid in enumerate(existing)
        ]
        targets += [
            {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": str(uuid.uuid4()), "name": f"Bench new {i}"}
            for i in range(1000 - len(targets))
        ]
        started = time.perf_counter()
        response = dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
        elapsed = time.perf_counter() - started
        assert response.status_code == 204, response.text[:500]
        results["UpsertMultiple"] = {"records_per_second": len(targets) / elapsed, "seconds": elapsed}
        out(f"UpsertMultiple of {len(targets):,} records (half updates): {elapsed:.2f} s = "
            f"{len(targets) / elapsed:,.0f} records/s")  # fmt: skip

        customers = list(
            row_model(schema.table("bc", "customers")).objects.using(rows.DB).values_list("rid", flat=True)[:50]
        )
        requests = [
            {
                "id": str(i),
                "method": "PATCH",
                "url": f"companies({company})/customers({rid})",
                "headers": {"Content-Type": "application/json", "If-Match": "*"},
                "body": {"displayName": f"Bench {i}"},
            }
            for i, rid in enumerate(customers)
        ]
        requests += [
            {
                "id": str(len(requests) + i),
                "method": "POST",
                "url": f"companies({company})/customers",
                "headers": {"Content-Type": "application/json"},
                "body": {"displayName": f"Bench new {i}"},
            }
            for i in range(100 - len(requests))
        ]
        started = time.perf_counter()
        response = bc.post("$batch", json={"requests": requests}, headers={"Isolation": "snapshot"})
        elapsed = time.perf_counter() - started
        statuses = {r["status"] for r in response.json()["responses"]}
        assert statuses <= {200, 201}, statuses
        results["BC $batch"] = {"records_per_second": len(requests) / elapsed, "seconds": elapsed}
        out(f"BC $batch of {len(requests)} requests (50 PATCH, 50 POST): {elapsed:.2f} s = "
            f"{len(requests) / elapsed:,.0f} records/s")  # fmt: skip
        for client in (bc, dv, http):
            client.close()
    return results
