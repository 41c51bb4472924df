"""Changes to the mapping configuration as a whole: reset to the defaults, export and import.

Each service returns the differences (mappings.diff.MappingDiff) it applied, or would apply with `dry_run=True`,
so the admin can show them and ask to confirm first. Both apply atomically and record who changed what
(MappingChange, plus LogEntry rows on the mappings when a user did it).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import transaction
from django.db.models import Q

from mappings.companies import company_scope
from mappings.defaults import DEFAULT_MAPPINGS, DEFAULT_NAMES
from mappings.diff import MappingDiff, mapping_diff
from mappings.importing import FORMAT, SUPPORTED_VERSIONS, ImportRefused, check_import_file
from mappings.metadata import MetadataCache
from mappings.models import FieldMapping, MappingChange, TableMapping
from mappings.serialization import save_table_dicts, table_mapping_to_dict

EXPORT_FORMAT = FORMAT
EXPORT_VERSION = SUPPORTED_VERSIONS[-1]

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ImportRefused",
    "configuration_export",
    "configuration_import",
    "table_mapping_reset_to_defaults",
]


def mappings_sharing_tables(
    data: dict[str, Any], *, company=None, exclude_pk: int | None = None
) -> list[dict[str, Any]]:
    """The other mappings of the company that synchronize the same Business Central or Dataverse table as `data`, as
    plain data (each company shares out its own records)."""
    found = TableMapping.objects.filter(
        Q(bc_entity_set=data.get("bc_entity_set") or "")
        | Q(dataverse_entity_set=data.get("dataverse_entity_set") or ""),
        company=company,
    )
    if exclude_pk is not None:
        found = found.exclude(pk=exclude_pk)
    keys = ("name", "bc_entity_set", "dataverse_entity_set", "table_filter", "integration_table_filter")
    return list(found.values(*keys, "record_priority"))


def configuration_snapshot(company=None) -> dict[str, dict[str, Any]]:
    """Return the configuration of a company's table mappings in plain-data form, by name (see company_scope)."""
    scope, _ = company_scope(company)
    mappings = scope.prefetch_related("dependencies").order_by("name")
    return {tm.name: table_mapping_to_dict(tm) for tm in mappings}


def table_mapping_reset_to_defaults(
    *, names: list[str] | None = None, user=None, actor: str = "", dry_run: bool = False, company=None
) -> list[MappingDiff]:
    """Reset the named default mappings of a company (all five when `names` is None) to their default configuration.

    A mapping is reset in place, so its couplings, watermarks and sync history stay; a default that was deleted (or
    that the company never had) is created, for that company. Returns the differences per mapping; with `dry_run`
    nothing is changed. `company` is the Business Central connection; without it, the one company with mappings.
    """
    _, company = company_scope(company)
    names = list(DEFAULT_NAMES) if names is None else list(names)
    unknown = [name for name in names if name not in DEFAULT_NAMES]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a default mapping; "
            f"the defaults are {', '.join(DEFAULT_NAMES)}."
        )
    targets = [spec for spec in DEFAULT_MAPPINGS if spec["name"] in names]
    with transaction.atomic():
        current = configuration_snapshot(company)
        diffs = [mapping_diff(current.get(spec["name"]), spec) for spec in targets]
        # A default's dependencies or lookups may name another default the user deleted: bring that one back too.
        needed = {dep for spec in targets for dep in spec["dependencies"]} | {
            f["lookup_mapping"] for spec in targets for f in spec["field_mappings"] if f["lookup_mapping"]
        }
        for name in sorted(needed - set(current) - set(names)):
            spec = next(s for s in DEFAULT_MAPPINGS if s["name"] == name)
            targets.append(spec)
            diffs.append(mapping_diff(None, spec))
        if dry_run or not any(d.changed for d in diffs):
            return diffs
        save_table_dicts([spec for spec, d in zip(targets, diffs, strict=True) if d.changed], company=company)
        _record(MappingChange.Action.RESET, diffs, user=user, actor=actor, company=company)
    return diffs


def configuration_export(company=None) -> dict[str, Any]:
    """Return a company's mapping configuration as a JSON-ready document (format: mappings/EXPORT_FORMAT.md)."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "table_mappings": list(configuration_snapshot(company).values()),
    }


def configuration_import(
    *,
    data: Any,
    user=None,
    actor: str = "",
    dry_run: bool = False,
    delete_missing: bool = True,
    metadata: MetadataCache | None = None,
    warnings: list[str] | None = None,
    company=None,
) -> list[MappingDiff]:
    """Make the configuration equal to an export document: validate it all first, then apply it all or nothing.

    Mappings in the file are created or updated in place (couplings stay); with `delete_missing`, mappings that are
    not in the file are deleted (with their couplings). Raises ImportRefused, listing every reason, when the file is
    malformed or inconsistent; then nothing changes. Returns the differences; with `dry_run` nothing is changed.
    """
    scope, company = company_scope(company)
    with transaction.atomic():
        current = configuration_snapshot(company)
        targets = check_import_file(
            data, current=current, delete_missing=delete_missing, metadata=metadata, warnings=warnings
        )
        diffs = [mapping_diff(current.get(t["name"]), t) for t in targets]
        doomed = sorted(set(current) - {t["name"] for t in targets}) if delete_missing else []
        diffs += [mapping_diff(current[name], None) for name in doomed]
        if dry_run or not any(d.changed for d in diffs):
            return diffs
        changed = [t for t, d in zip(targets, diffs, strict=False) if d.changed]
        if user is not None:
            _log_deletions(user, scope.filter(name__in=doomed))
        save_table_dicts(changed, company=company)
        # Their field mappings first: a lookup protects the mapping it goes through, which may be doomed too.
        FieldMapping.objects.filter(table_mapping__in=scope.filter(name__in=doomed)).delete()
        scope.filter(name__in=doomed).delete()
        _record(MappingChange.Action.IMPORT, diffs, user=user, actor=actor, company=company)
    return diffs


def _record(action: str, diffs: list[MappingDiff], *, user=None, actor: str = "", company=None) -> MappingChange:
    changed = [d for d in diffs if d.changed]
    change = MappingChange.objects.create(
        action=action,
        user=user,
        actor=actor or ("" if user else "system"),
        mapping_names=", ".join(d.name for d in changed)[:500],
        summary="\n".join(str(d) for d in changed),
        changes=[d.as_dict() for d in changed],
    )
    if user is not None:
        label = MappingChange.Action(action).label
        for diff in changed:
            if diff.action == "delete":
                continue
            mapping = TableMapping.objects.get(name=diff.name, company=company)
            flag = ADDITION if diff.action == "create" else CHANGE
            message = f"{label}: " + "; ".join(diff.changes)
            LogEntry.objects.log_actions(user.pk, [mapping], flag, change_message=message[:4000], single_object=True)
    return change


def _log_deletions(user, doomed) -> None:
    mappings = list(doomed)
    if mappings:
        LogEntry.objects.log_actions(user.pk, mappings, DELETION, change_message="Import: not in the file")
