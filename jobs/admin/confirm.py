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

from jobs.engine.preview import SYSTEM_LABEL, deletion_effect
from jobs.engine.sides import run_directions
from jobs.models import SyncJob
from jobs.reconciliation.services import OrphanSurvivors
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
            # With several companies each has its own CURRENCY: the label names the company, or rows repeat alike.
            name = mapping.label + (" (dependency, first)" if is_dependency else "")
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
            "Deletions (policy)",
            "Previewed",
        ],
        rows=rows,
        notes=notes,
    )


def _direction_label(direction: str) -> str:
    return str(Direction(direction).label)


def _preview_cells(preview: SyncJob | None) -> list[object]:
    if preview is None:
        return ["?", "?", "?", "?", "?", "?", "no preview yet"]
    counts = preview.preview.get("counts", {})
    when = timezone.localtime(preview.finished_at).strftime("%Y-%m-%d %H:%M %Z") if preview.finished_at else ""
    return [
        counts.get("insert", 0),
        counts.get("update", 0),
        counts.get("fail", 0) + counts.get("conflicts", 0),
        counts.get("unchanged", 0),
        counts.get("skip", 0),
        _deletions_cell(preview.preview.get("deletions")),
        f"job #{preview.pk}, {when}",
    ]


def _deletions_cell(deletions: dict | None) -> str:
    """The deletions a previewed run would handle, and what its policy does to them (or that the safety stop holds)."""
    if not deletions or not deletions.get("found"):
        return "0"
    if deletions.get("held"):
        return f"{deletions['found']}: held by the safety stop, the run would stop"
    return f"{deletions['found']}: {deletions['effect']}"


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


# -- deletions: a reconciliation's orphans, and the deletions held by the safety stop ------------------------------


def orphan_survivors_confirmation(found: list[tuple[TableMapping, OrphanSurvivors]]) -> Confirmation:
    """Applying the deletion policy to reconciliations' orphans: per mapping and system, how many records were
    deleted there and what the policy does to their partners."""
    rows: list[list[object]] = []
    for mapping, survivors in found:
        for gone_in, ids in survivors.gone_in.items():
            if ids:
                policy, effect = deletion_effect(mapping, gone_in, len(ids))
                rows.append([mapping.name, f"{SYSTEM_LABEL[gone_in]} record deleted", policy, len(ids), effect])
        if survivors.both_gone:
            both = len(survivors.both_gone)
            rows.append([mapping.name, "deleted in both systems", "-", both, f"uncouple {both} pair(s)"])
    total = sum(int(row[3]) for row in rows)  # type: ignore[call-overload]
    return Confirmation(
        title="Apply the deletion policy: are you sure?",
        question=f"Handle {total} orphan coupling(s) per the mapping's deletion policy, as below. The jobs check once "
        "more that each record is still gone before they act.",
        columns=["Mapping", "Found", "Deletion policy", "Records", "What happens"],
        rows=rows,
        confirm_label=f"Yes, handle {total}",
    )


def drift_confirmation(found: list[tuple[TableMapping, dict[str, list[str]]]]) -> Confirmation:
    """Resynchronizing drifted pairs: how many per mapping and direction (one selected-records job each)."""
    rows: list[list[object]] = [
        [mapping.name, _direction_label(direction), len(ids)]
        for mapping, by_direction in found
        for direction, ids in sorted(by_direction.items())
    ]
    total = sum(int(row[2]) for row in rows)  # type: ignore[call-overload]
    return Confirmation(
        title="Synchronize the drifted pairs again: are you sure?",
        question=f"Synchronize {total} drifted pair(s) again, overwriting the other side's differing fields with the "
        "source's values (one job per mapping and direction).",
        columns=["Mapping", "Direction", "Pairs synchronized again"],
        rows=rows,
        confirm_label=f"Yes, synchronize {total}",
    )


def held_deletions_confirmation(jobs: list[SyncJob]) -> Confirmation:
    """Confirming the deletions the safety stop held: per job, how many records were deleted in its source and what
    the deletion policy does to their partners, past the safety stop."""
    rows: list[list[object]] = []
    for job in jobs:
        gone_in = "bc" if job.direction == Direction.TO_DATAVERSE else "dataverse"
        policy, effect = deletion_effect(job.table_mapping, gone_in, len(job.held_deletions))
        rows.append(
            [
                f"#{job.pk}",
                job.table_mapping.name,
                _direction_label(job.direction),
                policy,
                len(job.held_deletions),
                effect,
            ]
        )
    total = sum(len(job.held_deletions) for job in jobs)
    return Confirmation(
        title="Confirm the held deletions: are you sure?",
        question=f"The safety stop held {total} record(s) deleted in their system. Confirming carries out the deletion "
        "policy for them past the safety stop, as below; the job checks once more that each is still gone.",
        columns=["Job", "Mapping", "Direction", "Deletion policy", "Records deleted", "What happens"],
        rows=rows,
        confirm_label=f"Yes, confirm {total}",
    )
