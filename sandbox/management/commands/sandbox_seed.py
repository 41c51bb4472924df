"""Fill the sandbox with realistic demo data (Faker). Running it again adds nothing."""

from django.core.management.base import BaseCommand

from sandbox import services


class Command(BaseCommand):
    help = "Seed the emulated Business Central and Dataverse with demo data (idempotent; --reset empties first)."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=300, help="Business Central customers (default 300)")
        parser.add_argument("--accounts", type=int, default=250, help="Dataverse accounts (default 250)")
        parser.add_argument("--shared", type=int, default=60, help="companies present on both sides (default 60)")
        parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
        parser.add_argument("--reset", action="store_true", help="empty the emulated tables first")

    def handle(self, *args, **options):
        counts = services.seed_demo(
            customers=options["customers"],
            accounts=options["accounts"],
            shared=options["shared"],
            seed=options["seed"],
            reset=options["reset"],
        )
        for table, added in counts.items():
            self.stdout.write(f"{table}: {added} added")
