"""manage.py import_mappings FILE: check a configuration file, show the differences, then apply them all at once."""

import os
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mappings.companies import CompanyRequired, company_named
from mappings.importing import MAX_IMPORT_BYTES, import_document_parse, import_size_check
from mappings.metadata import MetadataCache
from mappings.services import ImportRefused, configuration_import


class Command(BaseCommand):
    help = (
        "Import a mapping configuration made by export_mappings: the whole file is checked first (shape, references, "
        "dependency cycles, field rules, names against the connections' metadata), the differences are printed, "
        "then applied in one transaction. A refused file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON file to import ('-' for standard input).")
        parser.add_argument("--dry-run", action="store_true", help="Only check the file and show the differences.")
        parser.add_argument(
            "--keep-missing", action="store_true", help="Keep mappings that are not in the file (default: delete them)."
        )
        parser.add_argument("--user", help="Username to record as the one who imported.")
        parser.add_argument("--company", help="Whose mappings the file replaces (Business Central connection name).")

    def handle(self, *args, file, dry_run=False, keep_missing=False, user=None, company=None, **options):
        data = self._read(file)
        account = None
        if user:
            account = get_user_model().objects.filter(username=user).first()
            if account is None:
                raise CommandError(f"No user {user!r}.")
        metadata, warnings = MetadataCache(), []
        try:
            diffs = configuration_import(
                data=data,
                user=account,
                actor="" if account else "manage.py import_mappings",
                dry_run=dry_run,
                delete_missing=not keep_missing,
                metadata=metadata,
                warnings=warnings,
                company=company_named(company),
            )
        except ImportRefused as exc:
            raise CommandError(str(exc)) from None
        except CompanyRequired as exc:
            raise CommandError(f"{exc} Give it with --company.") from None
        finally:
            metadata.close()
        for warning in warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        for diff in diffs:
            if diff.changed:
                self.stdout.write(str(diff))
        changed = [d.name for d in diffs if d.changed]
        if not changed:
            self.stdout.write("Nothing to change: the configuration already matches the file.")
        elif dry_run:
            self.stdout.write(f"Dry run: would change {', '.join(changed)}. Nothing was changed.")
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported: {', '.join(changed)}."))

    @staticmethod
    def _read(file):
        try:
            if file == "-":
                text = sys.stdin.buffer.read(MAX_IMPORT_BYTES + 1)  # enough to refuse it, whatever its size
            else:
                import_size_check(os.path.getsize(file))
                with open(file, "rb") as handle:
                    text = handle.read()
            return import_document_parse(text)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        except ImportRefused as exc:
            raise CommandError(f"{file}: {exc.problems[0]} Nothing was changed.") from None
