"""Benchmark the sync engine over real HTTP on loopback, and print the figures the README quotes.

It runs in a throw-away data folder (its own SQLite databases), starts the sandbox as a separate process
(`manage.py runsandbox`) so the engine and the emulator do not share one interpreter, seeds it, and measures:

  A  full synchronization of N Business Central customers into an empty Dataverse
  B  an incremental run with 100 changed records among N coupled ones
  C  the same work as A, written one record per request (as Business Central's own engine does)
  D  the floor: page through the same customers and bulk-write them with no engine at all
  R  a reconciliation of the N coupled records A leaves (with some records deleted on each side, so orphans are
     found): exact counts from pages of ids
  S  a shared full synchronization (jobs/shared_sync.py) with 1, 2 and 4 worker processes, side by side

With `--costs [profile]` the sandbox behaves in time like the real services (sandbox/costs.py, scaled by
`--time-scale`), and the cost scenarios run instead of A-D and R:

  E  full synchronization of N Business Central customers into an empty Dataverse
  E2 E with a second app registration on the Dataverse connection (its limits per user doubled)
  F  full synchronization of N Dataverse accounts into Business Central
  G  E with a share of requests failing (429, 503, timeouts, dropped connections) against the same run without
  S  as above, under the profile

Each prints records per second in service time (the wall-clock rate times the time scale), the ceiling the
profile's limits allow (sandbox.costs.ceiling) and the share of it reached, the requests the sandbox refused for
its limits, the failed records, and the engine's own CPU time (this process, every thread) as a share of the wall
time: near 100% (one core, as Python threads share one) the engine, not the services, is the limit.
"""

import gc
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import replace

from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection as db_connection
from django.db import transaction

from syncadmin.management.scratch import is_scratch_child, rerun_in_scratch_folder

BENCH_ENV = "SYNCADMIN_BENCH_CHILD"
SEED_BASE = 100_000  # customers made by the seeder; more are copies of them under new ids and numbers
# A random version-4 UUID as text, in SQLite's SQL.
SQL_UUID4 = (
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' "
    "|| substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
)
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


def _insert_select(connection, model, expressions: dict[str, str], source: str, params=()) -> None:
    """INSERT INTO model's table SELECT ... FROM `source`: the given SQL for some columns, every other column its
    field's default."""
    quote = connection.ops.quote_name
    columns, values, defaults = [], [], []
    for field in model._meta.concrete_fields:
        columns.append(quote(field.column))
        if field.column in expressions:
            values.append(expressions[field.column])
        else:
            values.append("%s")
            defaults.append(field.get_db_prep_save(field.get_default(), connection))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(columns)}) SELECT {', '.join(values)} {source}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*defaults, *params])


class Command(BaseCommand):
    help = "Measure records per second, HTTP requests per record, queries per page and peak memory of the engine."

    def add_arguments(self, parser):
        parser.add_argument("--records", type=int, default=100_000, help="Customers for A, B and D.")
        parser.add_argument("--small", type=int, default=10_000, help="Records of the smaller A, for the memory check.")
        parser.add_argument("--c-records", type=int, default=1_000, help="Records for C (one request per record).")
        parser.add_argument("--skip", default="", help="Scenarios to skip, e.g. 'C'.")
        parser.add_argument(
            "--b-coupled",
            type=int,
            default=0,
            help="Run only B, among this many records coupled by bulk SQL instead of by A (B at 1,000,000 without the "
            "hour A takes to get there on a shared machine).",
        )
        parser.add_argument(
            "--costs",
            nargs="?",
            const="default",
            default=None,
            help="Run the cost scenarios E, F, G and S under this sandbox cost profile ('default').",
        )
        parser.add_argument(
            "--time-scale", type=float, default=1.0, help="Wall time per second of service time (0.01: 100x faster)."
        )
        parser.add_argument("--e-records", type=int, default=100_000, help="Customers for E (BC to Dataverse).")
        parser.add_argument(
            "--e2-records", type=int, default=0, help="Customers for E2 (E with 2 app registrations); 0: as E."
        )
        parser.add_argument("--f-records", type=int, default=10_000, help="Accounts for F (Dataverse to BC).")
        parser.add_argument("--g-records", type=int, default=10_000, help="Customers for G (the fault run).")
        parser.add_argument("--fault-share", type=float, default=0.10, help="Share of requests failing in G.")
        parser.add_argument("--s-records", type=int, default=20_000, help="Customers for S (shared full sync).")
        parser.add_argument("--workers", default="1,2,4", help="Worker processes for S, e.g. '1,2,4'.")
        parser.add_argument(
            "--queries",
            action="store_true",
            help="After each scenario, its database statements per page by kind and table, most frequent first.",
        )

    def handle(self, *args, **options):
        if not is_scratch_child(BENCH_ENV):
            self._rerun_in_scratch_folder()
            return
        from sandbox import costs

        if options["costs"] is not None and options["costs"] not in costs.PROFILES:
            raise SystemExit(f"Unknown cost profile {options['costs']!r}; known: {', '.join(costs.PROFILES)}.")
        Bench(
            self.stdout,
            records=options["records"],
            small=options["small"],
            c_records=options["c_records"],
            skip=options["skip"].upper(),
            b_coupled=options["b_coupled"],
            profile=(
                replace(costs.PROFILES[options["costs"]], time_scale=options["time_scale"])
                if options["costs"] is not None
                else None
            ),
            e_records=options["e_records"],
            e2_records=options["e2_records"] or options["e_records"],
            f_records=options["f_records"],
            g_records=options["g_records"],
            fault_share=options["fault_share"],
            s_records=options["s_records"],
            workers=[int(n) for n in options["workers"].split(",") if n.strip()],
            list_queries=options["queries"],
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
    """Counts the statements a scenario sends, and by shape (verb and table), for `--queries`."""

    def __init__(self):
        self.count = 0
        self.shapes: Counter[str] = Counter()

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        self.shapes[statement_shape(sql)] += 1
        return execute(sql, params, many, context)


def statement_shape(sql: str) -> str:
    """'SELECT jobs_syncjob', 'UPDATE coupling_coupling': which kind of statement, on which table."""
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else ''}".strip()


class Bench:
    def __init__(
        self,
        out,
        *,
        records: int,
        small: int,
        c_records: int,
        skip: str,
        b_coupled: int = 0,
        profile=None,
        e_records: int = 100_000,
        e2_records: int = 100_000,
        f_records: int = 10_000,
        g_records: int = 10_000,
        fault_share: float = 0.10,
        s_records: int = 20_000,
        workers: tuple[int, ...] | list[int] = (1, 2, 4),
        list_queries: bool = False,
    ):
        self.out = out
        self.records = records
        self.small = small
        self.c_records = c_records
        self.skip = skip
        self.b_coupled = b_coupled
        self.sandbox_pid = None
        self.profile = profile
        self.e_records = e_records
        self.e2_records = e2_records
        self.f_records = f_records
        self.g_records = g_records
        self.fault_share = fault_share
        self.s_records = s_records
        self.workers = list(workers)
        self.list_queries = list_queries
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
            if self.profile is not None:
                self.run_costed()
                return
            results = {}
            if self.b_coupled:
                self.seed_coupled(self.b_coupled)
                results["B"] = self.scenario_incremental()
                self.report(results)
                return
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
            shared = self.scenario_shared_workers() if "S" not in self.skip else []
        self.report(results)
        self.report_shared(shared)

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
        self.sandbox_pid = process.pid
        try:
            for _ in range(600):  # up to a minute: on a machine shared with other work, starting Django takes seconds
                if process.poll() is not None:
                    raise RuntimeError(f"The sandbox server exited with code {process.returncode}.")
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("The sandbox server did not start within a minute.")
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
            # Business Central's limit per user (5 requests at once), which an integration user kept for syncadmin
            # can use whole; the connection's default, 4, measured F against a ceiling it could not reach.
            max_concurrency=5,
            **common,
        )
        self.dataverse = Connection(
            kind=ConnectionKind.DATAVERSE,
            name="bench-dataverse",
            environment_url=f"{self.base}/sandbox/dataverse",
            batch_size=1000,
            **common,
        )
        if self.profile is not None:
            # The client's timeout in service time as the profile's (a timeout fault holds the socket for
            # fault_timeout_seconds of service time, the connectors' default 60 s): scaled like everything else.
            for conn in (self.bc, self.dataverse):
                conn.timeout_seconds = max(1, round(conn.timeout_seconds * self.profile.time_scale))
        for conn in (self.bc, self.dataverse):
            conn.set_client_secret(secret)
            conn.save()

    def reset_data(self, customers: int, accounts: int = 0):
        from coupling.models import Coupling
        from jobs.models import SyncJob
        from mappings.models import TableMapping

        # Seeded by another process: the memory the seeding takes would otherwise stay with this one and be counted.
        # Beyond SEED_BASE customers the seeder's output is copied in SQL (the seeder takes minutes per 100,000 on a
        # busy machine, the copy seconds).
        subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", "sandbox_seed", f"--customers={min(customers, SEED_BASE)}"]
            + [f"--accounts={accounts}", "--shared=0", "--reset"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if customers > SEED_BASE:
            self._copy_customers(customers, SEED_BASE)
        Coupling.objects.all().delete()
        SyncJob.objects.all().delete()
        TableMapping.objects.filter(name="CUSTOMER").update(bc_watermark=None, dataverse_watermark=None)

    def _copy_customers(self, records: int, base: int) -> None:
        """Fill the customers up to `records` with copies of the first `base` under new ids and numbers (the scratch
        folder's SQLite only)."""
        from django.db import connections

        from sandbox import rows, schema
        from sandbox.models import row_model

        customer = row_model(_table(schema, "bc", "customers"))
        sandbox_db = connections[rows.DB]
        customers = sandbox_db.ops.quote_name(str(customer._meta.db_table))
        copied = {str(f.column): sandbox_db.ops.quote_name(str(f.column)) for f in customer._meta.concrete_fields}
        with transaction.atomic(using=rows.DB):
            for copy in range(1, -(-records // base)):
                _insert_select(
                    sandbox_db,
                    customer,
                    {**copied, "rid": SQL_UUID4, "number": f"'R' || printf('%08d', {copy * base} + rowid)"},
                    f"FROM {customers} WHERE rowid <= %s",
                    [min(base, records - copy * base)],
                )

    def seed_coupled(self, records: int) -> None:
        """`records` customers, as many accounts and a coupling for each pair, as A would leave them, written with
        INSERT ... SELECT in the scratch SQLite databases: A takes most of an hour to couple 1,000,000 records on
        a shared 2-core machine, this a few minutes. Each account takes its customer's values and an id derived
        from its id ('b' for its first digit)."""
        from django.db import connections
        from django.utils import timezone

        from coupling.models import Coupling
        from mappings.models import TableMapping
        from sandbox import rows, schema
        from sandbox.models import row_model

        self.say(f"seeding {records:,} coupled records in bulk ...")
        started = time.perf_counter()
        self.reset_data(records)
        customer = row_model(_table(schema, "bc", "customers"))
        account = row_model(_table(schema, "dataverse", "accounts"))
        sandbox_db = connections[rows.DB]
        customers = sandbox_db.ops.quote_name(str(customer._meta.db_table))
        with transaction.atomic(using=rows.DB):
            first_version = rows.next_versions(records)
            _insert_select(
                sandbox_db,
                account,
                {
                    "rid": "'b' || substr(rid, 2)",
                    "created_at": "substr(modified_at, 1, 19) || '.000Z'",
                    "modified_at": "substr(modified_at, 1, 19) || '.000Z'",
                    "version": f"{first_version} + rowid - 1",
                    "name": '"displayName"',
                    "telephone1": '"phoneNumber"',
                    "emailaddress1": "email",
                    "websiteurl": "website",
                    "address1_line1": '"addressLine1"',
                    "address1_city": "city",
                    "address1_stateorprovince": "state",
                    "address1_postalcode": '"postalCode"',
                    "address1_country": "country",
                    "creditlimit": '"creditLimit"',
                    "customertypecode": "3",
                    "statecode": "0",
                    "statuscode": "1",
                },
                f"FROM {customers}",
            )
        mapping = self._customer_mapping()
        now = timezone.now()
        stamp = db_connection.ops.adapt_datetimefield_value(now)
        with db_connection.cursor() as cursor:
            cursor.execute("ATTACH DATABASE %s AS sandbox_rows", [str(sandbox_db.settings_dict["NAME"])])
        try:
            with transaction.atomic():
                _insert_select(
                    db_connection,
                    Coupling,
                    {
                        "table_mapping_id": str(mapping.pk),
                        "bc_id": "replace(rid, '-', '')",  # Django keeps a UUID as 32 hex digits in SQLite
                        "dataverse_id": "replace('b' || substr(rid, 2), '-', '')",
                        "bc_name": '"displayName"',
                        "dataverse_name": '"displayName"',
                        "bc_modified_on": "replace(substr(modified_at, 1, 23), 'T', ' ')",
                        "dataverse_modified_on": "replace(substr(modified_at, 1, 19), 'T', ' ')",
                        "bc_etag": "'W/\"' || etag || '\"'",
                        "dataverse_etag": f"'W/\"' || ({first_version} + rowid - 1) || '\"'",
                        "last_result_to_dataverse": "'success'",
                        "created_at": f"'{stamp}'",
                        "updated_at": f"'{stamp}'",
                    },
                    f"FROM sandbox_rows.{customers}",
                )
        finally:
            with db_connection.cursor() as cursor:
                cursor.execute("DETACH DATABASE sandbox_rows")
        # As A leaves it: the watermark at the run's start, the coupled ids just checked for deletions.
        TableMapping.objects.filter(pk=mapping.pk).update(bc_watermark=now, bc_deletions_checked_at=now)
        coupled = Coupling.objects.filter(table_mapping=mapping).count()
        self.say(f"seeded {coupled:,} coupled records in {time.perf_counter() - started:.0f} s")

    def measure(self, label, work):
        counter = QueryCounter()
        memory = PeakMemory()
        gc.collect()
        memory.reset()
        load_before = os.getloadavg()[0]
        cpu_before = self.cpu_seconds()
        started = time.perf_counter()
        cpu_started = time.process_time()  # this process, all its threads (the sandbox runs in another)
        with db_connection.execute_wrapper(counter):
            extra = work()
        elapsed = time.perf_counter() - started
        cpu_after = self.cpu_seconds()
        result = {
            "label": label,
            "seconds": elapsed,
            "cpu_seconds": time.process_time() - cpu_started,
            "queries": counter.count,
            "query_shapes": counter.shapes,
            "peak_mb": memory.peak_mb(),
            # The machine may be shared: the 1-minute load average before and after says how far to trust the rate.
            "load": (load_before, os.getloadavg()[0]),
            # CPU seconds of the engine's process and of the sandbox's: on a busy machine the wall time stretches by
            # the share of the cores the two get, their CPU time much less (their sum bounds the idle wall time).
            "cpu": tuple(after - before for before, after in zip(cpu_before, cpu_after, strict=True)),
            **extra,
        }
        # Each figure as soon as it is measured: a 1,000,000-record run takes most of an hour, and one stopped before
        # the end still leaves what it measured.
        self.say_result(result)
        return result

    def _customer_mapping(self, direction="to_dataverse"):
        from mappings.models import TableMapping

        mapping = TableMapping.objects.get(name="CUSTOMER")
        mapping.direction = direction
        mapping.table_filter = ""  # every customer: blocked ones too
        if direction != "to_dataverse":
            mapping.integration_table_filter = ""  # every account, whatever its relationship type
        mapping.save()
        # Salespeople and currencies are not what is measured: no lookups through their couplings.
        mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
        return mapping

    def _run(self, mapping, kind, *, batch_size=None, on_progress=None):
        job = self._run_job(mapping, kind, batch_size=batch_size, on_progress=on_progress)
        if job.status not in ("succeeded",):
            raise RuntimeError(f"The run did not succeed: {job.status} {job.message}")
        return job

    def _run_job(self, mapping, kind, *, batch_size=None, on_progress=None):
        """One run through the engine's entry point (what the admin and the RQ task call), finished or not."""
        from jobs.models import SyncJob
        from jobs.services import sync_jobs_create, sync_jobs_run

        if batch_size is not None:
            type(self.dataverse).objects.filter(pk=self.dataverse.pk).update(batch_size=batch_size)
        jobs = sync_jobs_create(mapping=mapping, kind=kind)
        sync_jobs_run(job_ids=[j.pk for j in jobs], on_progress=on_progress)
        if batch_size is not None:
            type(self.dataverse).objects.filter(pk=self.dataverse.pk).update(batch_size=1000)
        return SyncJob.objects.get(pk=jobs[0].pk)

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

    # --- under a cost profile ----------------------------------------------------------------------------------

    def run_costed(self):
        results = {}
        if "E" not in self.skip:
            results["E"] = self.scenario_costed("E", self.e_records, "to_dataverse")
        if "2" not in self.skip:  # `--skip 2` leaves E2 out
            results["E2"] = self.scenario_costed(
                "E2 with 2 app registrations", self.e2_records, "to_dataverse", users=2
            )
        if "F" not in self.skip:
            results["F"] = self.scenario_costed("F", self.f_records, "from_dataverse")
        if "G" not in self.skip:
            e = results.get("E")
            results["G without faults"] = (
                {**e, "label": "G without faults (the run E)"}
                if e is not None and e["records_total"] == self.g_records
                else self.scenario_costed("G without faults", self.g_records, "to_dataverse")
            )
            results["G"] = self.scenario_costed(
                f"G with {self.fault_share:.0%} failing", self.g_records, "to_dataverse", fault_share=self.fault_share
            )
        shared = self.scenario_shared_workers() if "S" not in self.skip else []
        self.report_costed(results)
        self.report_shared(shared)

    def scenario_costed(self, label, records, direction, *, fault_share=0.0, users=1):
        """A full synchronization through the engine while the sandbox runs the cost profile.

        With `users` > 1 the target's connection gets that many app registrations in all (its own and more), each
        with the service's per-user limits, and the concurrency the connection allows grows alike."""
        with self.app_registrations(direction, users):
            return self._scenario_costed(label, records, direction, fault_share=fault_share, users=users)

    @contextmanager
    def app_registrations(self, direction, users):
        from connectors.models import AppRegistration, Connection
        from sandbox import services as sandbox

        if users <= 1:
            yield
            return
        target = self.dataverse if direction == "to_dataverse" else self.bc
        for number in range(2, users + 1):
            secret = uuid.uuid4().hex
            sandbox.register_client(client_id=f"bench-{number}", client_secret=secret)
            registration = AppRegistration(connection=target, client_id=f"bench-{number}")
            registration.set_client_secret(secret)
            registration.save()
        Connection.objects.filter(pk=target.pk).update(max_concurrency=target.max_concurrency * users)
        try:
            yield
        finally:
            AppRegistration.objects.filter(connection=target).delete()
            Connection.objects.filter(pk=target.pk).update(max_concurrency=target.max_concurrency)

    def _scenario_costed(self, label, records, direction, *, fault_share, users):
        from sandbox import costs

        if direction == "to_dataverse":
            self.reset_data(records)
        else:
            self.reset_data(0, accounts=records)
        mapping = self._customer_mapping(direction)
        profile = replace(self.profile, fault_share=fault_share)
        bulk = self.dataverse.batch_size if direction == "to_dataverse" else self.bc.batch_size
        ceiling = costs.ceiling(
            profile, "to_dataverse" if direction == "to_dataverse" else "to_bc", read_page=5000, bulk=bulk, users=users
        )
        costs.store(profile)  # a new generation: fresh windows and queues in the sandbox process

        def work():
            job = self._run_job(mapping, "full")
            return {
                "records": job.inserted,
                "records_total": records,
                "failed": job.failed,
                "status": job.status,
                "requests": job.http_requests,
                "pages": max(1, -(-records // 5000)),
            }

        self.say(f"running {label}: {records:,} records {direction} at time scale {profile.time_scale:g} ...")
        try:
            result = self.measure(label, work)
            stats = costs.stats()
        finally:
            costs.store(None)
        answered = {
            service: sum(n for outcome, n in counts.items() if not outcome.startswith("overran"))
            for service, counts in stats.items()
        }
        refused = {
            service: sum(n for outcome, n in counts.items() if outcome.startswith("refused:"))
            for service, counts in stats.items()
        }
        injected = {
            service: sum(n for outcome, n in counts.items() if outcome.startswith("fault:"))
            for service, counts in stats.items()
        }
        service_seconds = result["seconds"] / profile.time_scale
        rate = result["records"] / service_seconds if service_seconds else 0
        return {
            **result,
            "service_seconds": service_seconds,
            "rate": rate,
            "ceiling": ceiling,
            "answered": sum(answered.values()),
            "refused": sum(refused.values()),
            "injected": sum(injected.values()),
            # Emulation slower than the service time (the machine, not the profile, set the pace), in service time.
            "overran_seconds": sum(c.get("overran_ms", 0) for c in stats.values()) / 1000 / profile.time_scale,
            "stats": stats,
        }

    def report_costed(self, results):
        if not results:
            return
        profile = self.profile
        self.say("")
        self.say(
            f"Cost profile at time scale {profile.time_scale:g} (1 s of service time = {profile.time_scale:g} s of "
            "wall time); rates are records per second of service time, i.e. what a real tenant would see."
        )
        columns = ("records", "wall s", "service s", "rec/s", "ceiling", "share", "throttled", "failed", "engine CPU")
        self.say(f"{'scenario':34} " + " ".join(f"{c:>10}" for c in columns))
        for r in results.values():
            share = r["rate"] / r["ceiling"].records_per_second
            throttled = r["refused"] / r["answered"] if r["answered"] else 0
            cpu = r["cpu_seconds"] / r["seconds"] if r["seconds"] else 0
            self.say(
                f"{r['label']:34} {r['records']:>10,} {r['seconds']:>10.1f} {r['service_seconds']:>10.0f} "
                f"{r['rate']:>10,.0f} {r['ceiling'].records_per_second:>10,.0f} {share:>10.0%} "
                f"{throttled:>10.2%} {r['failed']:>10,} {cpu:>10.0%}"
            )
        for r in results.values():
            bounds = ", ".join(f"{name} {value:,.0f}" for name, value in r["ceiling"].bounds.items())
            self.say(
                f"{r['label']}: ceiling bound by {r['ceiling'].bound_by} ({bounds} records/s); "
                f"{r['requests']:,} requests sent, {r['answered']:,} answered by the sandbox, {r['refused']:,} "
                f"refused for its limits, {r['injected']:,} failed on purpose; the sandbox overran the service "
                f"time by {r['overran_seconds']:,.0f} s in all; job {r['status']}; {r['stats']}"
            )
        if "E" in results and "E2" in results:
            e, e2 = results["E"], results["E2"]
            self.say(
                f"E2: {e2['rate']:,.0f} records/s with 2 app registrations against E's {e['rate']:,.0f} with one "
                f"({e2['rate'] / e['rate'] if e['rate'] else 0:.2f}x; ceiling {e2['ceiling'].records_per_second:,.0f})."
            )
        if "G" in results and "G without faults" in results:
            g, base = results["G"], results["G without faults"]
            ratio = g["rate"] / base["rate"] if base["rate"] else 0
            self.say(
                f"G: {g['rate']:,.0f} records/s with {self.fault_share:.0%} of requests failing against "
                f"{base['rate']:,.0f} without: {ratio:.0%} of the rate, {g['failed']:,} failed records."
            )
        from sandbox import costs

        for direction, label in (("to_dataverse", "BC to Dataverse"), ("to_bc", "Dataverse to BC")):
            ceiling = costs.ceiling(replace(profile, time_scale=1.0), direction)
            self.say(
                f"Ceiling {label}, one integration user: {ceiling.records_per_second:,.0f} records/s, "
                f"100,000 records in about {ceiling.minutes_for(100_000):,.0f} minutes ({ceiling.bound_by})."
            )

    # --- a shared full synchronization with several workers -------------------------------------------------

    def scenario_shared_workers(self):
        results = []
        for workers in self.workers:
            results.append(self.scenario_shared(self.s_records, workers))
        return results

    def scenario_shared(self, records, workers):
        """A full synchronization the bench process coordinates, with `workers - 1` RQ workers helping."""
        import django_rq
        from django.conf import settings

        from jobs.services import QUEUE
        from sandbox import costs

        self.reset_data(records)
        mapping = self._customer_mapping()
        django_rq.get_queue(QUEUE).empty()  # helpers enqueued by earlier runs, whose jobs are over
        settings.SYNC_SHARED_FULL_SYNC_HELPERS = workers - 1
        if self.profile is not None:
            costs.store(self.profile)
        helpers = [
            subprocess.Popen(  # noqa: S603
                [sys.executable, "manage.py", "rqworker", QUEUE, "--worker-class", "rq.SimpleWorker"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers - 1)
        ]
        time.sleep(2 if helpers else 0)  # let the workers connect before the first page is queued

        def work():
            job = self._run(mapping, "full")
            return {"records": job.inserted, "requests": job.http_requests, "pages": max(1, -(-records // 5000))}

        label = f"S shared full sync, {workers} worker{'s' if workers > 1 else ''}"
        self.say(f"running {label} over {records:,} ...")
        try:
            result = self.measure(label, work)
        finally:
            for helper in helpers:
                helper.send_signal(signal.SIGTERM)
            for helper in helpers:
                with suppress(subprocess.TimeoutExpired):
                    helper.wait(timeout=30)
                if helper.poll() is None:
                    helper.kill()
            if self.profile is not None:
                costs.store(None)
        scale = self.profile.time_scale if self.profile is not None else 1.0
        result["rate"] = result["records"] / (result["seconds"] / scale) if result["seconds"] else 0
        result["workers"] = workers
        return result

    def report_shared(self, results):
        if not results:
            return
        where = "under the cost profile, records/s of service time" if self.profile is not None else "on loopback"
        self.say("")
        self.say(f"Shared full synchronization of {self.s_records:,} customers ({where}):")
        base = results[0]["rate"] or 1
        self.say("  " + "   ".join(f"{r['workers']} worker(s): {r['rate']:,.0f} rec/s ({r['rate'] / base:.2f}x)"
                                   for r in results))  # fmt: skip

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds (user and system) so far of this process and of the sandbox's (0 where /proc is missing)."""
        own = os.times()
        sandbox = 0.0
        with suppress(OSError, AttributeError, IndexError, ValueError):
            with open(f"/proc/{self.sandbox_pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            sandbox = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        return own.user + own.system, sandbox

    def say_result(self, result):
        rate = result["records"] / result["seconds"] if result["seconds"] else 0
        per_record = result["requests"] / result["records"] if result["records"] else 0
        line = (
            f"  -> {result['label']}: {result['records']:,} records in {result['seconds']:.2f} s, {rate:,.0f} rec/s, "
            f"{per_record:.4f} requests/record, {result['queries'] / result['pages']:.1f} queries/page, "
            f"peak {result['peak_mb']:.1f} MB, load {result['load'][0]:.1f} -> {result['load'][1]:.1f}, "
            f"CPU s engine {result['cpu'][0]:.2f} + sandbox {result['cpu'][1]:.2f}"
        )
        if result.get("peaks_along_mb"):
            along = ", ".join(f"{mb:.0f}" for mb in result["peaks_along_mb"])
            line += f"; peak so far at 10/25/50/75/100% of pages: {along} MB"
        self.say(line)
        if self.list_queries and result.get("pages"):
            for shape, count in result["query_shapes"].most_common(15):
                self.say(f"       {count / result['pages']:8.2f} per page  {shape}")

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


def _table(schema, service: str, entity_set: str):
    """A table the bench relies on: the sandbox's schema always has it."""
    table = schema.table(service, entity_set)
    assert table is not None, (service, entity_set)
    return table
