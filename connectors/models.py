from django.core.exceptions import ValidationError
from django.db import models

from connectors.choices import ConnectionKind
from connectors.secrets import decrypt_secret, encrypt_secret, read_secret_reference

ENTRA_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105 (a URL)


# What each service accepts, as Microsoft documents it (protocols.md): a value outside is refused when the connection
# is saved, not at the first run.
# - Dataverse: pages of at most 5,000 rows ("Page results", 1.5); CreateMultiple/UpsertMultiple and $batch of at most
#   1,000 (1.12); 52 concurrent requests per user (service protection limits, 1.15).
# - Business Central: pages of at most 20,000 entities, $batch of at most 100 operations, 5 concurrent requests per user
#   (API limits, "Operational limits for Business Central online", 2.9).
SERVICE_LIMITS: dict[str, dict[str, int]] = {
    ConnectionKind.DATAVERSE: {"page_size": 5000, "batch_size": 1000, "max_concurrency": 52},
    ConnectionKind.BUSINESS_CENTRAL: {"page_size": 20000, "batch_size": 100, "max_concurrency": 5},
}
# Business Central cancels an operation after 8 minutes and its gateway gives up after 10: waiting longer finds nothing.
MAX_TIMEOUT_SECONDS = 600


class ConnectionQuerySet(models.QuerySet["Connection"]):
    def active(self, kind: str) -> "Connection":
        """Return the one enabled connection of this kind, with a message that says what to fix otherwise."""
        connections = list(self.filter(kind=kind, enabled=True)[:2])
        label = ConnectionKind(kind).label
        if not connections:
            raise Connection.DoesNotExist(f"No enabled {label} connection: add one under Connections.")
        if len(connections) > 1:
            raise Connection.MultipleObjectsReturned(f"More than one enabled {label} connection: disable all but one.")
        return connections[0]


class Connection(models.Model):
    """How to reach one Business Central environment/company or one Dataverse environment.

    The client secret is stored encrypted (see connectors.secrets) and is never shown back.
    """

    kind = models.CharField(max_length=20, choices=ConnectionKind.choices)
    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    environment_url = models.URLField(
        max_length=300,
        help_text="Business Central: https://api.businesscentral.dynamics.com; "
        "Dataverse: https://yourorg.crm.dynamics.com",
    )
    tenant = models.CharField(max_length=100, help_text="Entra tenant id (GUID) or verified domain.")
    bc_environment = models.CharField("Business Central environment", max_length=100, blank=True)
    bc_company_id = models.UUIDField("Business Central company id", null=True, blank=True)
    dataverse_company_id = models.UUIDField(
        "company row in Dataverse",
        null=True,
        blank=True,
        editable=False,
        help_text="Business Central connections: the company's cdm_companies row, found or created at the first run.",
    )
    client_id = models.CharField(max_length=100)
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    client_secret_reference = models.CharField(
        max_length=300,
        blank=True,
        help_text="Instead of storing the secret here: env:VARIABLE_NAME or file:/path/to/secret (read at each run).",
    )
    token_url = models.URLField(
        max_length=300, blank=True, help_text="Leave blank for Microsoft Entra ID (login.microsoftonline.com)."
    )
    scope = models.CharField(max_length=300, blank=True, help_text="Leave blank for the service's default scope.")
    page_size = models.PositiveIntegerField(default=5000)
    batch_size = models.PositiveIntegerField(default=100)
    timeout_seconds = models.PositiveIntegerField(default=60)
    max_concurrency = models.PositiveIntegerField(
        default=4,
        help_text="Most requests in flight at once for this connection (the writer sends a page's bulk requests in "
        "parallel). Dataverse's x-ms-dop-hint and Business Central's 5 per user (times the app registrations) cap it; "
        "it halves on throttling and grows back. 1 sends one request at a time.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def __repr__(self) -> str:
        # Never let a secret reach a log line through repr().
        return f"<Connection {self.pk} {self.kind} {self.name!r}>"

    def clean(self) -> None:
        limits = {**SERVICE_LIMITS.get(self.kind, {}), "timeout_seconds": MAX_TIMEOUT_SECONDS}
        if "max_concurrency" in limits and self.pk is not None:
            # The concurrency limit is per user: each app registration brings its own.
            limits["max_concurrency"] *= 1 + self.app_registrations.filter(enabled=True).count()
        problems: dict[str, str] = {}
        for field_name, most in limits.items():
            value = getattr(self, field_name)
            if value is not None and not 1 <= value <= most:
                where = "" if field_name == "timeout_seconds" else f" for {self.get_kind_display()}"
                problems[field_name] = f"Must be between 1 and {most:,}{where}."
        if problems:
            raise ValidationError(problems)

    @property
    def client_secret(self) -> str:
        if self.client_secret_reference:
            return read_secret_reference(self.client_secret_reference)
        return decrypt_secret(self.client_secret_encrypted)

    @property
    def has_client_secret(self) -> bool:
        return bool(self.client_secret_reference or self.client_secret_encrypted)

    def set_client_secret(self, plain: str) -> None:
        self.client_secret_encrypted = encrypt_secret(plain)

    @property
    def effective_token_url(self) -> str:
        return self.token_url or ENTRA_TOKEN_URL.format(tenant=self.tenant)

    @property
    def effective_scope(self) -> str:
        if self.scope:
            return self.scope
        if self.kind == ConnectionKind.BUSINESS_CENTRAL:
            return "https://api.businesscentral.dynamics.com/.default"
        return self.environment_url.rstrip("/") + "/.default"

    @property
    def api_base_url(self) -> str:
        """Root of the OData service: BC .../v2.0/{tenant}/{environment}/api/v2.0, Dataverse .../api/data/v9.2."""
        root = self.environment_url.rstrip("/")
        if self.kind == ConnectionKind.BUSINESS_CENTRAL:
            return f"{root}/v2.0/{self.tenant}/{self.bc_environment}/api/v2.0"
        return f"{root}/api/data/v9.2"


class AppRegistration(models.Model):
    """A further app registration (client id and secret) a connection calls as, in turn with its own.

    Both services count their limits per user, so several registrations multiply them; Microsoft suggests it for heavy
    integrations (Business Central operational-limits-online, Dataverse api-limits). The secret is stored encrypted,
    as the connection's own, and is never shown back.
    """

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="app_registrations")
    client_id = models.CharField(max_length=100)
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["connection", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "client_id"], name="app_registration_unique_client_id")
        ]

    def __str__(self) -> str:
        return self.client_id

    def __repr__(self) -> str:
        return f"<AppRegistration {self.pk} {self.client_id!r}>"  # never the secret

    @property
    def client_secret(self) -> str:
        return decrypt_secret(self.client_secret_encrypted)

    @property
    def has_client_secret(self) -> bool:
        return bool(self.client_secret_encrypted)

    def set_client_secret(self, plain: str) -> None:
        self.client_secret_encrypted = encrypt_secret(plain)
