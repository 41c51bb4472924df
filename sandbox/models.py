"""Storage of the emulated services, in the `sandbox` database alias.

One concrete model per emulated table, built from its description in sandbox/schema.py so that `$filter`,
`$orderby` and keyset paging become indexed SQL. Timestamps are stored as fixed-width ISO strings
(`2024-03-02T07:38:44.293Z`): they sort and compare like the instants they name and need no conversion on the
way out, which keeps a 5,000-row page cheap. GUIDs are stored as canonical lower-case strings for the same reason.
"""

from django.db import models

from sandbox import schema


class EmulatedRow(models.Model):
    rid = models.CharField(max_length=36, primary_key=True)  # the record's id (BC SystemId, Dataverse key)
    created_at = models.CharField(max_length=24)
    modified_at = models.CharField(max_length=24)
    version = models.BigIntegerField(default=1)  # Dataverse versionnumber; BC: write counter
    etag = models.CharField(max_length=80, default="")  # BC's opaque ETag payload

    # The model field holding the record's name (set per table by _build_model): rows read "Sandbox Business
    # Central", not "DvCdmCompany object (5a19…)", in the admin's titles and breadcrumbs.
    name_field = ""

    class Meta:
        abstract = True

    def __str__(self):
        return str((getattr(self, self.name_field, "") if self.name_field else "") or self.rid)


def _field_for(table: schema.Table, column: schema.Column) -> models.Field:
    bc = table.service == "bc"
    kind = column.kind
    if kind in ("text", "code", "phone", "enum", "string"):
        if bc:
            default = (
                " " if (kind == "enum" and " " in column.options) else (column.options[0] if kind == "enum" else "")
            )
            return models.CharField(max_length=column.max_length or 50, default=default, blank=True)
        return models.CharField(max_length=column.max_length or 100, null=True, blank=True)
    if kind == "memo":
        return models.TextField(null=True, blank=True)
    if kind == "guid":
        return (
            models.CharField(max_length=36, default=schema.ZERO_GUID)
            if bc
            else models.CharField(max_length=36, null=True)
        )
    if kind == "lookup":
        return models.CharField(max_length=36, null=True, db_index=True)
    if kind in ("integer", "choice"):
        return models.IntegerField(default=0) if bc else models.IntegerField(null=True)
    if kind in ("decimal", "money"):
        return models.FloatField(default=0) if bc else models.FloatField(null=True)
    if kind == "boolean":
        return models.BooleanField(default=False)
    if kind == "date":
        return models.CharField(max_length=10, default="0001-01-01")
    raise ValueError(f"no storage for {table.entity_set}.{column.name} ({kind})")


def _build_model(table: schema.Table) -> type[models.Model]:
    attrs = {"__module__": __name__}
    name_column = table.column(table.primary_name)
    attrs["name_field"] = table.storage(name_column) if name_column else ""
    for column in table.data_columns:
        attrs[table.storage(column)] = _field_for(table, column)
    indexes = []
    if table.service == "bc":
        attrs["company"] = models.CharField(max_length=36)
        indexes.append(models.Index(fields=["company", "modified_at", "rid"], name=f"{table.model_name.lower()}_mod"))
        # Pages walk this index in key order; without it SQLite sorts the company's whole table for every page.
        indexes.append(models.Index(fields=["company", "rid"], name=f"{table.model_name.lower()}_key"))
        constraints = [
            models.UniqueConstraint(fields=["company", key], name=f"{table.model_name.lower()}_{key.lower()}_uniq")
            for key in table.unique
        ]
    else:
        attrs["created_by"] = models.CharField(max_length=36, null=True)
        attrs["modified_by"] = models.CharField(max_length=36, null=True)
        indexes.append(models.Index(fields=["modified_at", "rid"], name=f"{table.model_name.lower()}_mod"))
        indexes.append(models.Index(fields=["version"], name=f"{table.model_name.lower()}_ver"))
        if table.column(table.primary_name) and table.primary_name != "fullname":
            indexes.append(models.Index(fields=[table.primary_name], name=f"{table.model_name.lower()}_name"))
        constraints = []
        if table.entity_set == "accounts":
            indexes.append(models.Index(fields=["accountnumber"], name="dvaccount_number"))
    system = "Business Central" if table.service == "bc" else "Dataverse"
    attrs["Meta"] = type(
        "Meta",
        (),
        {
            "indexes": indexes,
            "constraints": constraints,
            "db_table": f"sandbox_{table.model_name.lower()}",
            # How the admin lists them: "Dataverse accounts", "Business Central customers".
            "verbose_name": f"{system} {table.logical_name}",
            "verbose_name_plural": f"{system} {table.entity_set}",
        },
    )
    return type(table.model_name, (EmulatedRow,), attrs)


ROW_MODELS: dict[tuple[str, str], type[models.Model]] = {}
for _table in schema.BC_TABLES + schema.DATAVERSE_TABLES:
    ROW_MODELS[(_table.service, _table.entity_set)] = globals()[_table.model_name] = _build_model(_table)


def row_model(table: schema.Table) -> type[models.Model]:
    return ROW_MODELS[(table.service, table.entity_set)]


class Company(models.Model):
    """A Business Central company of the emulated environment."""

    rid = models.CharField(max_length=36, primary_key=True)
    name = models.CharField(max_length=30, unique=True)
    display_name = models.CharField(max_length=250)
    business_profile_id = models.CharField(max_length=250, default="", blank=True)
    system_version = models.CharField(max_length=20, default="26.0.30643.32481")
    modified_at = models.CharField(max_length=24)

    class Meta:
        verbose_name_plural = "companies"

    def __str__(self):
        return self.name


class AppClient(models.Model):
    """An app registration allowed to get tokens (client credentials). Only a hash of the secret is kept."""

    client_id = models.CharField(max_length=100, unique=True)
    secret_hash = models.CharField(max_length=200)
    systemuser_id = models.CharField(max_length=36, default="")  # its Dataverse application user

    def __str__(self):
        return self.client_id


class AccessToken(models.Model):
    token_hash = models.CharField(max_length=64, unique=True)
    client_id = models.CharField(max_length=100)
    service = models.CharField(max_length=20)  # "bc" or "dataverse": the audience it was issued for
    tenant = models.CharField(max_length=100)
    expires_at = models.FloatField()  # epoch seconds


class Counter(models.Model):
    """Monotonic counters: Dataverse's database-wide row version, BC number series."""

    name = models.CharField(max_length=100, unique=True)
    value = models.BigIntegerField(default=0)


class Setting(models.Model):
    """Knobs tests and the admin page turn (token lifetime, page caps, throttling, ...), shared across processes."""

    key = models.CharField(max_length=100, unique=True)
    value = models.JSONField()


class Fault(models.Model):
    """The next `remaining` requests to `service` ("" = any) fail as `kind` (429, 503, timeout, drop, latency)."""

    class Kind(models.TextChoices):
        THROTTLED = "429", "429 Too Many Requests (throttled; the client waits Retry-After)"
        UNAVAILABLE = "503", "503 Service Unavailable (the service is down for a moment)"
        TIMEOUT = "timeout", "Timeout (the answer comes after the client gave up)"
        DROP = "drop", "Dropped connection (closed without an answer)"
        LATENCY = "latency", "Latency (answered correctly, but slowly)"

    class Service(models.TextChoices):
        ANY = "", "Both services"
        BC = "bc", "Business Central"
        DATAVERSE = "dataverse", "Dataverse"

    kind = models.CharField(
        max_length=20, choices=Kind.choices, help_text="How the requests fail; each is a failure the services have."
    )
    service = models.CharField(
        max_length=20, default="", blank=True, choices=Service.choices, help_text="Which emulated service fails."
    )
    remaining = models.IntegerField(
        "requests to fail", help_text="How many of the next requests fail this way; the fault ends after them."
    )
    retry_after = models.IntegerField(
        "Retry-After (s)", default=1, help_text="429 and 503: the seconds the answer tells the client to wait."
    )
    seconds = models.FloatField(
        default=0, help_text="Timeout and latency: how long the answer is held back, in seconds."
    )
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        service = self.get_service_display().lower() if self.service else "both services"
        short = self.get_kind_display().split(" (")[0]
        return f"{short} on {service}, next {self.remaining} request{'s' if self.remaining != 1 else ''}"


class Tombstone(models.Model):
    """A deleted Dataverse row, kept for change tracking (`$deletedEntity`)."""

    entity_set = models.CharField(max_length=50)
    rid = models.CharField(max_length=36)
    version = models.BigIntegerField()
    deleted_at = models.CharField(max_length=24)

    class Meta:
        indexes = [models.Index(fields=["entity_set", "version"], name="tombstone_ver")]


class RequestLog(models.Model):
    """Requests per client and second, for the sliding-window throttle (written only when throttling is on)."""

    client_id = models.CharField(max_length=100)
    service = models.CharField(max_length=20)
    second = models.BigIntegerField()
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client_id", "service", "second"], name="requestlog_uniq")]


class BcSubscription(models.Model):
    """A Business Central webhook subscription (`api/v2.0/subscriptions`)."""

    subscription_id = models.CharField(max_length=150, unique=True)
    notification_url = models.CharField(max_length=250)
    resource = models.CharField(max_length=250)
    company = models.CharField(max_length=36)
    entity_set = models.CharField(max_length=50)
    client_state = models.CharField(max_length=2048, default="", blank=True)
    user_id = models.CharField(max_length=36, default="")
    expires_at = models.CharField(max_length=24)
    created_at = models.CharField(max_length=24)
    modified_at = models.CharField(max_length=24)
    version = models.IntegerField(default=1)


class DvWebhook(models.Model):
    """A Dataverse webhook service endpoint with its steps (messages on one table), registered by tests or admins."""

    name = models.CharField(max_length=100)
    url = models.CharField(max_length=500)
    entity_set = models.CharField(max_length=50)
    messages = models.JSONField(default=list)  # ["Create", "Update", "Delete"]
    header_name = models.CharField(max_length=100, default="", blank=True)
    header_value = models.CharField(max_length=500, default="", blank=True)


class Notification(models.Model):
    """An outgoing webhook change waiting for delivery (BC coalesces; Dataverse delivers one context per event)."""

    service = models.CharField(max_length=20)
    target = models.CharField(max_length=150)  # BC subscription_id or Dataverse webhook id
    payload = models.JSONField()
    due_at = models.FloatField()  # epoch seconds
    attempts = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["due_at"], name="notification_due")]


class DvServiceEndpoint(models.Model):
    """A Dataverse `serviceendpoint` registered over the Web API (as the Plug-in Registration Tool does).

    Only webhooks (contract 8) are emulated; `authvalue` is kept as sent (for HttpHeader: the settings XML)."""

    rid = models.CharField(max_length=36, primary_key=True)
    name = models.CharField(max_length=256)
    url = models.CharField(max_length=2000)
    contract = models.IntegerField()
    authtype = models.IntegerField()
    authvalue = models.TextField(default="", blank=True)
    created_at = models.CharField(max_length=24)


class DvStep(models.Model):
    """A Dataverse `sdkmessageprocessingstep`: one message (Create, Update, Delete) on one table, handled by an
    endpoint. Each change of that kind to a row of that table is posted to the endpoint's URL."""

    rid = models.CharField(max_length=36, primary_key=True)
    name = models.CharField(max_length=256)
    endpoint = models.ForeignKey(DvServiceEndpoint, on_delete=models.PROTECT, related_name="steps")
    message = models.CharField(max_length=20)
    entity_set = models.CharField(max_length=50)
    mode = models.IntegerField()
    stage = models.IntegerField()
    rank = models.IntegerField(default=1)


class DvOptionValue(models.Model):
    """An option appended to a Dataverse choice column with InsertOptionValue, beyond those of sandbox/schema.py."""

    entity = models.CharField(max_length=100)  # the table's logical name
    attribute = models.CharField(max_length=100)
    value = models.IntegerField()
    label = models.CharField(max_length=250)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entity", "attribute", "value"], name="dvoptionvalue_uniq"),
        ]
