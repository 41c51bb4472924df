"""Benchmark the sandbox: 5,000-row page reads from 100,000-row tables, UpsertMultiple and BC $batch throughput."""

from django.core.management.base import BaseCommand

from sandbox import bench


class Command(BaseCommand):
    help = "Time the emulated APIs over in-process HTTP on a throwaway SQLite database and print the figures."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=100_000, help="rows per table (default 100,000)")
        parser.add_argument("--pages", type=int, default=20, help="5,000-row pages to read per table (default 20)")

    def handle(self, *args, **options):
        bench.run(rows_per_table=options["rows"], pages=options["pages"], out=self.stdout.write)
