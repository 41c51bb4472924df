"""manage.py export_mappings [--output FILE]: write the whole mapping configuration as JSON."""

import json

from django.core.management.base import BaseCommand

from mappings.services import configuration_export


class Command(BaseCommand):
    help = "Export every table mapping with its field mappings as JSON (format: mappings/EXPORT_FORMAT.md)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="File to write; standard output when left out.")

    def handle(self, *args, output=None, **options):
        text = json.dumps(configuration_export(), indent=2, ensure_ascii=False) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as file:
                file.write(text)
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text, ending="")
