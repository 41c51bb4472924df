"""A preview (dry run): the plans of a run tallied, with a sample of what would be written, nothing written."""

from __future__ import annotations

from typing import Any

from jobs.choices import ErrorClass
from jobs.engine.deletions import policy_for, safety_stop_holds
from jobs.engine.planner import Action, Plan
from jobs.engine.saver import plan_diffs
from jobs.engine.sides import Side
from mappings.choices import DeletionPolicy, Direction
from mappings.models import TableMapping

PREVIEW_SAMPLE_SIZE = 50


def empty_preview() -> dict[str, Any]:
    # "coupled": records the run would couple by matching (an outcome besides their insert/update/unchanged, as the
    # run's `coupled` counter); "ambiguous": those whose match is shared, counted among "fail" too.
    return {"counts": {}, "sample": [], "merged": {"records": 0, "fields": 0}, "coupled": 0, "ambiguous": 0}


def tally_preview(preview: dict[str, Any], source: Side, plans: list[Plan]) -> None:
    """Add a page's plans to `preview`: counts by action (conflicts apart), and the first changes in detail.

    The counts partition the records read as the real run's counters do, each record once. Fields merged (changed
    on the target side only, so left for the reverse pass) are not an outcome: the record is an update or unchanged
    all the same, so they are tallied apart ("merged": records and fields) and listed apart from the fields written;
    a conflict lists each field with both sides' values.
    """
    merged = preview.setdefault("merged", {"records": 0, "fields": 0})
    for plan in plans:
        # As the real run counts them: conflicts apart from other failures, uncoupled records ignored as skipped.
        if plan.error_class == ErrorClass.CONFLICT:
            key = "conflicts"
        elif plan.action == Action.IGNORE:
            key = Action.SKIP.value
        else:
            key = plan.action.value
        preview["counts"][key] = preview["counts"].get(key, 0) + 1
        if plan.merged:
            merged["records"] += 1
            merged["fields"] += len(plan.merged)
        shown = plan.action in (Action.INSERT, Action.UPDATE, Action.FAIL) or plan.merged
        if shown and len(preview["sample"]) < PREVIEW_SAMPLE_SIZE:
            preview["sample"].append(
                {
                    "action": plan.action.value,
                    "record": source.row_name(plan.source_row),
                    "record_id": str(source.row_id(plan.source_row)),
                    "message": plan.message,
                    "diffs": [
                        {"field": field, "old": _jsonable(old), "new": _jsonable(new)}
                        for field, old, new in plan_diffs(plan)
                        # A failed conflict's diffs are its conflicts, listed apart; an update that holds a
                        # conflict back still writes its other fields.
                        if not plan.conflicts or plan.action == Action.UPDATE
                    ],
                    "merged": list(plan.merged),
                    "conflicts": [
                        {"field": c.field, "source": _jsonable(c.source_value), "target": _jsonable(c.target_value)}
                        for c in plan.conflicts
                    ],
                }
            )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def deletions_preview(mapping: TableMapping, direction: str, found: int, *, retrying: int = 0) -> dict[str, Any]:
    """What the run would do with the `found` coupled source records deleted since the last run (and the `retrying`
    ones found earlier, whose carrying over failed and which the run tries again): the direction's
    policy, its effect in words, and whether the safety stop would hold them (then the run stops before its pages).

    Decided by the run's own rules (`policy_for`, `safety_stop_holds`), without the run's side effects: the real run
    keeps the held ids on its job, a preview must not."""
    held, _coupled = safety_stop_holds(mapping, policy_for(mapping, direction), found)
    side = "bc" if direction == Direction.TO_DATAVERSE else "dataverse"
    label, effect = deletion_effect(mapping, side, found + retrying)
    preview = {"found": found, "policy": label, "effect": effect, "held": held}
    if retrying:
        # Earlier deletions whose carrying over failed: tried again, past the safety stop they went through once.
        preview["retrying"] = retrying
    return preview


def preview_deletion_counts(preview: dict[str, Any], deletions: dict[str, Any]) -> None:
    """The run's counters for the deletions it would handle, as DeletionPass counts them: each is a record read with
    one outcome, `uncouple` under the uncouple policy, else `delete`. (A record another mapping still couples is only
    uncoupled by the run, and a deletion already reported is not counted again: a preview does not look that far.)"""
    found = deletions["found"] + deletions.get("retrying", 0)
    if not found or deletions["held"]:
        return
    counts = preview["counts"]
    outcome = "uncouple" if deletions["policy"] == DeletionPolicy.UNCOUPLE.label else "delete"
    counts[outcome] = counts.get(outcome, 0) + found


SYSTEM_LABEL = {"bc": "Business Central", "dataverse": "Dataverse"}
OTHER_SYSTEM = {"bc": "dataverse", "dataverse": "bc"}


def deletion_effect(mapping: TableMapping, gone_in: str, records: int) -> tuple[str, str]:
    """The deletion policy for records deleted in `gone_in` ("bc" / "dataverse"), and what it does to `records` of
    them, in words (jobs/engine/deletions.py carries it out). Previews and confirmation pages say it alike."""
    policy = DeletionPolicy(mapping.deletions_to_dataverse if gone_in == "bc" else mapping.deletions_from_dataverse)
    gone, other = SYSTEM_LABEL[gone_in], SYSTEM_LABEL[OTHER_SYSTEM[gone_in]]
    if policy == DeletionPolicy.PROPAGATE:
        effect = f"delete {records} {other} record(s)"
    elif policy == DeletionPolicy.UNCOUPLE:
        effect = f"uncouple {records} pair(s), keeping the {other} record(s)"
    elif policy == DeletionPolicy.RESTORE:
        restores_from_other = mapping.syncs_from_dataverse if gone_in == "bc" else mapping.syncs_to_dataverse
        effect = (
            f"restore {records} {gone} record(s) from {other}"
            if restores_from_other
            else f"nothing: the mapping does not synchronize {other} to {gone}, so {records} error(s) are reported"
        )
    else:
        effect = f"nothing changed: {records} error(s) reported"
    return str(policy.label), effect
