"""Benchmark the sync engine over real HTTP on loopback, and print the figures the README quotes.

It runs in a throw-away data folder (its own SQLite databases), starts the sandbox as a separate process
(`manage.py runsandbox`) so the engine and the emulator do not share one interpreter, seeds it, and measures:

  A  full synchronization of N Business Central customers into an empty Dataverse
  B  an incremental run with 100 changed records among N coupled ones
  C  the same work as A, written one record per request (as Business Central's own engine does)
  D  the floor: page through the same customers and bulk-write them with no engine at all
  R  a reconciliation of the N coupled records A leaves (with some records deleted on each side, so orphans are
     found): exact counts from pages of ids
"""

import gc
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection as db_connection

from syncadmin.management.scratch import is_scratch_child, rerun_in_scratch_folder

BENCH_ENV = "SYNCADMIN_BENCH_CHILD"
# What D writes for each customer: the same twelve account columns A's CUSTOMER mapping writes, so that the floor is
# the same work for the services without the engine (with four of them, the floor was a lighter load than A's).
FLOOR_COLUMNS = {
    "displayName": "name",
    "addressLine1": "address1_line1",
    "addressLine2": "address1_line2",
    "city": "address1_city",
    "state": "address1_stateorprovince",
    "country": "address1_country",
    "postalCode": "address1_postalcode",
    "phoneNumber": "telephone1",
    "email": "emailaddress1",
    "website": "websiteurl",
    "creditLimit": "creditlimit",
}
FLOOR_FIELDS = ["id", *FLOOR_COLUMNS]


class Command(BaseCommand):
    help = "Measure records per second, HTTP requests per record, queries per page and peak memory of the engine."

    def add_arguments(self, parser):
        parser.add_argument("--records", type=int, default=100_000, help="Customers for A, B and D.")
        parser.add_argument("--small", type=int, default=10_000, help="Records of the smaller A, for the memory check.")
        parser.add_argument("--c-records", type=int, default=1_000, help="Records for C (one request per record).")
        parser.add_argument("--skip", default="", help="Scenarios to skip, e.g. 'C'.")

    def handle(self, *args, **options):
        if not is_scratch_child(BENCH_ENV):
            self._rerun_in_scratch_folder()
            return
        Bench(
            self.stdout,
            records=options["records"],
            small=options["small"],
            c_records=options["c_records"],
            skip=options["skip"].upper(),
        ).run()

    def _rerun_in_scratch_folder(self):
        """Re-execute in a fresh data folder, so the benchmark never touches the real databases."""
        code = rerun_in_scratch_folder(
            marker=BENCH_ENV,
            prefix="syncadmin-bench-",
            env={
                # DEBUG off: with it on, Django keeps every query in memory and the peak-memory figure would lie.
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "SYNCADMIN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            },
        )
        if code:
            raise SystemExit(code)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PeakMemory:
    """The process's peak resident memory during a scenario: what an operator sizes a worker by.

    Linux resets the high-water mark when "5" is written to /proc/self/clear_refs. tracemalloc is not used: it
    slows every allocation down by more than half and would make the speed figures lie instead.
    """

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
        except OSError:
            pass  # elsewhere the figure is the peak since the process started: larger, never smaller

    def peak_mb(self) -> float:
        try:
            with open("/proc/self/status") as status:
                found = re.search(r"VmHWM:\s+(\d+)", status.read())
        except OSError:
            found = None
        if found:
            return int(found.group(1)) / 1024
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
        return peak / (2**20 if sys.platform == "darwin" else 1024)


class QueryCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


class Bench:
    def __init__(self, out, *, records: int, small: int, c_records: int, skip: str):
        self.out = out
        self.records = records
        self.small = small
        self.c_records = c_records
        self.skip = skip
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def say(self, text=""):
        self.out.write(text)
        self.out.flush()

    def run(self):
        call_command("migrate", verbosity=0)
        call_command("migrate", database="sandbox", verbosity=0)
        with self.embedded_redis(), self.sandbox_server():
            self.setup_connections()
            results = {}
            # The small A runs first, while the process is fresh: memory freed by a larger scenario stays with the
            # process, so running it later would hide any growth from the small run to the large one.
            if "A" not in self.skip:
                results["A-small"] = self.scenario_full(self.small)
                results["A"] = self.scenario_full(self.records)
                if "B" not in self.skip:
                    results["B"] = self.scenario_incremental()
                if "R" not in self.skip:
                    results["R"] = self.scenario_reconciliation()
            if "D" not in self.skip:
                results["D"] = self.scenario_floor(self.records)
            if "C" not in self.skip:
                results["C"] = self.scenario_full(self.c_records, one_per_request=True)
        self.report(results)

    @contextmanager
    def embedded_redis(self):
        """The engine's run lock and shared full syncs need Redis: the embedded one, unless REDIS_URL is set."""
        if os.environ.get("REDIS_URL"):
            yield
            return
        from django.conf import settings

        from syncadmin.management import embedded_redis

        with embedded_redis.running(socket_path=settings.EMBEDDED_REDIS_SOCKET, data_dir=settings.DATA_DIR):
            yield

    @contextmanager
    def sandbox_server(self):
        env = dict(os.environ)
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", "runsandbox", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("The sandbox server did not start.")
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)

    def setup_connections(self):
        from connectors.choices import ConnectionKind
        from connectors.models import Connection
        from sandbox import services as sandbox

        secret = uuid.uuid4().hex
        sandbox.register_client(client_id="bench", client_secret=secret)
        sandbox.seed_demo(customers=0, accounts=0, shared=0)
        tenant = sandbox.DEMO_TENANT
        common = {
            "tenant": tenant,
            "client_id": "bench",
            "token_url": f"{self.base}/sandbox/oauth/{tenant}/oauth2/v2.0/token",
            "page_size": 5000,
        }
        Connection.objects.all().delete()
        self.bc = Connection(
            kind=ConnectionKind.BUSINESS_CENTRAL,
            name="bench-bc",
            environment_url=f"{self.base}/sandbox/bc",
            bc_environment=sandbox.DEMO_ENVIRONMENT,
            bc_company_id=sandbox.demo_company_id(),
            batch_size=100,
            **common,
        )
        self.dataverse = Connection(
            kind=ConnectionKind.DATAVERSE,
            name="bench-dataverse",
            environment_url=f"{self.base}/sandbox/dataverse",
            batch_size=1000,
            **common,
        )
        for conn in (self.bc, self.dataverse):
            conn.set_client_secret(secret)
            conn.save()

    def reset_data(self, customers: int):
        from coupling.models import Coupling
        from jobs.models import SyncJob
        from mappings.models import TableMapping

        # Seeded by another process: the memory the seeding takes would otherwise stay with this one and be counted.
        subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", "sandbox_seed", f"--customers={customers}", "--accounts=0", "--shared=0"]
            + ["--reset"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        Coupling.objects.all().delete()
        SyncJob.objects.all().delete()
        TableMapping.objects.filter(name="CUSTOMER").update(bc_watermark=None, dataverse_watermark=None)

    def measure(self, label, work):
        counter = QueryCounter()
        memory = PeakMemory()
        gc.collect()
        memory.reset()
        started = time.perf_counter()
        with db_connection.execute_wrapper(counter):
            extra = work()
        elapsed = time.perf_counter() - started
        return {"label": label, "seconds": elapsed, "queries": counter.count, "peak_mb": memory.peak_mb(), **extra}

    def _customer_mapping(self, direction="to_dataverse"):
        from mappings.models import TableMapping

        mapping = TableMapping.objects.get(name="CUSTOMER")
        mapping.direction = direction
        mapping.table_filter = ""  # every customer: blocked ones too
        mapping.save()
        # Salespeople and currencies are not what is measured: no lookups through their couplings.
        mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
        return mapping

    def _run(self, mapping, kind, *, batch_size=None, on_progress=None):
        from jobs.models import SyncJob
        from jobs.services import sync_jobs_create, sync_jobs_run

        if batch_size is not None:
            type(self.dataverse).objects.filter(pk=self.dataverse.pk).update(batch_size=batch_size)
        jobs = sync_jobs_create(mapping=mapping, kind=kind)
        sync_jobs_run(job_ids=[j.pk for j in jobs], on_progress=on_progress)
        if batch_size is not None:
            type(self.dataverse).objects.filter(pk=self.dataverse.pk).update(batch_size=1000)
        job = SyncJob.objects.get(pk=jobs[0].pk)
        if job.status not in ("succeeded",):
            raise RuntimeError(f"The run did not succeed: {job.status} {job.message}")
        return job

    def scenario_full(self, records, *, one_per_request=False):
        self.reset_data(records)
        mapping = self._customer_mapping()
        label = "C one record per request" if one_per_request else f"A full sync of {records:,}"

        peaks = []  # the peak so far, at every page: memory that grows with the records shows as a rising series

        def work():
            job = self._run(
                mapping,
                "full",
                batch_size=1 if one_per_request else None,
                on_progress=lambda job: peaks.append(PeakMemory().peak_mb()),
            )
            pages = max(1, -(-records // 5000))
            # The peak so far at a tenth, a quarter, half, three quarters and the end of the run.
            along = (
                [peaks[max(0, round(len(peaks) * share) - 1)] for share in (0.1, 0.25, 0.5, 0.75, 1)] if peaks else []
            )
            return {
                "records": job.inserted,
                "requests": job.http_requests,
                "pages": pages,
                "peaks_along_mb": along,
            }

        self.say(f"running {label} ...")
        return self.measure(label, work)

    def scenario_incremental(self):
        from coupling.models import Coupling
        from sandbox.testing import edit_as_another_user

        mapping = self._customer_mapping()
        self._run(mapping, "modified")  # settle the watermark after A
        for i, bc_id in enumerate(Coupling.objects.filter(table_mapping=mapping).values_list("bc_id", flat=True)[:100]):
            edit_as_another_user("bc", "customers", bc_id, city=f"Changed {i}")

        def work():
            job = self._run(mapping, "modified")
            return {"records": job.modified, "requests": job.http_requests, "pages": 1}

        self.say("running B incremental (100 changed) ...")
        return self.measure("B incremental, 100 changed", work)

    def scenario_reconciliation(self, deleted_per_side: int = 50):
        """Reconcile the records A coupled, after deleting some on each side (jobs/reconciliation)."""
        from coupling.models import Coupling
        from jobs.models import Reconciliation
        from jobs.reconciliation.services import reconciliation_run
        from sandbox.testing import delete_as_another_user

        mapping = self._customer_mapping()
        deleted_per_side = min(deleted_per_side, Coupling.objects.filter(table_mapping=mapping).count() // 10)
        pairs = list(Coupling.objects.filter(table_mapping=mapping).values_list("bc_id", "dataverse_id")[:200])
        for bc_id, _ in pairs[:deleted_per_side]:
            delete_as_another_user("bc", "customers", bc_id)
        for _, dataverse_id in pairs[deleted_per_side : 2 * deleted_per_side]:
            delete_as_another_user("dataverse", "accounts", dataverse_id)

        def work():
            reconciliation = Reconciliation.objects.create(table_mapping=mapping)
            done = reconciliation_run(reconciliation_id=reconciliation.pk)
            if done.status != "succeeded" or done.counts["orphans"] != 2 * deleted_per_side:
                raise RuntimeError(f"The reconciliation did not find the orphans: {done.status} {done.counts}")
            return {"records": done.counts["coupled"], "requests": done.http_requests, "pages": 1}

        coupled = Coupling.objects.filter(table_mapping=mapping).count()
        self.say(f"running R reconciliation of {coupled:,} coupled ...")
        return self.measure(f"R reconciliation of {coupled:,} coupled", work)

    def scenario_floor(self, records):
        """Read every customer page by page and bulk-upsert them as accounts, with no engine around it."""
        from connectors.clients import open_client
        from connectors.types import WriteOperation

        self.reset_data(records)

        def work():
            written = 0
            with open_client(self.bc) as bc, open_client(self.dataverse) as dv:
                for page in bc.read_pages("customers", select=FLOOR_FIELDS):
                    operations = [
                        WriteOperation(
                            kind="upsert",
                            entity_set="accounts",
                            ref=str(i),
                            record_id=uuid.uuid4(),
                            values={
                                **{column: row.get(field) for field, column in FLOOR_COLUMNS.items()},
                                "customertypecode": 3,  # customer, as CUSTOMER's initial value
                            },
                        )
                        for i, row in enumerate(page.rows)
                    ]
                    written += sum(1 for result in dv.write_many(operations) if result.ok)
                requests = sum(bc.request_counts.values()) + sum(dv.request_counts.values())
            return {"records": written, "requests": requests, "pages": max(1, -(-records // 5000))}

        self.say(f"running D floor over {records:,} ...")
        return self.measure(f"D floor (no engine), {records:,}", work)

    def report(self, results):
        self.say("")
        columns = ("records", "seconds", "rec/s", "req/rec", "queries/page", "peak RSS MB")
        self.say(f"{'scenario':34} " + " ".join(f"{c:>12}" for c in columns))
        for result in results.values():
            rate = result["records"] / result["seconds"] if result["seconds"] else 0
            per_record = result["requests"] / result["records"] if result["records"] else 0
            self.say(
                f"{result['label']:34} {result['records']:>12,} {result['seconds']:>12.2f} {rate:>12,.0f} "
                f"{per_record:>12.4f} {result['queries'] / result['pages']:>12.1f} {result['peak_mb']:>12.1f}"
            )
        if "A" in results and "C" in results:
            a, c = results["A"], results["C"]
            speedup = (a["records"] / a["seconds"]) / (c["records"] / c["seconds"])
            self.say(f"\nA is {speedup:,.1f}x faster than C (one record per request).")
        if "A" in results:
            a = results["A"]
            along = ", ".join(f"{mb:.0f}" for mb in a["peaks_along_mb"])
            self.say(f"A's peak memory so far at 10%, 25%, 50%, 75% and 100% of its pages: {along} MB.")
        if "A" in results and "D" in results:
            a, d = results["A"], results["D"]
            share = (a["records"] / a["seconds"]) / (d["records"] / d["seconds"])
            self.say(f"A runs at {share:.0%} of the floor D.")
