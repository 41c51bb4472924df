"""What each class of sync error means, and what to do about it, in plain words (shown on the error page)."""

from __future__ import annotations

from jobs.choices import ErrorClass

# What each class of error means, and what to do about it, in plain words.
EXPLANATIONS: dict[str, tuple[str, str]] = {
    ErrorClass.TRANSIENT: (
        "The other system did not answer in time or had a temporary fault.",
        "Nothing to fix: retry, or let the next scheduled run pick the record up again.",
    ),
    ErrorClass.THROTTLED: (
        "The other system asked us to slow down (too many requests) and kept refusing after our retries.",
        "Retry later, or spread the runs: lengthen the schedule interval or sync fewer mappings at once.",
    ),
    ErrorClass.AUTHENTICATION: (
        "The connection's credentials were refused.",
        "Open Connections, fix the client secret or certificate, use Test connection, then retry.",
    ),
    ErrorClass.PERMISSION: (
        "The integration user may not read or write this table.",
        "Give the application user the missing privilege (security role in Dataverse, permission set in Business "
        "Central), then retry.",
    ),
    ErrorClass.VALIDATION: (
        "The target system refused a value of this record (too long, not allowed, or required but empty).",
        "Correct the value in the source record, or adjust the field mapping (transformation, value map), then retry.",
    ),
    ErrorClass.NOT_FOUND: (
        "The record, or the company, no longer exists in the target system.",
        "If the partner was deleted: restore it or delete the surviving record from the coupled records list.",
    ),
    ErrorClass.CONFLICT: (
        "The record changed in both systems since the last synchronization, and the changed fields differ.",
        "Resolve the conflict: choose per field which system's value wins, and both records get that value.",
    ),
    ErrorClass.DELETION_CONFLICT: (
        "The record is coupled to a record that was deleted in the other system.",
        "Restore the deleted partner, delete the surviving record too, or uncouple them.",
    ),
    ErrorClass.MISSING_DEPENDENCY: (
        "The record refers to another record (a currency, a salesperson) that is not coupled yet.",
        "Couple or synchronize the referenced mapping first (run match-based coupling on it), then retry.",
    ),
    ErrorClass.AMBIGUOUS_MATCH: (
        "The record is not coupled, and its match fields do not single out one record in the other system: several "
        "records match it, or another uncoupled record matches the same one. Nothing was coupled and no new record "
        "was created, so no duplicate was made.",
        "Open the mapping's ambiguous matches and couple it with the right record by a click (or make the match "
        "fields more specific), then synchronize it again.",
    ),
    ErrorClass.INTERNAL: (
        "syncadmin stopped on an unexpected error while handling this record.",
        "Retry once; if it fails again, send the error's detail to your administrator.",
    ),
}
