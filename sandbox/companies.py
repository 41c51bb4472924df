"""Business Central companies: the lookup every company-scoped URL (entities, subscription resources) starts with."""

from __future__ import annotations

import re

from sandbox import rows
from sandbox.models import Company
from sandbox.wire import ApiError

GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def guid(value: str, what: str) -> str:
    """The lower-cased GUID, or Business Central's 400 for a malformed one."""
    if not re.fullmatch(GUID, value or ""):
        raise ApiError(
            400, "BadRequest_NotFound", f"Bad Request - Error in query syntax. '{value}' is not a valid {what}."
        )
    return value.lower()


def company(cid: str) -> Company:
    cid = guid(cid, "company id")
    found = Company.objects.using(rows.DB).filter(rid=cid).first()
    if found is None:
        raise ApiError(404, "Internal_CompanyNotFound", f"The company with id '{cid}' does not exist.")
    return found


def named(name_or_id: str) -> Company:
    """The company a `Company` header names: by name, as Microsoft's examples do, or by id."""
    if re.fullmatch(GUID, name_or_id.strip()):
        return company(name_or_id.strip())
    found = Company.objects.using(rows.DB).filter(name=name_or_id).first()
    if found is None:
        raise ApiError(404, "Internal_CompanyNotFound", f"The company '{name_or_id}' does not exist.")
    return found
