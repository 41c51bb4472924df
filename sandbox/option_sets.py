"""Dataverse choice columns whose options can grow: the options of sandbox/schema.py plus those appended with the
InsertOptionValue action (Microsoft Learn, Web API reference "InsertOptionValue Action").

`POST [org]/api/data/v9.2/InsertOptionValue` with `EntityLogicalName`, `AttributeLogicalName` (a local choice) and
`Label` (`{"LocalizedLabels": [{"Label": "...", "LanguageCode": 1033}]}`), optionally `Value`; it answers
`{"NewOptionValue": n}`. Without a value, the next one of the publisher's option value prefix is taken (100000000 and
up for the default publisher's prefix 10000).
"""

from __future__ import annotations

from sandbox import rows, schema
from sandbox.models import DvOptionValue
from sandbox.wire import ApiError, Req, Resp, json_resp

FIRST_CUSTOM_VALUE = 100_000_000


def options(table: schema.Table, column: schema.Column) -> dict[int, str]:
    """Value -> label of a choice column, appended options included."""
    found = dict(column.options)
    appended = DvOptionValue.objects.using(rows.DB).filter(entity=table.logical_name, attribute=column.name)
    found.update(appended.values_list("value", "label"))
    return found


def is_option(table: schema.Table, column: schema.Column, value: int) -> bool:
    """Whether `value` is an option of a choice column. The schema's own options are answered without a query: this
    runs for every choice value of every record written, and a query each made the sandbox spend more than half
    of a bulk insert's time here (py-spy, `manage.py bench`)."""
    if value in dict(column.options):
        return True
    return (
        DvOptionValue.objects.using(rows.DB)
        .filter(entity=table.logical_name, attribute=column.name, value=value)
        .exists()
    )


def insert_option_value(req: Req) -> Resp:
    if req.method != "POST":
        raise ApiError(405, "0x80060888", "The requested HTTP method is not allowed on this resource.")
    body = req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "0x80060888", "The request body must be a JSON object.")
    if body.get("OptionSetName"):
        raise ApiError(400, "0x80040203", "Global option sets are not emulated: name the entity and attribute.")
    table = schema.DATAVERSE_BY_LOGICAL.get(str(body.get("EntityLogicalName") or ""))
    column = table.column(str(body.get("AttributeLogicalName") or "")) if table else None
    if table is None or column is None:
        raise ApiError(
            404,
            "0x80040217",
            f"Could not find an attribute {body.get('AttributeLogicalName')!r} of entity "
            f"{body.get('EntityLogicalName')!r}.",
        )
    if column.kind != "choice" or column.name in ("statecode", "statuscode"):
        raise ApiError(400, "0x80040203", f"The attribute {column.name} is not a picklist: options cannot be inserted.")
    label = _label(body.get("Label"))
    current = options(table, column)
    if label.lower() in (text.lower() for text in current.values()):
        raise ApiError(400, "0x80044157", f"An option with the label '{label}' already exists in {column.name}.")
    value = body.get("Value")
    if value is None:
        value = max([v for v in current if v >= FIRST_CUSTOM_VALUE], default=FIRST_CUSTOM_VALUE - 1) + 1
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "0x80060888", f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.")
    elif value in current:
        raise ApiError(400, "0x80044157", f"The value {value} is already used by an option of {column.name}.")
    DvOptionValue.objects.using(rows.DB).create(
        entity=table.logical_name, attribute=column.name, value=value, label=label
    )
    context = f"{req.base_url}$metadata#Microsoft.Dynamics.CRM.InsertOptionValueResponse"
    return json_resp(200, {"@odata.context": context, "NewOptionValue": value})


def _label(raw) -> str:
    localized = raw.get("LocalizedLabels") if isinstance(raw, dict) else None
    texts = [item.get("Label") for item in localized or [] if isinstance(item, dict)]
    text = next((t for t in texts if isinstance(t, str) and t.strip()), None)
    if text is None:
        raise ApiError(
            400, "0x80060888", 'Label is required: {"LocalizedLabels": [{"Label": ..., "LanguageCode": 1033}]}.'
        )
    return text.strip()
