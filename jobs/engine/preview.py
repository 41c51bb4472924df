"""A preview (dry run): the plans of a run tallied, with a sample of what would be written, nothing written."""

from __future__ import annotations

from typing import Any

from jobs.choices import ErrorClass
from jobs.engine.planner import Action, Plan
from jobs.engine.saver import plan_diffs
from jobs.engine.sides import Side

PREVIEW_SAMPLE_SIZE = 50


def empty_preview() -> dict[str, Any]:
    return {"counts": {}, "sample": []}


def tally_preview(preview: dict[str, Any], source: Side, plans: list[Plan]) -> None:
    """Add a page's plans to `preview`: counts by action (conflicts apart), and the first changes in detail.

    Fields merged (changed on the target side only, so left for the reverse pass) are counted and listed apart
    from the fields written, and a conflict lists each field with both sides' values.
    """
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
            preview["counts"]["merged"] = preview["counts"].get("merged", 0) + 1
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
