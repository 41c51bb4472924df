"""manage.py export_mappings [--output FILE] [--company NAME]: write a company's mapping configuration as JSON."""

import json

from django.core.management.base import BaseCommand, CommandError

from mappings.companies import CompanyRequired, company_named
from mappings.services import configuration_export


class Command(BaseCommand):
    help = "Export every table mapping with its field mappings as JSON (format: mappings/EXPORT_FORMAT.md)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="File to write; standard output when left out.")
        parser.add_argument("--company", help="Whose mappings (Business Central connection name); needed with several.")

    def handle(self, *args, output=None, company=None, **options):
        try:
            document = configuration_export(company_named(company))
        except CompanyRequired as exc:
            raise CommandError(f"{exc} Give it with --company.") from None
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as file:
                file.write(text)
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text, ending="")
