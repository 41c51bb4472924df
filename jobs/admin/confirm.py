"""Bulk actions ask first: what the action will do, with a preview's counts, and a button to run it.

The pattern of Django's own "delete selected": the action, posted from the list, renders this page instead of
acting; the page posts the same action again with `confirm=yes` (and the same selection, filters and CSRF token), and
only then does it act. The admin checks the action's permission on both posts; a GET never reaches an action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.contrib.admin import helpers
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse

from jobs.choices import JobStatus
from jobs.engine.preview import SYSTEM_LABEL, deletion_effect
from jobs.models import SyncJob
from jobs.reconciliation.services import OrphanSurvivors
from jobs.services import sync_previews_outdated, sync_previews_start
from mappings.choices import Direction
from mappings.models import TableMapping

CONFIRM_FIELD = "confirm"
# "Preview again" asks for new previews; opening the page again shows the ones that still hold.
PREVIEW_AGAIN_FIELD = "preview_again"
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
    # A run's own previews, made for this page: their counts are shown live and Confirm waits for them.
    previews: list[SyncJob] = field(default_factory=list)
    dependency_ids: set[int] = field(default_factory=set)
    refused: str = ""  # why the confirmed run was not run (its previews no longer held)


def action_hidden_fields(request, action: str, queryset) -> list[tuple[str, str]]:
    """The fields that post the same action on the same selection again (filters stay in the form's URL)."""
    fields = [("action", action), ("index", "0")]
    if request.POST.get("select_across") == "1":
        return [*fields, ("select_across", "1")]
    selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) or [
        str(pk) for pk in queryset.values_list("pk", flat=True)
    ]
    return fields + [(helpers.ACTION_CHECKBOX_NAME, pk) for pk in selected[:MAX_HIDDEN_IDS]]


def render_confirmation(
    modeladmin,
    request,
    confirmation: Confirmation,
    hidden: list[tuple[str, str]],
    preview_hidden: list[tuple[str, str]] | None = None,
):
    """The page that asks; `hidden` posts the same request again, confirmed; `preview_hidden` previews it instead.

    A confirmation with previews shows them live (the fragment polls until they finish) with Confirm inside it,
    enabled once they all succeeded; "Preview again" posts the same request unconfirmed, which previews anew."""
    previews_html = ""
    if confirmation.previews:
        previews_html = previews_fragment(request, confirmation.previews, confirmation.dependency_ids)
        preview_hidden = [*hidden, (PREVIEW_AGAIN_FIELD, "yes")]
        hidden = with_previews(hidden, confirmation)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": confirmation.title,
        "confirmation": confirmation,
        "previews_html": previews_html,
        "hidden": hidden,
        "preview_hidden": preview_hidden or [],
        "form_url": request.get_full_path(),
        "opts": modeladmin.model._meta,
        "back_url": request.get_full_path(),
    }
    return TemplateResponse(request, "admin/jobs/confirm_action.html", context)


PREVIEWS_FIELD = "previews"


def sync_confirmation(
    mappings: list[TableMapping],
    *,
    kind: str,
    with_dependencies: bool,
    label: str,
    user=None,
    outdated: str = "",
    again: bool = False,
) -> Confirmation:
    """A run of these mappings: the jobs it makes, in order, each previewed now for this page (the run's own jobs as a
    dry run). The page shows their counts as they finish; Confirm is enabled once all have, and the confirmed run is
    refused if the previews no longer hold (jobs.services.sync_previews_outdated): then `outdated` says why, and
    this page previews again. Opened again, the page shows the same previews while they run or hold (`again`: the
    user asked for new ones)."""
    previews, _ = sync_previews_start(
        mappings=mappings, kind=kind, with_dependencies=with_dependencies, user=user, again=again
    )
    chosen = {m.pk for m in mappings}
    return Confirmation(
        title=f"{label}: are you sure?",
        question=f"{label}: {len(previews)} job(s), in this order. Each is previewed now (nothing is written); the "
        "run does what the previews count, and is refused if anything changes before you confirm.",
        columns=PREVIEW_COLUMNS,
        rows=[],
        refused=f"Not run: {outdated} Previewed again below; confirm once its counts are in." if outdated else "",
        previews=previews,
        dependency_ids={p.pk for p in previews if p.table_mapping_id not in chosen},
    )


def previews_fragment(request, previews: list[SyncJob], dependency_ids: set[int]) -> str:
    """The previews' table and the Confirm button (of the page's confirm form), polled while any preview runs."""
    finished = [p for p in previews if p.status not in (JobStatus.QUEUED, JobStatus.RUNNING)]
    failed = [p for p in finished if p.status != JobStatus.SUCCEEDED]
    query = urlencode(
        {"ids": ",".join(str(p.pk) for p in previews), "dependencies": ",".join(str(i) for i in dependency_ids)}
    )
    context = {
        "columns": PREVIEW_COLUMNS,
        "rows": preview_rows(previews, dependency_ids),
        "done": len(finished),
        "total": len(previews),
        "failed": failed,
        "ready": len(finished) == len(previews) and not failed,
        "poll_url": reverse("admin:jobs_syncjob_previews") + "?" + query,
    }
    return render_to_string("admin/jobs/confirm_previews.html", context, request=request)


def ask_before_sync(
    modeladmin,
    request,
    mappings: list[TableMapping],
    *,
    kind: str,
    with_dependencies: bool,
    label: str,
    hidden,
    notes: list[str] | None = None,
):
    """The confirmation page of a run of `mappings`, previewed for it; None when the post is confirmed and its
    previews still hold, so the caller runs it (the same jobs as the previews)."""
    outdated = ""
    if confirmed(request):
        outdated = sync_previews_outdated(
            preview_ids=posted_previews(request), mappings=mappings, kind=kind, with_dependencies=with_dependencies
        )
        if not outdated:
            return None
    confirmation = sync_confirmation(
        mappings,
        kind=kind,
        with_dependencies=with_dependencies,
        label=label,
        user=request.user,
        outdated=outdated,
        again=request.POST.get(PREVIEW_AGAIN_FIELD) == "yes",
    )
    confirmation.notes += notes or []
    return render_confirmation(modeladmin, request, confirmation, hidden)


def posted_previews(request) -> list[int]:
    """The preview jobs a confirmation page showed, as its confirmed post carries them."""
    value = request.POST.get(PREVIEWS_FIELD, "")
    return [int(i) for i in value.split(",") if i.isdigit()]


def with_previews(hidden: list[tuple[str, str]], confirmation: Confirmation) -> list[tuple[str, str]]:
    """The confirmed post's fields, naming the previews the page showed (the run checks they still hold)."""
    return [*hidden, (PREVIEWS_FIELD, ",".join(str(p.pk) for p in confirmation.previews))]


PREVIEW_COLUMNS = [
    "Mapping",
    "Direction",
    "Would insert",
    "Would update",
    "Would fail",
    "Unchanged",
    "Skipped",
    "Would couple",
    "Deletions (policy)",
    "Preview",
]


def preview_rows(previews: list[SyncJob], dependency_ids: set[int]) -> list[list[object]]:
    """One row per preview job: what it counts so far (final once finished), and where it stands."""
    rows = []
    for preview in previews:
        # With several companies each has its own CURRENCY: the label names the company, or rows repeat alike.
        name = preview.table_mapping.label + (" (dependency, first)" if preview.pk in dependency_ids else "")
        rows.append([name, _direction_label(preview.direction), *_preview_cells(preview)])
    return rows


def _direction_label(direction: str) -> str:
    return str(Direction(direction).label)


def _preview_cells(preview: SyncJob) -> list[object]:
    if preview.status == JobStatus.QUEUED:
        return [*["…"] * 7, f"job #{preview.pk}: queued"]
    counts = (preview.preview or {}).get("counts", {})
    if preview.status == JobStatus.RUNNING:
        state = f"job #{preview.pk}: running, {preview.records_read} record(s) read"
    else:
        state = f"job #{preview.pk}: {preview.get_status_display().lower()}"
    return [
        counts.get("insert", 0),
        counts.get("update", 0),
        counts.get("fail", 0) + counts.get("conflicts", 0),
        counts.get("unchanged", 0),
        counts.get("skip", 0),
        (preview.preview or {}).get("coupled", 0),
        _deletions_cell((preview.preview or {}).get("deletions")),
        state,
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
