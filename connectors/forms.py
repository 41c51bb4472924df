"""Admin form for a Connection: the secret goes in through a password field and never comes back out."""

from typing import Any

from django import forms
from django.db import models

from connectors.models import AppRegistration, Connection
from connectors.secrets import validate_secret_reference


def _secret_field() -> forms.CharField:
    """A client secret: written, never shown back."""
    return forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        # render_value=False: the page never contains the secret, not even after a failed submit.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted. Leave blank to keep the current secret.",
    )


def _url_field(name: str, *, required: bool) -> forms.URLField:
    model_field = Connection._meta.get_field(name)
    assert isinstance(model_field, models.Field)  # a concrete column, not a reverse relation
    return forms.URLField(
        label=model_field.verbose_name.capitalize(),
        max_length=model_field.max_length,
        required=required,
        assume_scheme="https",  # both services are HTTPS only
        help_text=model_field.help_text,
    )


# Generic in django-stubs only: subscripting it at run time would need django_stubs_ext.monkeypatch() in settings.
class ConnectionForm(forms.ModelForm):  # type: ignore[type-arg]
    environment_url = _url_field("environment_url", required=True)
    token_url = _url_field("token_url", required=False)
    client_secret = _secret_field()

    class Meta:
        model = Connection
        fields = [
            "kind",
            "name",
            "enabled",
            "environment_url",
            "tenant",
            "bc_environment",
            "bc_company_id",
            "client_id",
            "client_secret",
            "client_secret_reference",
            "token_url",
            "scope",
            "page_size",
            "batch_size",
            "timeout_seconds",
            "max_concurrency",
        ]

    def clean_client_secret_reference(self) -> str:
        reference: str = self.cleaned_data.get("client_secret_reference", "").strip()
        if reference:
            try:
                validate_secret_reference(reference)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return reference

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        has_stored = bool(self.instance.pk and self.instance.client_secret_encrypted)
        if not cleaned.get("client_secret") and not cleaned.get("client_secret_reference") and not has_stored:
            self.add_error("client_secret", "Enter the client secret, or a reference to where it is kept.")
        if cleaned.get("kind") == "business_central" and not cleaned.get("bc_environment"):
            self.add_error("bc_environment", "Business Central connections need the environment name.")
        return cleaned


# Generic in django-stubs only, as above.
class AppRegistrationForm(forms.ModelForm):  # type: ignore[type-arg]
    """A further app registration of a connection: its secret goes in as the connection's own, never comes back."""

    client_secret = _secret_field()

    class Meta:
        model = AppRegistration
        fields = ["client_id", "client_secret", "enabled"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        has_stored = bool(self.instance.pk and self.instance.client_secret_encrypted)
        if self.cleaned_data.get("client_id") and not self.cleaned_data.get("client_secret") and not has_stored:
            self.add_error("client_secret", "Enter the client secret of this app registration.")
        return self.cleaned_data

    def save(self, commit: bool = True) -> AppRegistration:
        secret = self.cleaned_data.get("client_secret")
        if secret:
            self.instance.set_client_secret(secret)
        registration: AppRegistration = super().save(commit=commit)
        return registration
