"""Create a company's default mappings, or reset them to the defaults, from the command line."""

from django.core.management.base import BaseCommand, CommandError

from mappings.companies import CompanyRequired, company_named
from mappings.defaults import DEFAULT_NAMES, create_default_mappings
from mappings.services import table_mapping_reset_to_defaults


class Command(BaseCommand):
    help = (
        "Create the default table mappings of a Business Central company that are missing (each company has its own), "
        "or with --reset put them back to the default configuration (couplings are kept)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="The company's Business Central connection name.")
        parser.add_argument("--reset", action="store_true", help="Reset existing defaults to their configuration.")
        parser.add_argument(
            "names", nargs="*", help=f"With --reset: which ones (default all: {', '.join(DEFAULT_NAMES)})."
        )

    def handle(self, *args, **options):
        try:
            company = company_named(options["company"])
        except CompanyRequired as exc:
            raise CommandError(str(exc)) from None
        if not options["reset"]:
            if options["names"]:
                raise CommandError("Names select the mappings to reset: add --reset.")
            mappings = create_default_mappings(company=company)
            self.stdout.write(f"{company.name}: default mappings {', '.join(m.name for m in mappings)}.")
            return
        try:
            diffs = table_mapping_reset_to_defaults(
                names=[n.upper() for n in options["names"]] or None, company=company, actor="default_mappings command"
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        changed = [d.name for d in diffs if d.changed]
        self.stdout.write(
            f"{company.name}: " + (f"reset {', '.join(changed)}." if changed else "already the defaults.")
        )
