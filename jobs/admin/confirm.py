"""Bulk actions ask first: what the action will do, with the counts of the last preview, and a button to run it.

The pattern of Django's own "delete selected": the action, posted from the list, renders this page instead of
acting; the page posts the same action again with `confirm=yes` (and the same selection, filters and CSRF token), and
only then does it act. The admin checks the action's permission on both posts; a GET never reaches an action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import timezone

from jobs.engine.sides import run_directions
from jobs.models import SyncJob
from jobs.services import latest_preview, sync_chain
from mappings.choices import Direction
from mappings.models import TableMapping

CONFIRM_FIELD = "confirm"
# A selection this large is carried by "select across" and the list's filters, not one hidden field per row.
MAX_HIDDEN_IDS = 1000


def confirmed(request) -> bool:
    return request.method == "POST" and request.POST.get(CONFIRM_FIELD) == "yes"


@dataclass
class Confirmation:
    title: str
    question: str  # what will happen, in one sentence
    columns: list[str]
    rows: list[list[object]]
    notes: list[str] = field(default_factory=list)
    confirm_label: str = "Yes, run it"


def action_hidden_fields(request, action: str, queryset) -> list[tuple[str, str]]:
    """The fields that post the same action on the same selection again (filters stay in the form's URL)."""
    fields = [("action", action), ("index", "0")]
    if request.POST.get("select_across") == "1":
        return [*fields, ("select_across", "1")]
    selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) or [
        str(pk) for pk in queryset.values_list("pk", flat=True)
    ]
    return fields + [(helpers.ACTION_CHECKBOX_NAME, pk) for pk in selected[:MAX_HIDDEN_IDS]]


def as_action(hidden: list[tuple[str, str]], action: str) -> list[tuple[str, str]]:
    """The same selection posted to another action (the preview of a run)."""
    return [(name, action if name == "action" else value) for name, value in hidden]


def render_confirmation(
    modeladmin,
    request,
    confirmation: Confirmation,
    hidden: list[tuple[str, str]],
    preview_hidden: list[tuple[str, str]] | None = None,
):
    """The page that asks; `hidden` posts the same request again, confirmed; `preview_hidden` previews it instead."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": confirmation.title,
        "confirmation": confirmation,
        "hidden": hidden,
        "preview_hidden": preview_hidden or [],
        "form_url": request.get_full_path(),
        "opts": modeladmin.model._meta,
        "back_url": request.get_full_path(),
    }
    return TemplateResponse(request, "admin/jobs/confirm_action.html", context)


def sync_confirmation(mappings: list[TableMapping], *, kind: str, with_dependencies: bool, label: str) -> Confirmation:
    """A run of these mappings: each job it makes, in order, with what the last preview of it said."""
    rows: list[list[object]] = []
    missing = 0
    for mapping, is_dependency in sync_chain(mappings=mappings, with_dependencies=with_dependencies):
        job_kind = "modified" if is_dependency else kind
        for direction in run_directions(mapping):
            preview = latest_preview(mapping=mapping, direction=direction, kind=job_kind)
            name = mapping.name + (" (dependency, first)" if is_dependency else "")
            rows.append([name, _direction_label(direction), *_preview_cells(preview)])
            missing += preview is None
    notes = []
    if missing:
        notes.append(
            f"{missing} of these jobs have no preview yet: preview first to see what they would insert, update and "
            "fail, then come back to run."
        )
    total_insert = sum(row[2] for row in rows if isinstance(row[2], int))
    question = f"{label}: {len(rows)} job(s), in this order."
    if total_insert:
        question += f" The last previews would insert {total_insert} record(s)."
    return Confirmation(
        title=f"{label}: are you sure?",
        question=question,
        columns=[
            "Mapping",
            "Direction",
            "Would insert",
            "Would update",
            "Would fail",
            "Unchanged",
            "Skipped",
            "Previewed",
        ],
        rows=rows,
        notes=notes,
    )


def _direction_label(direction: str) -> str:
    return str(Direction(direction).label)


def _preview_cells(preview: SyncJob | None) -> list[object]:
    if preview is None:
        return ["?", "?", "?", "?", "?", "no preview yet"]
    counts = preview.preview.get("counts", {})
    when = timezone.localtime(preview.finished_at).strftime("%Y-%m-%d %H:%M %Z") if preview.finished_at else ""
    return [
        counts.get("insert", 0),
        counts.get("update", 0),
        counts.get("fail", 0) + counts.get("conflicts", 0),
        counts.get("unchanged", 0),
        counts.get("skip", 0),
        f"job #{preview.pk}, {when}",
    ]


def uncouple_confirmation(counts: dict[TableMapping, int]) -> Confirmation:
    """Removing couplings: how many of each mapping (the records stay in both systems)."""
    total = sum(counts.values())
    return Confirmation(
        title="Uncouple: are you sure?",
        question=f"Remove {total} coupling(s). The records stay in both systems; a later run treats them as new.",
        columns=["Mapping", "Couplings removed"],
        rows=[[mapping.name, count] for mapping, count in sorted(counts.items(), key=lambda item: item[0].name)],
        confirm_label=f"Yes, uncouple {total}",
    )


def retry_confirmation(errors) -> Confirmation:
    """Retrying errors: the records each mapping and direction synchronizes again (as sync_errors_retry groups them)."""
    records: dict[tuple[str, str], set] = {}
    for name, direction, bc_id, dataverse_id in errors.values_list(
        "table_mapping__name", "direction", "bc_id", "dataverse_id"
    ).order_by():
        source_id = bc_id if direction == Direction.TO_DATAVERSE else dataverse_id
        if source_id and direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE):
            records.setdefault((name, direction), set()).add(source_id)
    total = sum(len(ids) for ids in records.values())
    return Confirmation(
        title="Retry: are you sure?",
        question=f"Synchronize {total} record(s) again now, one job per mapping and direction (their couplings are "
        "un-skipped first).",
        columns=["Mapping", "Direction", "Records synchronized again"],
        rows=[[name, _direction_label(direction), len(ids)] for (name, direction), ids in sorted(records.items())],
        confirm_label=f"Yes, retry {total}",
    )


def match_coupling_confirmation(mappings: list[TableMapping], bc_client, dataverse_client) -> Confirmation:
    """Match-based coupling, previewed: the pairs it would couple now, the ambiguous and the unmatched records, and
    what it would do next (create partners, synchronize the pairs). Reads both systems; writes nothing."""
    from coupling.matching import NoMatchCriteria, match_records

    rows: list[list[object]] = []
    for mapping in mappings:
        try:
            outcome = match_records(mapping=mapping, bc_client=bc_client, dataverse_client=dataverse_client)
        except NoMatchCriteria as exc:
            rows.append([mapping.name, "-", "-", "-", "-", str(exc)])
            continue
        then = []
        if mapping.create_new_if_no_match and outcome.unmatched_bc and mapping.syncs_to_dataverse:
            then.append(f"create {len(outcome.unmatched_bc)} Dataverse row(s) for the unmatched")
        if mapping.sync_after_match_coupling and outcome.pairs:
            then.append(f"synchronize the {len(outcome.pairs)} pair(s)")
        rows.append(
            [
                mapping.name,
                len(outcome.pairs),
                len(outcome.ambiguous),
                len(outcome.unmatched_bc),
                len(outcome.unmatched_dataverse),
                "then " + " and ".join(then) if then else "nothing more",
            ]
        )
    return Confirmation(
        title="Match-based coupling: are you sure?",
        question="Couple the uncoupled records that match uniquely, as found now (nothing is written yet).",
        columns=["Mapping", "Would couple (pairs)", "Ambiguous", "No match in BC", "No match in Dataverse", "Then"],
        rows=rows,
    )
